"""Thinc side of the encoder: Docs -> wordpiece windows -> torch -> EncoderOutput.

This is the single torch <-> thinc crossing for the encoder: a Hugging
Face-backed node (hf_node.py) whose forward plans each batch's windows
(windows.py), runs the torch module (torch_encoder.py) in the shim and
converts its outputs. The model reads each Doc's text as it was pretrained to
(the fast tokenizer on the text, not on spaCy's words, which would turn
"don't" into "do n ' t"); the tokenizer's character offsets then align each
wordpiece to every spaCy token it overlaps.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional
from warnings import warn

from spacy.tokens import Doc
from thinc.api import ArgsKwargs, Model, Ragged, torch2xp, xp2torch
from thinc.types import Floats2d

from ..errors import Errors, Warnings
from .autocast import cpu_bf16
from .hf_loading import usable_positions
from .hf_node import (  # noqa: F401  (get_hf_parts, load_into: re-exported, their home is hf_node.py)
    WINDOWED_KINDS, attach_module, get_hf_parts, hf_node, is_hf_node, load_into, module_bf16, on_gpu,
)
from .windows import (  # noqa: F401  (re-exported: the window planner's home is windows.py)
    CPU_CALL_COST, GPU_CALL_COST, LENGTH_MULTIPLE, WindowPlan, align_offsets, padded_length, plan_windows,
    split_sorted, tokenize_docs, window_starts,
)

WINDOW_MARGIN = 2  # room for the special tokens around each window ([CLS] ... [SEP])


@dataclass
class EncoderOutput:
    """Encoder outputs for a batch of docs.

    tokens: one row per spaCy token (mean of its wordpieces), lengths = doc lengths.
    cls: (n_docs, width) first-token vector, averaged over a doc's windows.
    mean: (n_docs, width) mean over all positions of each window, averaged over
        windows (for a one-window doc this is sentence-transformers' mean pooling).
    wordpieces: optional (n_wordpieces, width) rows, lengths = wordpieces per doc.
    As a gradient (what a listener sends back) only the fields it used are
    set; the others are None.
    """

    tokens: Optional[Ragged]
    cls: Optional[Floats2d]
    mean: Optional[Floats2d]
    wordpieces: Optional[Ragged] = None

    def doc_tokens(self) -> List[Floats2d]:
        return _split(self.tokens)

    def doc_wordpieces(self) -> List[Floats2d]:
        return _split(self.wordpieces) if self.wordpieces is not None else []


def _split(ragged: Ragged) -> List[Floats2d]:
    lengths = ragged.lengths.tolist() if hasattr(ragged.lengths, "tolist") else list(ragged.lengths)
    out, start = [], 0
    for n in lengths:
        out.append(ragged.dataXd[start : start + n])
        start += n
    return out


# The settings of a windowed model and their defaults. The architectures
# (architectures.py) spell them out in their signatures, which spaCy's config
# system reads; this is what they pass on.
WINDOW_SETTINGS: Dict[str, Any] = {
    "window": 256, "stride": 192, "max_batch_tokens": 1024, "mixed_precision": False,
    "grad_scaler_config": None, "trust_remote_code": False, "freeze_embeddings": False,
}
MODEL_NAMES = {"encoder": "spacy-gptbert.Encoder", "seq_cls": "spacy-gptbert.HFSequenceClassifier"}


def windowed_model(kind: str, name: str, **settings) -> Model:
    """A Hugging Face model run over strided windows of each doc's wordpieces.

    kind "encoder": AutoModel -> EncoderOutput (tokens, cls, mean).
    kind "seq_cls": an already fine-tuned AutoModelForSequenceClassification ->
        logits (n_docs, n_labels); its id2label is in attrs["labels"] once loaded.
    settings: those of WINDOW_SETTINGS, the rest at their defaults.
    """
    unknown = sorted(set(settings) - set(WINDOW_SETTINGS))
    if unknown:
        raise TypeError(f"windowed_model() got unexpected settings: {', '.join(unknown)}")
    settings = {**WINDOW_SETTINGS, **settings}
    window, stride, max_batch_tokens = settings["window"], settings["stride"], settings["max_batch_tokens"]
    if not (0 < stride <= window):
        raise ValueError(Errors.E102.format(window=window, stride=stride, max_window="n_positions - 2"))
    if not max_batch_tokens > 0:
        raise ValueError(Errors.E121.format(value=max_batch_tokens))
    return hf_node(
        MODEL_NAMES[kind], windowed_forward, init=init_windowed_model, kind=kind, attach=attach_transformer,
        dims={"nO": None},
        attrs={
            "name": name,
            **settings,
            "convert_outputs": convert_outputs if kind == "encoder" else convert_logits,
            "labels": None,
        },
    )


def is_windowed_model(node: Model) -> bool:
    return is_hf_node(node, *WINDOWED_KINDS)


# How the windowed models of a component predict: "fp32" (the default: a
# doc's result does not depend on its batch), or "mixed": the autocast that
# mixed_precision = true trains with (bf16 on a CPU with bf16 instructions,
# fp16 on a GPU), faster but batch-dependent. int8 is the components'
# `quantize` setting.
PREDICT_PRECISIONS = ("fp32", "mixed")


def set_predict_precision(model: Model, precision: str, quantize: bool = False) -> None:
    """A component setting, read when the weights are attached (initialize or load)."""
    if precision not in PREDICT_PRECISIONS:
        raise ValueError(Errors.E118.format(value=precision, options=", ".join(PREDICT_PRECISIONS)))
    if quantize and precision != "fp32":
        raise ValueError(Errors.E119.format(value=precision))
    for node in model.walk():
        if is_windowed_model(node):
            node.attrs["predict_precision"] = precision


def init_windowed_model(model: Model, X=None, Y=None) -> None:
    """Load the pretrained weights (never in the constructor)."""
    if model.shims:
        return
    config = load_into(model, model.attrs["name"])
    heads = [a for a in getattr(config, "architectures", None) or [] if a.endswith("ForSequenceClassification")]
    if model.attrs["kind"] == "encoder" and heads:  # a fine-tuned head would be dropped without a word
        warn(Warnings.W004.format(path=model.attrs["name"], architectures=", ".join(heads)))


def attach_transformer(model: Model, hf_model, tokenizer) -> None:
    """Wrap a loaded Hugging Face model in a PyTorchShim on thinc's device."""
    from .torch_encoder import WindowedClassifier, WindowedEncoder

    config = hf_model.config
    max_window = usable_positions(hf_model) - WINDOW_MARGIN
    window, stride = model.attrs["window"], model.attrs["stride"]
    if not (0 < stride <= window <= max_window):
        raise ValueError(Errors.E102.format(window=window, stride=stride, max_window=max_window))
    bf16 = module_bf16(model)
    # Prediction runs in float32 unless asked otherwise: in bf16 (or fp16) a
    # doc's result depends on the batch it shares.
    predict_mixed = model.attrs.get("predict_precision", "fp32") == "mixed"
    predict_bf16 = bf16 if predict_mixed and model.attrs["mixed_precision"] else cpu_bf16(predict_mixed, on_gpu())
    if model.attrs["kind"] == "seq_cls":
        module = WindowedClassifier(hf_model, bf16, predict_bf16)
        model.attrs["labels"] = [config.id2label[i] for i in range(config.num_labels)]
        width = config.num_labels
    else:
        if getattr(hf_model, "pooler", None) is not None:
            hf_model.pooler = None  # unused: we pool ourselves; saves compute and memory
        module = WindowedEncoder(hf_model, bf16, predict_bf16)
        width = config.hidden_size
    if model.attrs["freeze_embeddings"]:
        # The word-embedding matrix is about half of a small BERT's weights;
        # not updating it saves optimizer time with little loss in accuracy.
        hf_model.get_input_embeddings().weight.requires_grad_(False)
    attach_module(model, module, tokenizer, predict_mixed=predict_mixed)
    model.set_dim("nO", int(width), force=True)


def convert_inputs(model: Model, docs: List[Doc], is_train: bool):
    import torch

    for doc in docs:
        if not isinstance(doc, Doc):
            raise TypeError(Errors.E101.format(type=type(doc).__name__))
    tokenizer = model.attrs["tokenizer"]
    if tokenizer is None:
        raise ValueError(Errors.E009.format(name=model.attrs["name"]))
    device = model.shims[0].device
    plan = plan_windows(
        tokenizer, docs, model.attrs["window"], model.attrs["stride"], model.attrs["max_batch_tokens"],
        CPU_CALL_COST if device.type == "cpu" else GPU_CALL_COST,
    )
    to_torch = lambda a: torch.from_numpy(a).to(device)
    kwargs = {key: to_torch(value) for key, value in plan.index.items()}
    kwargs["chunks"] = [(to_torch(ids), to_torch(mask)) for ids, mask in plan.chunks]
    kwargs.update(
        n_wordpieces=plan.n_wordpieces,
        n_tokens=plan.n_tokens,
        n_docs=plan.n_docs,
        return_wordpieces=model.attrs.get("return_wordpieces", False),
        return_tokens=model.attrs.get("return_tokens", True),
    )
    return ArgsKwargs(args=(), kwargs=kwargs), plan


def windowed_forward(model: Model, docs: List[Doc], is_train: bool):
    """thinc's PyTorchWrapper forward, except that the window plan goes from
    the input conversion to the output conversion in this call's own scope:
    kept in model.attrs, it would be shared by two forward passes in flight
    (threads; a listener's component and its encoder) and one would read the
    other's."""
    torch_inputs, plan = convert_inputs(model, docs, is_train)
    torch_outputs, torch_backprop = model.shims[0](torch_inputs, is_train)
    outputs, get_d_torch_outputs = model.attrs["convert_outputs"](model, (docs, torch_outputs), is_train, plan)

    def backprop(d_outputs):
        torch_backprop(get_d_torch_outputs(d_outputs))
        return []  # the inputs are Docs: no gradient to pass on

    return outputs, backprop


def convert_outputs(model: Model, inputs_outputs, is_train: bool, plan: WindowPlan):
    docs, outputs = inputs_outputs
    xp = model.ops.xp
    lengths = xp.asarray([len(doc) for doc in docs], dtype="int32")
    tokens, cls, mean = (torch2xp(t, ops=model.ops) for t in outputs[:3])
    wordpieces = None
    if len(outputs) > 3:
        wp_lengths = xp.asarray(plan.wp_lengths, dtype="int32")
        wordpieces = Ragged(torch2xp(outputs[3], ops=model.ops), wp_lengths)
    result = EncoderOutput(Ragged(tokens, lengths), cls, mean, wordpieces)

    def backprop(d_output: EncoderOutput) -> ArgsKwargs:
        pairs = [
            (outputs[0], d_output.tokens.dataXd if d_output.tokens is not None else None),
            (outputs[1], d_output.cls),
            (outputs[2], d_output.mean),
        ]
        tensors, grads = [], []
        for tensor, grad in pairs:
            if grad is not None:
                tensors.append(tensor)
                grads.append(xp2torch(grad, device=tensor.device))
        return ArgsKwargs(args=(tensors,), kwargs={"grad_tensors": grads})

    return result, backprop


def convert_logits(model: Model, inputs_outputs, is_train: bool, plan: WindowPlan):
    _, logits = inputs_outputs

    def backprop(d_logits: Floats2d) -> ArgsKwargs:
        return ArgsKwargs(args=([logits],), kwargs={"grad_tensors": [xp2torch(d_logits, device=logits.device)]})

    return torch2xp(logits, ops=model.ops), backprop
