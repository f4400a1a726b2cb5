import numpy
import pytest
import spacy
from numpy.testing import assert_allclose
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_gptbert.models.listener import EncoderListener
from spacy_gptbert.pipeline.encoder import BertEncoder

TAGGED = [
    ("a good movie", ["DET", "ADJ", "NOUN"]), ("i loved it", ["PRON", "VERB", "PRON"]),
    ("the plot is great fun", ["DET", "NOUN", "VERB", "ADJ", "NOUN"]),
    ("boring and terrible", ["ADJ", "CCONJ", "ADJ"]),
]


def encoder_nlp(name, **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": name, "window": 32, "stride": 16}, **cfg})
    return nlp


def init(nlp, texts=("a good movie", "bad")):
    return nlp.initialize(lambda: [Example.from_dict(nlp.make_doc(t), {}) for t in texts])


def test_default_config():
    nlp = spacy.blank("en")
    encoder = nlp.add_pipe("bert_encoder")
    assert isinstance(encoder, BertEncoder)
    cfg = nlp.get_pipe_config("bert_encoder")
    assert cfg["model"]["@architectures"] == "spacy-gptbert.Encoder.v1"
    assert cfg["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg["doc_pooling"] == "mean" and cfg["store_wordpieces"] is False


def test_tensor_vectors_and_similarity(tiny_bert):
    nlp = encoder_nlp(tiny_bert)
    init(nlp)
    doc = nlp("a good movie with great actors")
    width = nlp.get_pipe("bert_encoder").model.get_dim("nO")
    assert doc.tensor.shape == (len(doc), width)
    assert doc.has_vector and doc.vector.shape == (width,)
    assert_allclose(doc.vector, doc._.bert_pooled["mean"])
    span = doc[1:3]
    assert_allclose(span.vector, doc.tensor[1:3].mean(axis=0), rtol=1e-6)
    assert_allclose(doc[2].vector, doc.tensor[2])
    assert doc.similarity(doc) == pytest.approx(1.0, abs=1e-5)
    other = nlp("i hated the ending")

    def cosine(a, b):
        return float(numpy.dot(a, b) / (numpy.linalg.norm(a) * numpy.linalg.norm(b)))

    # Cosine of the encoder's own outputs: the mean-pooled doc vectors, the span's token rows.
    expected = cosine(doc._.bert_pooled["mean"], other._.bert_pooled["mean"])
    assert doc.similarity(other) == pytest.approx(expected, abs=1e-5) and expected < 0.9999
    expected = cosine(doc.tensor[1:3].mean(axis=0), other.tensor[0:2].mean(axis=0))
    assert span.similarity(other[0:2]) == pytest.approx(expected, abs=1e-5) and expected < 0.9999
    assert doc._.bert_wordpieces is None  # memory-light by default


def test_cls_doc_pooling_and_stored_wordpieces(tiny_bert):
    nlp = encoder_nlp(tiny_bert, doc_pooling="cls", store_wordpieces=True)
    init(nlp)
    doc = nlp("a good movie")
    assert_allclose(doc.vector, doc._.bert_pooled["cls"])
    assert doc._.bert_wordpieces.shape[0] >= len(doc)


def test_empty_and_whitespace_docs(tiny_bert):
    nlp = encoder_nlp(tiny_bert)
    init(nlp)
    docs = list(nlp.pipe(["", "   ", "good", "\n\n"]))
    assert [d.tensor.shape[0] for d in docs] == [len(d) for d in docs]
    assert nlp.get_pipe("bert_encoder").predict([]).cls.shape[0] == 0
    assert docs[0].vector.shape == docs[2].vector.shape


def test_long_doc_is_windowed_not_truncated(tiny_bert):
    nlp = encoder_nlp(tiny_bert)
    init(nlp)
    doc = nlp(" ".join(["i loved every minute of it"] * 50))  # ~300 tokens, window 32
    assert doc.tensor.shape[0] == len(doc)
    assert numpy.abs(doc.tensor[-5:]).sum() > 0  # the end is encoded too


def test_pipe_equals_call_and_save_load(tiny_bert, tmp_path):
    nlp = encoder_nlp(tiny_bert)
    init(nlp)
    texts = ["a good movie", "", "i hated the ending " * 20, "bad"]
    single = [nlp(t) for t in texts]
    for a, b in zip(single, nlp.pipe(texts, batch_size=3)):
        assert_allclose(a.tensor, b.tensor, atol=1e-5)
    nlp.to_disk(tmp_path / "enc")
    loaded = spacy.load(tmp_path / "enc")
    for a, b in zip(single, loaded.pipe(texts)):
        assert_allclose(a.tensor, b.tensor, atol=1e-5)
        assert_allclose(a.vector, b.vector, atol=1e-5)


def _listener_textcat_nlp(name):
    nlp = encoder_nlp(name)
    nlp.add_pipe("bert_textcat", config={"model": {
        "@architectures": "spacy-gptbert.TextCatHead.v1",
        "encoder": {"@architectures": "spacy-gptbert.EncoderListener.v1", "pooling": "mean"},
        "dropout": 0.0}})
    return nlp


def test_listening_textcat_trains_the_shared_encoder(tiny_bert, tmp_path):
    fix_random_seed(0)  # the head's initial weights: not whatever earlier tests left in the global state
    nlp = _listener_textcat_nlp(tiny_bert)
    data = [("a good movie", "POS"), ("a bad film", "NEG"), ("i loved it", "POS"), ("boring and dull", "NEG")]
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS"), "NEG": float(y == "NEG")}})
           for t, y in data]
    optimizer = nlp.initialize(lambda: egs)
    encoder = nlp.get_pipe("bert_encoder")
    assert encoder.listening_components == ["bert_textcat"]
    before = nlp("a good movie").tensor.copy()
    losses = [nlp.update(egs, sgd=optimizer)["bert_textcat"] for _ in range(40)]
    assert losses[-1] < losses[0] * 0.2
    assert not numpy.allclose(before, nlp("a good movie").tensor)  # encoder weights moved
    for text, gold in data:
        cats = nlp(text).cats
        assert max(cats, key=cats.get) == gold
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    for text, _ in data:
        assert loaded(text).cats == pytest.approx(nlp(text).cats, abs=1e-5)


def _cats_examples(nlp, data=(("a good movie", "POS"), ("a bad film", "NEG"))):
    return [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS"), "NEG": float(y == "NEG")}})
            for t, y in data]


def test_listener_refuses_to_train_on_zeros_when_the_encoder_is_excluded(tiny_bert):
    """What [training] frozen_components = ["bert_encoder"] does without
    annotating_components: the encoder neither runs nor annotates, and the
    head would learn from zeros (spaCy's Tok2VecListener raises here too)."""
    nlp = _listener_textcat_nlp(tiny_bert)
    egs = _cats_examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    with pytest.raises(ValueError, match=r"E104.*'bert_textcat'.*'bert_encoder'.*annotating_components"):
        nlp.update(egs, sgd=optimizer, exclude=["bert_encoder"])


def test_frozen_annotating_encoder_feeds_its_listener_what_it_wrote(tiny_bert):
    """E104's advice works: a frozen encoder listed in annotates writes its
    outputs on the docs, the listener trains the head on exactly those, and
    the encoder's weights stay as they were."""
    nlp = _listener_textcat_nlp(tiny_bert)
    egs = _cats_examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    encoder = nlp.get_pipe("bert_encoder")
    before = [p.detach().clone() for p in encoder.model.shims[0]._model.parameters()]
    losses = [nlp.update(egs, sgd=optimizer, exclude=["bert_encoder"], annotates=["bert_encoder"])["bert_textcat"]
              for _ in range(3)]
    assert losses[-1] < losses[0]
    assert all(torch_equal(a, b) for a, b in zip(before, encoder.model.shims[0]._model.parameters()))
    listener = encoder.listeners[0]
    docs = [encoder(nlp.make_doc(eg.text)) for eg in egs]
    Y, _ = listener(docs, is_train=True)
    assert_allclose(Y, numpy.stack([doc._.bert_pooled["mean"] for doc in docs]))


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_listener_uses_what_it_received_once(tiny_bert):
    """After a joint update the listener has used the encoder's output for that
    batch; a second update on the same docs without the encoder gets E104, not
    torch's 'Trying to backward through the graph a second time'."""
    nlp = _listener_textcat_nlp(tiny_bert)
    egs = _cats_examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    nlp.update(egs, sgd=optimizer)
    with pytest.raises(ValueError, match="E104"):
        nlp.update(egs, sgd=optimizer, exclude=["bert_encoder"])
    # and directly: one batch received, used once, then gone
    encoder, listener = nlp.get_pipe("bert_encoder"), nlp.get_pipe("bert_encoder").listeners[0]
    docs = [nlp.make_doc("a good movie")]
    encoder.update([Example.from_dict(docs[0], {})])
    listener(docs, is_train=True)
    assert (listener._batch_id, listener._outputs, listener._backprop) == (None, None, None)
    with pytest.raises(ValueError, match="E104"):
        listener(docs, is_train=True)


def test_spacy_tagger_on_the_listener(tiny_bert):
    fix_random_seed(0)  # the tagger's initial weights
    nlp = encoder_nlp(tiny_bert)
    nlp.add_pipe("tagger", config={"model": {
        "@architectures": "spacy.Tagger.v2",
        "tok2vec": {"@architectures": "spacy-gptbert.EncoderListener.v1", "pooling": "tokens"}}})
    egs = [Example.from_dict(nlp.make_doc(t), {"tags": tags}) for t, tags in TAGGED]
    optimizer = nlp.initialize(lambda: egs)
    for _ in range(60):
        nlp.update(egs, sgd=optimizer)
    scores = nlp.evaluate(egs)
    assert scores["tag_acc"] == 1.0


def test_listener_rejects_a_foreign_batch(tiny_bert):
    listener = EncoderListener("*", 4, "tokens")
    nlp = spacy.blank("en")
    listener.receive(1, None, None)
    with pytest.raises(ValueError, match="E105"):
        listener.verify_inputs([nlp("something else")])


# -- bad input -----------------------------------------------------------------


def test_window_larger_than_model_positions(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": tiny_bert, "window": 1000, "stride": 500}})
    with pytest.raises(ValueError, match="E102"):
        init(nlp)


def test_stride_larger_than_window():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E102"):
        nlp.add_pipe("bert_encoder", config={"model": {"window": 10, "stride": 20}})


@pytest.mark.parametrize("max_batch_tokens", [0, -5])
def test_bad_max_batch_tokens(max_batch_tokens):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E121"):
        nlp.add_pipe("bert_encoder", config={"model": {"max_batch_tokens": max_batch_tokens}})


def test_bad_doc_pooling():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E103"):
        nlp.add_pipe("bert_encoder", config={"doc_pooling": "max"})


def test_non_doc_input(tiny_bert):
    nlp = encoder_nlp(tiny_bert)
    init(nlp)
    with pytest.raises(TypeError, match="E101"):
        nlp.get_pipe("bert_encoder").predict([b"bytes"])


def test_uninitialized_encoder_says_so_even_for_no_docs(tiny_bert):
    with pytest.raises(ValueError, match="E009.*'bert_encoder'"):
        encoder_nlp(tiny_bert).get_pipe("bert_encoder").predict([])


def test_empty_initialize(tiny_bert):
    nlp = encoder_nlp(tiny_bert)
    with pytest.raises(ValueError, match="E109"):
        nlp.get_pipe("bert_encoder").initialize(lambda: [])


def test_exact_encoder_loss_is_the_squared_listener_gradient(tiny_bert):
    """Like spaCy's tok2vec, the encoder reports the sum of squares of the
    gradients its listeners send back; check it on a known gradient."""
    from spacy_gptbert.models.encoder import EncoderOutput

    nlp = encoder_nlp(tiny_bert)
    init(nlp)
    encoder = nlp.get_pipe("bert_encoder")
    listener = EncoderListener("*", None, "mean")
    encoder.add_listener(listener, "probe")
    docs = [nlp.make_doc(t) for t in ("a good movie", "bad", "")]
    losses = encoder.update([Example.from_dict(d, {}) for d in docs])
    width = encoder.model.get_dim("nO")
    grad = numpy.full((3, width), 0.5, dtype="float32")
    listener._backprop(EncoderOutput(None, None, grad))
    assert losses["bert_encoder"] == pytest.approx(3 * width * 0.25)


def test_spacy_textcat_on_the_listener(tiny_bert):
    fix_random_seed(0)  # the textcat's initial weights
    nlp = encoder_nlp(tiny_bert)
    nlp.add_pipe("textcat", config={"model": {
        "@architectures": "spacy.TextCatReduce.v1", "exclusive_classes": True,
        "use_reduce_first": False, "use_reduce_last": False, "use_reduce_max": True, "use_reduce_mean": True,
        "tok2vec": {"@architectures": "spacy-gptbert.EncoderListener.v1", "pooling": "tokens"}}})
    data = [("a good movie", "POS"), ("a bad film", "NEG"), ("i loved it", "POS"), ("boring and dull", "NEG")]
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS"), "NEG": float(y == "NEG")}})
           for t, y in data]
    optimizer = nlp.initialize(lambda: egs)
    for _ in range(60):
        nlp.update(egs, sgd=optimizer)
    assert nlp.evaluate(egs)["cats_macro_f"] == 1.0



MULTIPROCESS_SCRIPT = """
import json, sys
import spacy
nlp = spacy.blank("en")
nlp.add_pipe("bert_encoder", config={"model": {"name": sys.argv[1], "window": 32, "stride": 16}})
nlp.initialize()
texts = ["a good movie", "bad", "", "i hated the ending " * 10] * 3
single = [d.tensor.tolist() for d in nlp.pipe(texts)]
multi = [d.tensor.tolist() for d in nlp.pipe(texts, n_process=2, batch_size=4)]
print(json.dumps({"n": len(multi), "same": single == multi or all(
    abs(a - b) < 1e-5 for s, m in zip(single, multi) for ra, rb in zip(s, m) for a, b in zip(ra, rb))}))
"""


def test_multiprocess_pipe_matches_single_process(tiny_bert):
    """nlp.pipe(n_process=2) after the parent has used torch: no hang (fork-safe
    threads), every doc comes back, in order, with the same tensors. Run in a
    subprocess so a regression fails on the timeout instead of hanging CI."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRIPT, tiny_bert],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"n": 12, "same": True}
