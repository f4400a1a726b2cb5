import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose

from spacy_gptbert.models.architectures import build_encoder
from spacy_gptbert.models.encoder import LENGTH_MULTIPLE, get_hf_parts, plan_windows, split_sorted, window_starts


@pytest.mark.parametrize("n,window,stride", [(0, 8, 4), (5, 8, 4), (8, 8, 8), (9, 8, 4), (100, 30, 10), (101, 30, 30)])
def test_windows_cover_every_wordpiece(n, window, stride):
    starts = window_starts(n, window, stride)
    covered = numpy.zeros(n, dtype=int)
    for s in starts:
        assert 0 <= s and (s + window <= n or s == 0)
        covered[s : s + window] += 1
    assert (covered >= 1).all()


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
    doc = nlp("A good movie with unbelievably great actors")
    out = model.predict([doc])
    enc = tokenizer([t.text for t in doc], is_split_into_words=True, add_special_tokens=False)
    hidden = _reference(hf_model, tokenizer, enc["input_ids"])
    word_ids = enc.word_ids()
    tokens = out.doc_tokens()[0]
    assert tokens.shape == (len(doc), model.get_dim("nO"))
    for i in range(len(doc)):
        rows = [j + 1 for j, w in enumerate(word_ids) if w == i]
        assert_allclose(tokens[i], hidden[rows].mean(axis=0), atol=1e-5)
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
    ids = tokenizer([t.text for t in doc], is_split_into_words=True, add_special_tokens=False)["input_ids"]
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
