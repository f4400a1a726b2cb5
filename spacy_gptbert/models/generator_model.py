"""Thinc side of the GPT generator: the single torch <-> thinc crossing for causal LMs.

The thinc Model maps `Rows` (token id rows with aligned targets) to a (B,)
vector of summed negative log-likelihoods, one per row. It reuses thinc's
PyTorchWrapper forward and PyTorchShim (device placement, optimizer updates,
mixed precision); only the two converters are ours. Returning NLL sums
instead of logits keeps the (B, T, V) tensor inside torch: the loss gradient
thinc passes back is just d(loss)/d(row sum), a (B,) vector.

Generation does not go through the forward pass: `generate_texts` calls
Hugging Face `generate` on the shim's module under no_grad, on the shim's device
(on the CPU, by default, on its oneDNN-prepacked copy: prepack.py).
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.layers.pytorchwrapper import forward as pytorch_forward
from thinc.types import Floats1d

from ..errors import Errors
from . import gpt
from .gpt import GenerationSettings, Rows
from .hf_loading import load_pretrained
from .hf_node import (  # noqa: F401  (get_hf_parts, load_into: re-exported, their home is hf_node.py)
    AUTO_CLASSES, attach_module, get_hf_parts, hf_node, hf_nodes, is_hf_node, load_into, module_bf16,
)
from .inference_copy import predicting_module


def causal_lm_model(source: str, load: Optional[Callable[[Model, Any], Any]] = None,
                    **attrs) -> Model[Rows, Floats1d]:
    """The node of the generator architectures (architectures.py). source:
    "pretrained", "decoder" (loaded at initialize) or "scratch" (built at
    initialize from the training texts)."""
    return hf_node(
        "spacy-gptbert.CausalLM", pytorch_forward, init=init_causal_lm, kind="causal_lm", attach=attach_lm,
        load=load, attrs={"source": source, **attrs,
                          "convert_inputs": convert_inputs, "convert_outputs": convert_outputs},
    )


def is_causal_lm(node: Model) -> bool:
    return is_hf_node(node, "causal_lm")


def find_causal_lm(model: Model) -> Model:
    for node in hf_nodes(model, "causal_lm"):
        return node
    raise ValueError("gpt_generator needs a spacy-gptbert.CausalLM.v1, spacy-gptbert.BertDecoder.v1 or "
                     "spacy-gptbert.GPT.v1 model.")


def init_causal_lm(model: Model, X: Optional[List[str]] = None, Y=None) -> None:
    """Load (pretrained, decoder) or build (scratch) the torch model; never in
    the constructor. X: the training texts, used to train the scratch model's tokenizer."""
    if model.shims:
        return
    if model.attrs["source"] in ("pretrained", "decoder"):
        model.attrs["hf_load"](model, model.attrs["name"])
        return
    sizes = model.attrs["gpt"]
    texts = [t for t in (X or []) if isinstance(t, str) and t]
    if not texts:
        raise ValueError(Errors.E209)
    tokenizer = gpt.train_bpe_tokenizer(texts, sizes["vocab_size"], sizes["min_frequency"])
    lm = gpt.build_gpt2_lm(tokenizer, sizes["n_layer"], sizes["n_head"], sizes["n_embd"],
                           sizes["n_positions"], sizes["dropout"], sizes["seed"])
    attach_lm(model, lm, tokenizer)


def load_decoder_into(model: Model, name_or_path) -> None:
    """A BERT-family encoder (or a saved BertDecoder) as a causal decoder whose
    output layer is the word embeddings (tie_word_embeddings)."""
    settings = model.attrs["decoder"]
    overrides: Dict[str, Any] = {"is_decoder": True, "add_cross_attention": False,
                                 "tie_word_embeddings": True}
    if settings["dropout"] is not None:
        overrides.update(hidden_dropout_prob=settings["dropout"],
                         attention_probs_dropout_prob=settings["dropout"])
    # The LM head weights an encoder checkpoint lacks start from the seed.
    lm, tokenizer, path = load_pretrained(
        name_or_path, AUTO_CLASSES["causal_lm"], trust_remote_code=model.attrs["trust_remote_code"],
        expect="decoder", config_overrides=overrides, seed=settings["seed"],
    )
    if not gpt.use_cls_sep_as_bos_eos(tokenizer):
        raise ValueError(Errors.E231.format(path=path))
    gpt.align_generation_positions(lm)
    attach_lm(model, lm, tokenizer)


def attach_lm(model: Model, lm, tokenizer) -> None:
    """Wrap the LM in the node's shim, on thinc's current device."""
    attach_module(model, gpt.CausalLMLoss(lm, mixed_precision=module_bf16(model)), tokenizer)


def get_lm(model: Model):
    return get_hf_parts(model)[0]


def is_ready(model: Model) -> bool:
    return bool(model.shims) and model.attrs.get("tokenizer") is not None


# ---------------------------------------------------------------------------
# Token ids
# ---------------------------------------------------------------------------


def special_ids(model: Model) -> Tuple[int, int, int]:
    """(bos, eos, pad) ids. Without a dedicated pad token (pretrained GPT-2),
    padding uses EOS: padded positions are masked, so the id never matters."""
    tok = model.attrs["tokenizer"]
    eos = tok.eos_token_id
    bos = tok.bos_token_id if tok.bos_token_id is not None else eos
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    return bos, eos, pad


def vocab_size(model: Model) -> int:
    """The width of the LM's logits."""
    return int(get_lm(model).config.vocab_size)


def context_size(model: Model) -> int:
    return gpt.context_size(get_lm(model))


def encode(model: Model, texts: Sequence[str]) -> List[List[int]]:
    """Token ids without special tokens; empty texts give []."""
    if not texts:
        return []
    enc = model.attrs["tokenizer"](
        list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
    )
    return [list(ids) for ids in enc["input_ids"]]


def sequence_rows(model: Model, prompts: List[List[int]], targets: List[List[int]], add_eos: bool) -> Rows:
    """One sequence per (prompt, target) pair: [BOS] prompt target [EOS?], the
    loss on the target (and EOS) only, cut into blocks of the model's context.
    Rows remember their pair index (`Rows.source`) for per-example scores."""
    bos, eos, _ = special_ids(model)
    block = context_size(model)
    rows = Rows()
    for i, (p, t) in enumerate(zip(prompts, targets)):
        seq = [bos] + p + t + ([eos] if add_eos else [])
        weights = [False] * (1 + len(p)) + [True] * (len(seq) - 1 - len(p))
        for inputs, tgt in gpt.split_blocks(seq, weights, block):
            rows.add(inputs, tgt, i)
    return rows


def packed_rows(model: Model, texts_ids: List[List[int]], shift: int = 0) -> Rows:
    """LM training rows: all docs as one stream `[EOS] d1 [EOS] d2 ... [EOS]`,
    cut into full blocks of the model's context (no padding waste, as in
    GPT pretraining). `shift` rotates the stream so block boundaries move
    between epochs while every token is still trained on.
    A BertDecoder's docs each start on their own start token, as its
    generations do: `[CLS] d1 [SEP] [CLS] d2 [SEP]`, and [CLS] is never a
    target (it always follows [SEP]: nothing to learn)."""
    bos, eos, _ = special_ids(model)
    if model.attrs["source"] == "decoder" and bos != eos:
        stream, weights = [], []
        for ids in texts_ids:
            stream.extend([bos, *ids, eos])
            weights.extend([False] + [True] * (len(ids) + 1))
    else:
        stream = [eos]
        for ids in texts_ids:
            stream.extend(ids)
            stream.append(eos)
        weights = [True] * len(stream)
    if not stream:
        return Rows()
    shift %= len(stream)
    stream = stream[shift:] + stream[:shift]
    weights = weights[shift:] + weights[:shift]
    rows = Rows()
    for inputs, tgt in gpt.split_blocks(stream, weights, context_size(model)):
        rows.add(inputs, tgt, 0)
    return rows


# ---------------------------------------------------------------------------
# The crossing: Rows -> torch -> (B,) NLL sums
# ---------------------------------------------------------------------------


def convert_inputs(model: Model, rows: Rows, is_train: bool):
    if not is_ready(model):
        raise ValueError(Errors.E009.format(name="gpt_generator"))
    _, _, pad = special_ids(model)
    device = model.shims[0].device
    ids, mask, targets = (t.to(device) for t in gpt.pad_rows(rows, pad))  # each (B, T)
    kwargs = {"input_ids": ids, "attention_mask": mask, "targets": targets}
    return ArgsKwargs(args=(), kwargs=kwargs), lambda d_inputs: []  # token ids take no gradient


def convert_outputs(model: Model, inputs_outputs, is_train: bool):
    _, nll = inputs_outputs  # (B,) torch

    def backprop(d_nll: Floats1d) -> ArgsKwargs:
        return ArgsKwargs(args=([nll],), kwargs={"grad_tensors": [xp2torch(d_nll, device=nll.device)]})

    return torch2xp(nll, ops=model.ops), backprop


# ---------------------------------------------------------------------------
# Generation (no gradients; HF generate on the shim's module)
# ---------------------------------------------------------------------------


def generate_texts(model: Model, prompts: List[List[int]], settings: GenerationSettings,
                   onednn_prepack: bool = False, row_seeds: Optional[List[int]] = None,
                   guidance: Optional[List[List[int]]] = None, bias=None) -> List[List[str]]:
    """Generate for token-id prompts (already within the context) in ONE padded
    `generate` call. Returns num_return_sequences texts per prompt, in order.
    onednn_prepack: on the CPU, generate with a copy of the model whose linear
    layers run oneDNN's prepacked kernels (prepack.py; rebuilt when the weights
    change, never trained or saved). row_seeds: one sampling seed per prompt
    (gpt.generate_ids). guidance: one guidance prompt per prompt (token ids,
    within the context) for classifier-free guidance at
    settings.guidance_scale, or None. bias: a (B, V) float array added to
    each prompt's log-probabilities every step (the generator's label_bias;
    a guidance row gets its prompt's row), or None."""
    if not prompts:
        return []
    if not is_ready(model):
        raise ValueError(Errors.E009.format(name="gpt_generator"))
    bos, eos, pad = special_ids(model)
    # An empty prompt starts from BOS, as every training sequence does.
    prompts = [p if p else [bos] for p in prompts]
    guided = guidance is not None
    if guided:  # one batch: the guidance prompts are rows B .. 2B - 1
        prompts = prompts + [p if p else [bos] for p in guidance]
    device = model.shims[0].device
    ids, mask = (t.to(device) for t in gpt.left_pad(prompts, pad))  # (B, T), or (2B, T) guided
    tokenizer = model.attrs["tokenizer"]
    lm = predicting_module(get_lm(model), device, use_prepack=onednn_prepack)  # the encoders' policy
    bias_rows = None
    if bias is not None:
        bias_rows = xp2torch(model.ops.asarray2f(bias), device=device)
        if guided:
            bias_rows = torch.cat([bias_rows, bias_rows])
    new = gpt.generate_ids(lm, ids, mask, settings, pad, eos, tokenizer, row_seeds, guided,
                           bias_rows)  # (B*n, <=max_new)
    texts = decode_generated(tokenizer, _strip_after_eos(new.tolist(), eos))
    n = settings.num_return_sequences
    texts = [gpt.cut_at_stop(t, settings.stop) for t in texts]
    return [texts[i * n : (i + 1) * n] for i in range(len(texts) // n)]


def decode_generated(tokenizer, rows: List[List[int]]) -> List[str]:
    """Generated token ids -> text. A WordPiece tokenizer (BERT's) decodes
    every punctuation piece with a space on both sides ("it ' s", "is n ' t"),
    which a reader takes for noise; Hugging Face's clean-up joins the common
    English contractions and punctuation again. Other tokenizers (byte-level
    BPE) decode their own spaces exactly, so their text is kept as it is."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    wordpiece = backend is not None and type(backend.model).__name__ == "WordPiece"
    return tokenizer.batch_decode(rows, skip_special_tokens=True, clean_up_tokenization_spaces=wordpiece)


def _strip_after_eos(rows: List[List[int]], eos: Optional[int]) -> List[List[int]]:
    if eos is None:
        return rows
    return [row[: row.index(eos)] if eos in row else row for row in rows]


# The generator's architectures moved to architectures.py; this keeps their
# old import path (generator_model.build_gpt, ...) working.
_MOVED = ("build_causal_lm", "build_gpt", "build_bert_decoder")


def __getattr__(name: str):
    if name in _MOVED:
        from . import architectures

        return getattr(architectures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
