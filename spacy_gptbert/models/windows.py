"""The window planner: a batch of Docs -> strided wordpiece windows -> the
integer index arrays (numpy, on the CPU) that torch_encoder.py pools with.

Each doc's text is read as the model was pretrained to (the fast tokenizer on
the text, not on spaCy's words); the tokenizer's character offsets align each
wordpiece to every spaCy token it overlaps. Long docs are covered by
overlapping windows, never truncated; windows are sorted by length and cut
into chunks so that padding and per-call overhead stay small.
"""
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc


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
    search serves all docs (per-doc numpy calls cost more than the tokenizer)."""
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
# shape makes oneDNN compile and cache new kernels: with exact lengths, a long
# stream of short docs keeps adding shapes and the process keeps growing.
# A larger multiple bounds memory tighter but pads more (the measurements:
# benchmarks/memory.py, benchmarks/README.md).
LENGTH_MULTIPLE = 4


def padded_length(n: int, longest: int) -> int:
    """n rounded up to LENGTH_MULTIPLE, never past the longest possible window
    (which the model's position embeddings are known to fit)."""
    return min(-(-n // LENGTH_MULTIPLE) * LENGTH_MULTIPLE, longest)


# What one more forward call costs, in padded wordpieces, on the CPU (how it
# was chosen: benchmarks/chunking.py, benchmarks/README.md). On a GPU a call
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
    longest rows, often to several times its real wordpieces. Dynamic
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
