"""Thinc side of the encoder: Docs -> wordpiece windows -> torch -> EncoderOutput.

This is the single torch <-> thinc crossing for the encoder. It reuses thinc's
PyTorchWrapper forward and PyTorchShim (devices, mixed precision, grad scaling)
and only supplies the two converters. The model reads each Doc's text as it
was pretrained to (the fast tokenizer on the text, not on spaCy's words, which
would turn "don't" into "do n ' t"); the tokenizer's character offsets then
align each wordpiece to every spaCy token it overlaps.
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple
from warnings import warn

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc
from thinc.api import (
    ArgsKwargs, Model, PyTorchGradScaler, Ragged, get_torch_default_device, torch2xp, xp2torch,
)
from thinc.types import Floats2d

from ..errors import Errors, Warnings
from .hf_loading import load_pretrained, usable_positions
from .shim import AveragingPyTorchShim, cpu_bf16

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


def windowed_model(
    kind: str,
    name: str,
    window: int = 256,
    stride: int = 192,
    max_batch_tokens: int = 1024,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    trust_remote_code: bool = False,
    freeze_embeddings: bool = False,
) -> Model:
    """A Hugging Face model run over strided windows of each doc's wordpieces.

    kind "encoder": AutoModel -> EncoderOutput (tokens, cls, mean).
    kind "seq_cls": an already fine-tuned AutoModelForSequenceClassification ->
        logits (n_docs, n_labels); its id2label is in attrs["labels"] once loaded.
    """
    if not (0 < stride <= window):
        raise ValueError(Errors.E102.format(window=window, stride=stride, max_window="n_positions - 2"))
    if not max_batch_tokens > 0:
        raise ValueError(Errors.E121.format(value=max_batch_tokens))
    return Model(
        MODEL_NAMES[kind],
        windowed_forward,
        init=init_windowed_model,
        dims={"nO": None},
        attrs={
            "name": name,
            "kind": kind,
            "window": window,
            "stride": stride,
            "max_batch_tokens": max_batch_tokens,
            "mixed_precision": mixed_precision,
            "grad_scaler_config": dict(grad_scaler_config or {}),
            "trust_remote_code": trust_remote_code,
            "freeze_embeddings": freeze_embeddings,
            "convert_inputs": convert_inputs,
            "convert_outputs": convert_outputs if kind == "encoder" else convert_logits,
            "tokenizer": None,
            # serialization hooks (pipeline/serialization.py)
            "hf_parts": get_hf_parts,
            "hf_load": load_into,
            "labels": None,
        },
    )


AUTO_CLASSES = {"encoder": "AutoModel", "seq_cls": "AutoModelForSequenceClassification"}
MODEL_NAMES = {"encoder": "spacy-gptbert.Encoder", "seq_cls": "spacy-gptbert.HFSequenceClassifier"}


def is_windowed_model(node: Model) -> bool:
    return "kind" in node.attrs and node.attrs.get("convert_inputs") is convert_inputs


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


def load_into(model: Model, name_or_path):
    """Load the Hugging Face model into `model`; returns its config."""
    kind = model.attrs["kind"]
    hf_model, tokenizer, _ = load_pretrained(
        name_or_path, AUTO_CLASSES[kind], trust_remote_code=model.attrs["trust_remote_code"], expect=kind
    )
    attach_transformer(model, hf_model, tokenizer)
    return hf_model.config


def attach_transformer(model: Model, hf_model, tokenizer) -> None:
    """Wrap a loaded Hugging Face model in a PyTorchShim on thinc's device."""
    from .torch_encoder import WindowedClassifier, WindowedEncoder

    config = hf_model.config
    max_window = usable_positions(hf_model) - WINDOW_MARGIN
    window, stride = model.attrs["window"], model.attrs["stride"]
    if not (0 < stride <= window <= max_window):
        raise ValueError(Errors.E102.format(window=window, stride=stride, max_window=max_window))
    # thinc's shim autocasts for CUDA only; on CPU the module itself uses bf16 where the CPU has it.
    on_gpu = get_torch_default_device().type == "cuda"
    bf16 = cpu_bf16(model.attrs["mixed_precision"], on_gpu)
    # Prediction runs in float32 unless asked otherwise: in bf16 (or fp16) a
    # doc's result depends on the batch it shares.
    predict_mixed = model.attrs.get("predict_precision", "fp32") == "mixed"
    predict_bf16 = bf16 if predict_mixed and model.attrs["mixed_precision"] else cpu_bf16(predict_mixed, on_gpu)
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
    shim = AveragingPyTorchShim(
        module,
        mixed_precision=model.attrs["mixed_precision"] and on_gpu,
        grad_scaler=PyTorchGradScaler(**model.attrs["grad_scaler_config"]),
        predict_mixed_precision=predict_mixed and on_gpu,
    )
    model.shims[:] = [shim]
    model.attrs["tokenizer"] = tokenizer
    model.set_dim("nO", int(width), force=True)


def get_hf_parts(model: Model):
    """(hf_model, tokenizer) of an initialized windowed model node, or (None, None)."""
    if not model.shims:
        return None, None
    module = model.shims[0]._model
    return getattr(module, "transformer", None) or module.classifier, model.attrs["tokenizer"]


# ---------------------------------------------------------------------------
# Input conversion: docs -> windows -> index tensors
# ---------------------------------------------------------------------------


@dataclass
class WindowPlan:
    """Integer layout of one batch, built with numpy on the CPU."""

    chunks: List[Tuple[numpy.ndarray, numpy.ndarray]]
    index: Dict[str, numpy.ndarray]
    n_wordpieces: int
    n_tokens: int
    n_docs: int
    wp_lengths: List[int]


def tokenize_docs(tokenizer, docs: Sequence[Doc]) -> Tuple[List[List[int]], numpy.ndarray, numpy.ndarray]:
    """Wordpiece ids of each doc's text, and (wordpiece, token) pairs that align
    them to the docs' tokens, indexed over the whole batch (wordpieces and tokens
    of all docs concatenated in order). The batch is aligned in one go: every
    doc's characters are laid on one axis, a character apart, so one sorted
    search serves all docs (per-doc numpy calls cost 3x the tokenizer)."""
    ids: List[List[int]] = [[] for _ in docs]
    empty = numpy.zeros((0,), dtype="int64")
    nonempty = [i for i, doc in enumerate(docs) if doc.text.strip()]
    if not nonempty:
        return ids, empty, empty
    enc = tokenizer(
        [docs[i].text for i in nonempty],
        add_special_tokens=False,
        truncation=False,
        return_offsets_mapping=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    char_base = numpy.cumsum([0] + [len(doc.text) + 1 for doc in docs])
    token_spans = [doc.to_array([IDX, LENGTH]).reshape(-1, 2).astype("int64") + (char_base[d], 0)
                   for d, doc in enumerate(docs)]
    wp_spans, wp_base = [], []
    for j, i in enumerate(nonempty):
        ids[i] = enc["input_ids"][j]
        wp_spans.extend(enc["offset_mapping"][j])
        wp_base.append(numpy.full((len(ids[i]),), char_base[i], dtype="int64"))
    wp_spans = numpy.asarray(wp_spans, dtype="int64").reshape(-1, 2) + numpy.concatenate(wp_base)[:, None]
    token_spans = numpy.concatenate(token_spans)
    return (ids, *align_offsets(wp_spans[:, 0], wp_spans[:, 1], token_spans[:, 0], token_spans[:, 0] + token_spans[:, 1]))


def align_offsets(wp_start, wp_end, token_start, token_end) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """(wordpiece, token) pairs for every token whose characters [start, end)
    overlap a wordpiece's (tokens sorted, not overlapping). Where spaCy and the
    model cut a word differently ("gonna": spaCy "gon" "na", WordPiece
    "gonna"), both tokens get the piece."""
    wp_end = numpy.maximum(wp_end, wp_start + 1)  # a zero-width piece still sits at a character
    first = numpy.searchsorted(token_end, wp_start, side="right")  # first token ending after the piece starts
    last = numpy.searchsorted(token_start, wp_end, side="left") - 1  # last token starting before it ends
    counts = numpy.maximum(last - first + 1, 0)
    align_wp = numpy.repeat(numpy.arange(len(wp_start), dtype="int64"), counts)
    # token of each pair: first[wp] + its rank among that piece's pairs
    rank = numpy.arange(int(counts.sum()), dtype="int64") - numpy.repeat(numpy.cumsum(counts) - counts, counts)
    return align_wp, numpy.repeat(first, counts) + rank


def window_starts(n: int, window: int, stride: int) -> List[int]:
    """Start offsets of strided windows covering n wordpieces (at least one)."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, stride))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


# Chunk lengths are rounded up to a multiple of this. Every distinct input
# shape makes oneDNN compile and cache new kernels: with exact lengths, a
# stream of 100k short docs kept adding shapes and the process grew by ~120 MB
# (benchmarks/memory.py: peak 1.18x its value after 5k docs). Multiples of 4
# give 1.07x for ~5% speed on SST-2 sentences; multiples of 8 gave
# 1.03x but cost ~10% (benchmarks/README.md).
LENGTH_MULTIPLE = 4


def padded_length(n: int, longest: int) -> int:
    """n rounded up to LENGTH_MULTIPLE, never past the longest possible window
    (which the model's position embeddings are known to fit)."""
    return min(-(-n // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, longest)


# What one more forward call costs, in padded wordpieces. On 2 CPU threads,
# all-MiniLM-L6-v2's inference throughput on SST-2 text is flat for costs of
# 32-128 and falls beyond (benchmarks/chunking.py). On a GPU a call
# costs far more than a row of padding and nothing here measured how much, so
# there the split keeps the fewest chunks that fit, as cutting at
# max_batch_tokens did.
CPU_CALL_COST = 128
GPU_CALL_COST = 10**9


def split_sorted(padded: Sequence[int], max_batch_tokens: int, call_cost: int = CPU_CALL_COST) -> List[Tuple[int, int]]:
    """Cut windows sorted longest first (their padded lengths) into chunks
    [(start, end), ...] so that padded wordpieces plus call_cost per chunk is
    least, each chunk within max_batch_tokens unless one window alone exceeds it.

    Cutting greedily at max_batch_tokens pads a batch of mixed lengths to its
    longest rows: 2.5x the real wordpieces on random SST-2 batches of 32. Dynamic
    programming over the cut points: best[j] is the least cost of the first j
    windows; a chunk [i, j) pads every row to padded[i].
    """
    n = len(padded)
    best = [0.0] + [float("inf")] * n
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j - 1, -1, -1):
            size = (j - i) * padded[i]
            if size > max_batch_tokens and i < j - 1:
                break  # moving i left only makes the chunk larger
            cost = best[i] + size + call_cost
            if cost < best[j]:
                best[j], cut[j] = cost, i
    bounds = []
    while n:
        bounds.append((cut[n], n))
        n = cut[n]
    return bounds[::-1]


def plan_windows(
    tokenizer, docs: Sequence[Doc], window: int, stride: int, max_batch_tokens: int, call_cost: int = CPU_CALL_COST
) -> WindowPlan:
    prefix = [tokenizer.cls_token_id] if tokenizer.cls_token_id is not None else []
    suffix = [tokenizer.sep_token_id] if tokenizer.sep_token_id is not None else []
    pad_id = tokenizer.pad_token_id or 0
    pieces, align_wp, align_token = tokenize_docs(tokenizer, docs)
    # Every window of every doc: (doc index, start, end)
    windows: List[Tuple[int, int, int]] = []
    wp_lengths = [len(ids) for ids in pieces]
    n_windows_doc = []
    for d, n in enumerate(wp_lengths):
        starts = window_starts(n, window, stride)
        n_windows_doc.append(len(starts))
        windows.extend((d, s, min(s + window, n)) for s in starts)
    wp_offsets = numpy.concatenate([[0], numpy.cumsum(wp_lengths)]).astype("int64")
    n_wordpieces = int(wp_offsets[-1])
    # How many windows cover each wordpiece, to average overlapping outputs.
    coverage = numpy.zeros((n_wordpieces,), dtype="float32")
    for d, s, e in windows:
        coverage[wp_offsets[d] + s : wp_offsets[d] + e] += 1
    # Longest first, so each chunk pads to its own first (longest) window.
    order = sorted(range(len(windows)), key=lambda k: windows[k][1] - windows[k][2])
    extra = len(prefix) + len(suffix)
    length = lambda k: windows[k][2] - windows[k][1] + extra  # noqa: E731
    padded = [padded_length(length(k), window + extra) for k in order]
    chunks = [order[a:b] for a, b in split_sorted(padded, max_batch_tokens, call_cost)]
    pos_window, pos_scale, content_pos, content_wp, content_scale = [], [], [], [], []
    window_doc, window_scale, arrays = [], [], []
    offset = 0
    wid = 0
    for chunk in chunks:
        max_len = padded_length(length(chunk[0]), window + extra)
        ids = numpy.full((len(chunk), max_len), pad_id, dtype="int64")
        mask = numpy.zeros((len(chunk), max_len), dtype="int64")
        for row, k in enumerate(chunk):
            d, s, e = windows[k]
            seq = prefix + list(pieces[d][s:e]) + suffix
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
            pos_window.append(numpy.full((len(seq),), wid, dtype="int64"))
            pos_scale.append(numpy.full((len(seq),), 1.0 / len(seq), dtype="float32"))
            wp = numpy.arange(wp_offsets[d] + s, wp_offsets[d] + e, dtype="int64")
            content_pos.append(numpy.arange(offset + len(prefix), offset + len(prefix) + (e - s), dtype="int64"))
            content_wp.append(wp)
            content_scale.append(1.0 / coverage[wp])
            window_doc.append(d)
            window_scale.append(1.0 / n_windows_doc[d])
            offset += len(seq)
            wid += 1
        arrays.append((ids, mask))
    n_tokens = sum(len(doc) for doc in docs)
    cat = lambda xs, dtype: numpy.concatenate(xs).astype(dtype) if xs else numpy.zeros((0,), dtype=dtype)
    # a token's vector is the mean of the wordpieces aligned to it
    per_token = numpy.bincount(align_token, minlength=n_tokens).astype("float32")
    align_scale = 1.0 / per_token[align_token] if len(align_token) else numpy.zeros((0,), dtype="float32")
    index = {
        "pos_window": cat(pos_window, "int64"),
        "pos_scale": cat(pos_scale, "float32"),
        "content_pos": cat(content_pos, "int64"),
        "content_wp": cat(content_wp, "int64"),
        "content_scale": cat(content_scale, "float32"),
        "align_wp": align_wp,
        "align_token": align_token,
        "align_scale": align_scale.astype("float32"),
        "window_doc": numpy.asarray(window_doc, dtype="int64"),
        "window_scale": numpy.asarray(window_scale, dtype="float32"),
    }
    return WindowPlan(arrays, index, n_wordpieces, n_tokens, len(docs), wp_lengths)


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
