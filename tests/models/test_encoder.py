import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose

from spacy_gptbert.models.architectures import build_encoder
from spacy_gptbert.models.hf_node import get_hf_parts
from spacy_gptbert.models.windows import LENGTH_MULTIPLE, align_offsets, plan_windows, split_sorted, window_starts


@pytest.mark.parametrize("n,window,stride", [(0, 8, 4), (5, 8, 4), (8, 8, 8), (9, 8, 4), (100, 30, 10), (101, 30, 30)])
def test_windows_cover_every_wordpiece(n, window, stride):
    starts = window_starts(n, window, stride)
    covered = numpy.zeros(n, dtype=int)
    for s in starts:
        assert 0 <= s and (s + window <= n or s == 0)
        covered[s : s + window] += 1
    assert (covered >= 1).all()


def test_align_offsets_by_hand():
    """Pairs (wordpiece, token) for every character overlap: spaCy's "gon" "na"
    share the one piece "gonna"; "do" "n't" against pieces "don" "'" "t"; the
    whitespace token gets no piece."""
    nlp = spacy.blank("en")
    doc = nlp("I don't  gonna")  # tokens: I, do, n't, " ", gon, na
    assert [t.text for t in doc] == ["I", "do", "n't", " ", "gon", "na"]
    offsets = numpy.array([[0, 1], [2, 5], [5, 6], [6, 7], [9, 14]])  # I, don, ', t, gonna
    starts = numpy.array([t.idx for t in doc])
    align_wp, align_token = align_offsets(offsets[:, 0], offsets[:, 1], starts, starts + [len(t) for t in doc])
    assert list(zip(align_wp.tolist(), align_token.tolist())) == [(0, 0), (1, 1), (1, 2), (2, 2), (3, 2), (4, 4), (4, 5)]


def test_plan_aligns_a_batch_as_each_doc_alone(tiny_bert):
    """Docs are aligned together on one character axis: each doc's pairs are
    the ones it gets alone, shifted by the wordpieces and tokens before it
    (empty and whitespace-only docs in between have none)."""
    nlp = spacy.blank("en")
    tokenizer = get_hf_parts(_encoder(tiny_bert))[1]
    docs = [nlp(t) for t in ["I don't know", "", "  ", "gonna see it", "a"]]
    batch = plan_windows(tokenizer, docs, window=16, stride=8, max_batch_tokens=64)
    wp_base = tok_base = 0
    for doc in docs:
        alone = plan_windows(tokenizer, [doc], window=16, stride=8, max_batch_tokens=64)
        in_batch = (batch.index["align_token"] >= tok_base) & (batch.index["align_token"] < tok_base + len(doc))
        assert (batch.index["align_wp"][in_batch] - wp_base).tolist() == alone.index["align_wp"].tolist()
        assert (batch.index["align_token"][in_batch] - tok_base).tolist() == alone.index["align_token"].tolist()
        assert_allclose(batch.index["align_scale"][in_batch], alone.index["align_scale"])
        wp_base, tok_base = wp_base + alone.n_wordpieces, tok_base + len(doc)
    assert batch.n_wordpieces == wp_base and batch.n_tokens == tok_base


def _encoder(name, **kwargs):
    model = build_encoder(name=name, **kwargs)
    model.initialize()
    return model


def _reference(hf_model, tokenizer, ids):
    """Direct Hugging Face forward over [CLS] ids [SEP]."""
    seq = [tokenizer.cls_token_id] + list(ids) + [tokenizer.sep_token_id]
    hf_model.eval()  # thinc's shim leaves the module in train mode (dropout on)
    with torch.no_grad():
        return hf_model(input_ids=torch.tensor([seq]))[0][0].numpy()


def test_single_window_matches_hugging_face(tiny_bert):
    nlp = spacy.blank("en")
    model = _encoder(tiny_bert)
    hf_model, tokenizer = get_hf_parts(model)
    # spaCy cuts "don't" into "do" "n't" and "gonna" into "gon" "na"; the model
    # reads the text as it was pretrained to, and each token gets the mean of
    # the wordpieces that overlap its characters.
    doc = nlp("A good movie, don't miss it: gonna be unbelievably great")
    out = model.predict([doc])
    enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    hidden = _reference(hf_model, tokenizer, enc["input_ids"])
    tokens = out.doc_tokens()[0]
    assert tokens.shape == (len(doc), model.get_dim("nO"))
    for token in doc:
        rows = [j + 1 for j, (s, e) in enumerate(enc["offset_mapping"]) if s < token.idx + len(token) and e > token.idx]
        assert rows, token.text
        assert_allclose(tokens[token.i], hidden[rows].mean(axis=0), atol=1e-5)
    assert_allclose(out.cls[0], hidden[0], atol=1e-5)
    assert_allclose(out.mean[0], hidden.mean(axis=0), atol=1e-5)


def test_strided_windows_average_overlaps(tiny_bert):
    """A doc longer than a window: every wordpiece output is the mean of the
    windows that cover it, each computed by a direct forward pass."""
    nlp = spacy.blank("en")
    window, stride = 10, 4
    model = _encoder(tiny_bert, window=window, stride=stride, max_batch_tokens=24)
    hf_model, tokenizer = get_hf_parts(model)
    model.attrs["return_wordpieces"] = True
    doc = nlp(" ".join(["the plot is great fun and i loved every minute"] * 3))
    out = model.predict([doc])
    ids = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
    n = len(ids)
    total = numpy.zeros((n, model.get_dim("nO")))
    count = numpy.zeros(n)
    for s in window_starts(n, window, stride):
        hidden = _reference(hf_model, tokenizer, ids[s : s + window])
        total[s : s + window] += hidden[1:-1]
        count[s : s + window] += 1
    assert len(window_starts(n, window, stride)) > 2
    assert_allclose(out.doc_wordpieces()[0], total / count[:, None], atol=1e-5)
    assert out.doc_tokens()[0].shape[0] == len(doc)


def test_batch_equals_single(tiny_bert):
    nlp = spacy.blank("en")
    model = _encoder(tiny_bert, window=12, stride=6, max_batch_tokens=40)
    docs = [nlp(t) for t in ["good", "", "a bad film with awful jokes and more jokes " * 3, "   ", "i hated it"]]
    batch = model.predict(docs)
    for i, doc in enumerate(docs):
        single = model.predict([doc])
        assert_allclose(batch.doc_tokens()[i], single.doc_tokens()[0], atol=1e-5)
        assert_allclose(batch.mean[i], single.mean[0], atol=1e-5)


def test_chunk_lengths_are_rounded_and_capped(tiny_bert):
    """Chunks pad to a multiple of LENGTH_MULTIPLE (few distinct shapes for
    oneDNN to cache) but never past the longest window the model accepts, and
    within max_batch_tokens unless one window alone exceeds it."""
    nlp = spacy.blank("en")
    model = _encoder(tiny_bert)
    _, tokenizer = get_hf_parts(model)
    words = "the plot is great fun and i loved every minute of it".split()
    docs = [nlp(" ".join(words[: 1 + i % len(words)] * (1 + i // 4))) for i in range(40)]
    window = 21  # + [CLS] and [SEP] = 23, not a multiple of 8
    plan = plan_windows(tokenizer, docs, window=window, stride=10, max_batch_tokens=64)
    lengths = [ids.shape[1] for ids, _ in plan.chunks]
    assert all(n % LENGTH_MULTIPLE == 0 or n == window + 2 for n in lengths)
    assert window + 2 in lengths  # full windows are not padded past the model's limit
    for ids, mask in plan.chunks:
        assert ids.shape[0] * ids.shape[1] <= 64 or ids.shape[0] == 1
        assert mask.sum(1).max() > ids.shape[1] - LENGTH_MULTIPLE  # no all-padding tail
    assert sum(int(mask.sum()) for _, mask in plan.chunks) == len(plan.index["pos_window"])


def _split_cost(padded, bounds, call_cost):
    return sum((b - a) * padded[a] + call_cost for a, b in bounds)


def _all_splits(n):
    """Every way to cut range(n) into contiguous chunks."""
    if n == 0:
        yield []
        return
    for first in range(1, n + 1):
        for rest in _all_splits(n - first):
            yield [(0, first)] + [(a + first, b + first) for a, b in rest]


@pytest.mark.parametrize("seed", range(20))
def test_split_sorted_is_the_cheapest_valid_split(seed):
    """Against brute force: contiguous chunks covering every window once, each
    within max_batch_tokens unless it is one window, and no valid split costs less."""
    rng = numpy.random.default_rng(seed)
    padded = sorted((int(x) * 4 for x in rng.integers(1, 20, size=rng.integers(1, 9))), reverse=True)
    max_batch_tokens, call_cost = int(rng.choice([16, 64, 200])), int(rng.choice([0, 16, 128]))
    bounds = split_sorted(padded, max_batch_tokens, call_cost)
    assert [a for a, _ in bounds] == [0] + [b for _, b in bounds[:-1]] and bounds[-1][1] == len(padded)
    valid = lambda split: all(b - a == 1 or (b - a) * padded[a] <= max_batch_tokens for a, b in split)  # noqa: E731
    assert valid(bounds)
    cheapest = min(_split_cost(padded, s, call_cost) for s in _all_splits(len(padded)) if valid(s))
    assert _split_cost(padded, bounds, call_cost) == cheapest


def test_split_sorted_trades_padding_for_calls():
    """A batch of mixed lengths: near-free calls mean no padding at all; costly calls
    mean as few chunks as max_batch_tokens allows; one window over the limit
    still gets a chunk of its own."""
    padded = [64, 60, 8, 8, 8, 8, 4, 4]
    assert split_sorted(padded, 1024, call_cost=1) == [(0, 1), (1, 2), (2, 6), (6, 8)]
    assert split_sorted(padded, 1024, call_cost=10**6) == [(0, 8)]
    assert split_sorted(padded, 1024, call_cost=128) == [(0, 2), (2, 8)]
    assert split_sorted([2048, 8], 1024) == [(0, 1), (1, 2)]
    assert split_sorted([], 1024) == []


def test_unaligned_tokens_get_zero_rows(tiny_bert):
    """Whitespace tokens have no wordpieces: zero rows, never a shifted alignment."""
    nlp = spacy.blank("en")
    model = _encoder(tiny_bert)
    doc = nlp("good  \n movie")
    out = model.predict([doc]).doc_tokens()[0]
    assert out.shape[0] == len(doc)
    ws = [t.i for t in doc if t.is_space]
    assert ws and all(not out[i].any() for i in ws)
    assert all(out[t.i].any() for t in doc if not t.is_space)


def test_gradients_reach_the_transformer(tiny_bert):
    nlp = spacy.blank("en")
    model = _encoder(tiny_bert)
    out, backprop = model.begin_update([nlp("a good movie"), nlp("bad")])
    from spacy_gptbert.models.encoder import EncoderOutput

    backprop(EncoderOutput(None, None, model.ops.alloc2f(*out.mean.shape) + 1.0))
    hf_model, _ = get_hf_parts(model)
    grads = [p.grad for p in hf_model.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_two_forward_passes_in_flight_keep_their_own_wordpiece_lengths(tiny_bert, monkeypatch):
    """A second forward pass that starts while the first is inside torch (a
    thread, or a listener's component and its encoder) must not hand the
    first its wordpiece lengths: each pass gets exactly the rows it gets alone."""
    nlp = spacy.blank("en")
    model = _encoder(tiny_bert)
    model.attrs["return_wordpieces"] = True
    first, second = [nlp("a good movie with great actors")], [nlp("bad"), nlp("i hated it")]
    alone = [model.predict(first).wordpieces, model.predict(second).wordpieces]
    shim_type = type(model.shims[0])
    shim_call = shim_type.__call__
    nested = []

    def call_with_a_second_pass_in_flight(shim, inputs, is_train):
        if not nested:
            nested.append(None)  # only the outer call starts a nested pass
            nested[0] = model.predict(second).wordpieces
        return shim_call(shim, inputs, is_train)

    monkeypatch.setattr(shim_type, "__call__", call_with_a_second_pass_in_flight)
    outer = model.predict(first).wordpieces
    for got, want in zip([outer, nested[0]], alone):
        assert got.lengths.tolist() == want.lengths.tolist()
        assert_allclose(got.dataXd, want.dataXd, atol=1e-6)


def test_encoder_output_fields_a_gradient_leaves_unset_are_optional():
    """A listener's gradient sets only the field it used (pooling.select)."""
    from typing import Optional, get_type_hints

    from thinc.api import Ragged
    from thinc.types import Floats2d

    from spacy_gptbert.models.encoder import EncoderOutput

    assert get_type_hints(EncoderOutput) == {
        "tokens": Optional[Ragged], "cls": Optional[Floats2d], "mean": Optional[Floats2d],
        "wordpieces": Optional[Ragged],
    }
