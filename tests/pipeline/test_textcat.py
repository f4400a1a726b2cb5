import math

import numpy
import pytest
import spacy
from numpy.testing import assert_allclose
from spacy.training import Example

from spacy_gptbert.pipeline.textcat import BertTextCategorizer

TRAIN = [
    ("a good movie with great actors", "POS"), ("a bad film with awful jokes", "NEG"),
    ("i loved every minute of it", "POS"), ("boring , dull and terrible", "NEG"),
    ("what a wonderful surprise !", "POS"), ("a complete waste of time .", "NEG"),
]


def make_nlp(name, **cfg):
    nlp = spacy.blank("en")
    model = {"name": name, "window": 32, "stride": 16, **cfg.pop("model", {})}
    nlp.add_pipe("bert_textcat", config={"model": model, **cfg})
    return nlp


def examples(nlp, data=TRAIN, labels=("POS", "NEG")):
    return [Example.from_dict(nlp.make_doc(t), {"cats": {l: float(l == y) for l in labels}}) for t, y in data]


def test_default_config():
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("bert_textcat")
    assert isinstance(textcat, BertTextCategorizer)
    cfg = nlp.get_pipe_config("bert_textcat")
    assert cfg["model"]["@architectures"] == "spacy-gptbert.BertTextCat.v1"
    assert cfg["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert cfg["model"]["pooling"] == "mean"
    assert cfg["exclusive_classes"] is True and cfg["threshold"] == 0.5
    assert textcat.model.shims == [] or not any(n.shims for n in textcat.model.walk())  # nothing loaded yet


def test_empty_and_whitespace_docs(tiny_bert):
    nlp = make_nlp(tiny_bert)
    nlp.initialize(lambda: examples(nlp))
    docs = list(nlp.pipe(["", "   ", "\n\t", "good"]))
    assert len(docs) == 4
    for doc in docs:
        assert set(doc.cats) == {"POS", "NEG"}
        assert math.isclose(sum(doc.cats.values()), 1.0, rel_tol=1e-5)


def test_exact_loss_on_toy_case(tiny_bert):
    """Cross-entropy and its gradient, computed by hand for given logits."""
    nlp = make_nlp(tiny_bert)
    textcat = nlp.get_pipe("bert_textcat")
    egs = examples(nlp, TRAIN[:2])
    nlp.initialize(lambda: egs)
    assert textcat.labels == ("POS", "NEG")
    logits = numpy.asarray([[2.0, 0.0], [0.5, 1.5]], dtype="float32")
    loss, d = textcat.get_loss(egs, logits)
    p0 = math.exp(2) / (math.exp(2) + 1)  # P(POS) for doc 0 (gold POS)
    p1 = math.exp(1.5) / (math.exp(0.5) + math.exp(1.5))  # P(NEG) for doc 1 (gold NEG)
    assert loss == pytest.approx((-math.log(p0) - math.log(p1)) / 2, rel=1e-5)
    assert_allclose(d, [[(p0 - 1) / 2, (1 - p0) / 2], [(1 - p1) / 2, (p1 - 1) / 2]], rtol=1e-5)


def test_exact_multilabel_loss(tiny_bert):
    nlp = make_nlp(tiny_bert, exclusive_classes=False)
    textcat = nlp.get_pipe("bert_textcat")
    egs = [Example.from_dict(nlp.make_doc("good"), {"cats": {"A": 1.0, "B": 0.0}}),
           Example.from_dict(nlp.make_doc("bad"), {"cats": {"A": 1.0}})]  # B unknown: left out
    nlp.initialize(lambda: egs)
    logits = numpy.asarray([[0.0, 1.0], [2.0, -3.0]], dtype="float32")
    loss, d = textcat.get_loss(egs, logits)
    sig = lambda x: 1 / (1 + math.exp(-x))
    expected = (-math.log(sig(0.0)) - math.log(1 - sig(1.0)) - math.log(sig(2.0))) / 2
    assert loss == pytest.approx(expected, rel=1e-5)
    assert_allclose(d, [[(sig(0) - 1) / 2, sig(1.0) / 2], [(sig(2.0) - 1) / 2, 0.0]], rtol=1e-5)


def test_exact_loss_with_label_smoothing(tiny_bert):
    """Smoothed targets 0.95 / 0.05 (eps 0.1, two classes): cross-entropy
    against them and gradient probs - targets, by hand."""
    nlp = make_nlp(tiny_bert, label_smoothing=0.1)
    textcat = nlp.get_pipe("bert_textcat")
    egs = examples(nlp, TRAIN[:2])
    nlp.initialize(lambda: egs)
    logits = numpy.asarray([[2.0, 0.0], [0.5, 1.5]], dtype="float32")
    loss, d = textcat.get_loss(egs, logits)
    p0 = math.exp(2) / (math.exp(2) + 1)  # P(POS) for doc 0 (gold POS)
    p1 = math.exp(1.5) / (math.exp(0.5) + math.exp(1.5))  # P(NEG) for doc 1 (gold NEG)
    hi, lo = 0.95, 0.05
    expected = (-hi * math.log(p0) - lo * math.log(1 - p0) - hi * math.log(p1) - lo * math.log(1 - p1)) / 2
    assert loss == pytest.approx(expected, rel=1e-5)
    assert_allclose(d, [[(p0 - hi) / 2, (1 - p0 - lo) / 2], [(1 - p1 - lo) / 2, (p1 - hi) / 2]], rtol=1e-5)


def test_multilabel_label_smoothing_moves_targets_towards_half(tiny_bert):
    nlp = make_nlp(tiny_bert, exclusive_classes=False, label_smoothing=0.2)
    textcat = nlp.get_pipe("bert_textcat")
    egs = [Example.from_dict(nlp.make_doc("good"), {"cats": {"A": 1.0, "B": 0.0}})]
    nlp.initialize(lambda: egs)
    logits = numpy.asarray([[0.0, 1.0]], dtype="float32")
    _, d = textcat.get_loss(egs, logits)
    sig = lambda x: 1 / (1 + math.exp(-x))
    assert_allclose(d, [[sig(0.0) - 0.9, sig(1.0) - 0.1]], rtol=1e-5)


@pytest.mark.parametrize("value", [-0.1, 1.0, 2.0])
def test_bad_label_smoothing(value):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E116"):
        nlp.add_pipe("bert_textcat", config={"label_smoothing": value})


@pytest.mark.parametrize("exclusive", [True, False])
def test_loss_of_confident_right_answer_is_tiny_not_negative(tiny_bert, exclusive):
    """Found by the fuzz suite: log(p + eps) rounded to a loss of -1.2e-07
    for a logit of 17; the loss is now computed from the logits."""
    nlp = make_nlp(tiny_bert, exclusive_classes=exclusive)
    textcat = nlp.get_pipe("bert_textcat")
    egs = [Example.from_dict(nlp.make_doc("good"), {"cats": {"A": 1.0, "B": 0.0}})]
    nlp.initialize(lambda: egs)
    loss, _ = textcat.get_loss(egs, numpy.asarray([[17.0, -17.0]], dtype="float32"))
    assert 0.0 <= loss < 1e-6
    loss, _ = textcat.get_loss(egs, numpy.asarray([[-40.0, 0.0]], dtype="float32"))
    expected = 40.0 if exclusive else 40.0 + math.log(2)  # multi-label: B's term at logit 0 adds log 2
    assert loss == pytest.approx(expected, rel=1e-5)  # exact, not capped at -log(eps) = 16.1


def _overfit(nlp, egs, steps=40):
    spacy.util.fix_random_seed(0)  # the head's initial weights, whatever ran before
    optimizer = nlp.initialize(lambda: egs)
    losses = []
    for _ in range(steps):
        losses.append(nlp.update(egs, sgd=optimizer, drop=0.0)["bert_textcat"])
    return losses


def test_overfit_save_load_and_pipe(tiny_bert, tmp_path):
    nlp = make_nlp(tiny_bert)
    egs = examples(nlp)
    losses = _overfit(nlp, egs)
    assert losses[-1] < losses[0] * 0.2
    texts = [t for t, _ in TRAIN]
    docs = [nlp(t) for t in texts]
    for doc, (_, gold) in zip(docs, TRAIN):
        assert max(doc.cats, key=doc.cats.get) == gold
    piped = list(nlp.pipe(texts, batch_size=4))
    for a, b in zip(docs, piped):
        assert a.cats == pytest.approx(b.cats, abs=1e-6)
    nlp.to_disk(tmp_path / "pipe")
    hf_dir = tmp_path / "pipe" / "bert_textcat" / "hf_0"
    # the weights get the umask's mode like every other file (safetensors alone would write 0600)
    assert (hf_dir / "model.safetensors").stat().st_mode & 0o777 == (hf_dir / "config.json").stat().st_mode & 0o777
    assert not list((tmp_path / "pipe" / "bert_textcat").rglob("*.bin"))  # no pickles
    nlp2 = spacy.load(tmp_path / "pipe")
    for a, b in zip(docs, nlp2.pipe(texts)):
        assert a.cats == pytest.approx(b.cats, abs=1e-6)
    textcat = nlp.get_pipe("bert_textcat")
    clone = make_nlp(tiny_bert).get_pipe("bert_textcat").from_bytes(textcat.to_bytes())
    assert clone.labels == textcat.labels
    assert clone.predict([nlp.make_doc(texts[0])]) == pytest.approx(textcat.predict([nlp.make_doc(texts[0])]), abs=1e-6)


def test_multilabel_overfit(tiny_bert):
    nlp = make_nlp(tiny_bert, exclusive_classes=False)
    data = [("good fun", {"POS": 1.0, "FUN": 1.0}), ("bad film", {"POS": 0.0, "FUN": 0.0}),
            ("great actors", {"POS": 1.0, "FUN": 0.0}), ("awful jokes", {"POS": 0.0, "FUN": 1.0})]
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in data]
    losses = _overfit(nlp, egs, steps=60)
    assert losses[-1] < losses[0] * 0.3
    for text, cats in data:
        doc = nlp(text)
        assert {k: v >= 0.5 for k, v in doc.cats.items()} == {k: v == 1.0 for k, v in cats.items()}
    scores = nlp.evaluate(egs)
    assert scores["cats_acc"] == 1.0 and scores["cats_macro_auc"] == 1.0


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_options(tiny_bert, pooling):
    nlp = make_nlp(tiny_bert, model={"pooling": pooling})
    nlp.initialize(lambda: examples(nlp))
    assert set(nlp("good").cats) == {"POS", "NEG"}


def test_scores_include_accuracy_and_per_label(tiny_bert):
    nlp = make_nlp(tiny_bert)
    egs = examples(nlp)
    _overfit(nlp, egs)
    scores = nlp.evaluate(egs)
    for key in ("cats_score", "cats_acc", "cats_macro_f", "cats_macro_auc", "cats_f_per_type"):
        assert key in scores
    assert scores["cats_acc"] == 1.0
    assert set(scores["cats_f_per_type"]) == {"POS", "NEG"}


def test_scorer_accuracy_and_exact_match_by_hand():
    from spacy_gptbert.pipeline.textcat import textcat_score

    nlp = spacy.blank("en")

    def eg(gold, pred):
        example = Example.from_dict(nlp.make_doc("x"), {"cats": gold})
        example.predicted.cats = pred
        return example

    labels = ["A", "B", "C"]
    egs = [
        eg({"A": 1.0, "B": 1.0, "C": 0.0}, {"A": 0.9, "B": 0.6, "C": 0.1}),  # 3/3 labels right: exact
        eg({"A": 1.0, "B": 0.0, "C": 0.0}, {"A": 0.7, "B": 0.5, "C": 0.2}),  # B at the threshold: 2/3
        eg({"A": 0.0, "B": 0.0, "C": 1.0}, {"A": 0.4, "B": 0.3, "C": 0.2}),  # C missed: 2/3
        eg({"A": 0.0, "B": 1.0}, {"A": 0.1, "B": 0.8, "C": 0.9}),  # C not in gold: unknown, 2/2, exact
    ]
    scores = textcat_score(egs, labels=labels, multi_label=True, threshold=0.5)
    assert scores["cats_acc"] == pytest.approx(9 / 11)  # label-wise (Hamming) accuracy
    assert scores["cats_exact_match"] == pytest.approx(2 / 4)
    single = textcat_score(egs[:3], labels=labels, multi_label=False)
    # top labels: A = A, A = A, A != C
    assert single["cats_acc"] == single["cats_exact_match"] == pytest.approx(2 / 3)


def test_fine_tuned_sequence_classifier_predicts_without_training(tiny_seq_cls, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    import torch

    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("bert_textcat", config={"model": {
        "@architectures": "spacy-gptbert.HFSequenceClassifier.v1", "name": tiny_seq_cls}})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("x"), {})])
    assert textcat.labels == ("NEG", "POS", "NEU")
    doc = nlp("a good movie")
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_seq_cls).eval()
    tok = AutoTokenizer.from_pretrained(tiny_seq_cls)
    with torch.no_grad():
        probs = hf(**tok(["a good movie"], return_tensors="pt")).logits.softmax(-1)[0].numpy()
    assert_allclose([doc.cats[l] for l in textcat.labels], probs, atol=1e-5)
    nlp.to_disk(tmp_path / "p")
    assert spacy.load(tmp_path / "p")("a good movie").cats == pytest.approx(doc.cats, abs=1e-6)


def test_fine_tuned_labels_conflict(tiny_seq_cls):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"labels": ["A", "B"], "model": {
        "@architectures": "spacy-gptbert.HFSequenceClassifier.v1", "name": tiny_seq_cls}})
    with pytest.raises(ValueError, match="E112"):
        nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("x"), {})])


def test_fine_tuned_classifier_refuses_data_labels_its_head_lacks(tiny_seq_cls):
    """Data labelled '0'/'1' for a head with NEG/POS/NEU: E117 at initialize
    (naming both label sets), not a loss of 0 for every example."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {
        "@architectures": "spacy-gptbert.HFSequenceClassifier.v1", "name": tiny_seq_cls}})
    examples = [Example.from_dict(nlp.make_doc("good"), {"cats": {"1": 1.0, "0": 0.0}})]
    with pytest.raises(ValueError, match=r"E117.*training data has labels \['0', '1'\].*'NEG', 'POS', 'NEU'"):
        nlp.initialize(lambda: examples)


def test_encoder_of_a_fine_tuned_classifier_warns_its_head_is_dropped(tiny_seq_cls):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_seq_cls}})
    examples = [Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 0.0}})]
    with pytest.warns(UserWarning, match="W004.*HFSequenceClassifier.v1"):
        nlp.initialize(lambda: examples)


# -- bad input -----------------------------------------------------------------


def test_no_labels(tiny_bert):
    nlp = make_nlp(tiny_bert)
    with pytest.raises(ValueError, match="E106"):
        nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("good"), {})])


def test_empty_training_data(tiny_bert):
    nlp = make_nlp(tiny_bert)
    with pytest.raises(ValueError, match="E109"):
        nlp.get_pipe("bert_textcat").initialize(lambda: [], nlp=nlp)


def test_two_true_labels_with_exclusive_classes(tiny_bert):
    nlp = make_nlp(tiny_bert)
    eg = Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 1.0, "NEG": 1.0}})
    with pytest.raises(ValueError, match="E107"):
        nlp.initialize(lambda: [eg])


@pytest.mark.parametrize("value", [2.0, -1.0])
def test_values_outside_unit_interval(tiny_bert, value):
    nlp = make_nlp(tiny_bert, exclusive_classes=False)
    eg = Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": value}})
    with pytest.raises(ValueError, match="E108"):
        nlp.initialize(lambda: [eg])


def test_dev_label_unseen_in_training(tiny_bert):
    nlp = make_nlp(tiny_bert)
    nlp.initialize(lambda: examples(nlp))
    dev = examples(nlp, [("odd", "OTHER")], labels=("POS", "NEG", "OTHER"))
    with pytest.raises(ValueError, match="E110"):
        nlp.evaluate(dev)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5])
def test_bad_threshold(threshold):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E111"):
        nlp.add_pipe("bert_textcat", config={"threshold": threshold})


def test_bad_label():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E113"):
        nlp.add_pipe("bert_textcat", config={"labels": [""]})


def test_bad_pooling():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E103"):
        nlp.add_pipe("bert_textcat", config={"model": {"pooling": "max"}})


def test_non_doc_input(tiny_bert):
    nlp = make_nlp(tiny_bert)
    nlp.initialize(lambda: examples(nlp))
    with pytest.raises(TypeError, match="E101"):
        nlp.get_pipe("bert_textcat").predict(["not a doc"])
    with pytest.raises(ValueError, match="E1041"):  # spaCy's own check for nlp(...)
        nlp(123)


def test_unknown_model_name_is_caught_at_initialize(tmp_path):
    nlp = make_nlp(str(tmp_path / "missing-model"))
    with pytest.raises(OSError, match="E001"):
        nlp.initialize(lambda: examples(nlp))


def test_a_mixed_precision_pipeline_predicts_in_fp32_unless_asked(tiny_bert, tmp_path, monkeypatch):
    """Trained with mixed_precision = true, a pipeline predicts in float32 by
    default, so a doc's cats do not depend on the batch it shares; bf16
    prediction is a choice made at load time (predict_precision = "mixed")."""
    from spacy_gptbert.models import autocast

    monkeypatch.setattr(autocast, "native_bf16", lambda: True)  # bf16 autocast on any CPU (emulated there)
    nlp = make_nlp(tiny_bert, model={"mixed_precision": True})
    spacy.util.fix_random_seed(0)
    _overfit(nlp, examples(nlp), steps=4)
    nlp.to_disk(tmp_path / "p")
    texts = [t for t, _ in TRAIN] + ["i hated the ending " * 12]
    fp32 = spacy.load(tmp_path / "p", config={"components": {"bert_textcat": {"model": {"mixed_precision": False}}}})
    want = [doc.cats for doc in fp32.pipe(texts)]
    loaded = spacy.load(tmp_path / "p")
    for text, cats, piped in zip(texts, want, loaded.pipe(texts, batch_size=len(texts))):
        assert loaded(text).cats == pytest.approx(cats, abs=1e-6)
        assert piped.cats == pytest.approx(cats, abs=1e-6)
    mixed = spacy.load(tmp_path / "p", config={"components": {"bert_textcat": {"predict_precision": "mixed"}}})
    bf16 = [doc.cats for doc in mixed.pipe(texts)]
    assert max(abs(a[label] - b[label]) for a, b in zip(bf16, want) for label in a) > 1e-5  # fp32 runs: < 1e-6


@pytest.mark.parametrize("config,code", [
    ({"predict_precision": "bf32"}, "E118"),
    ({"predict_precision": "mixed", "quantize": True}, "E119"),
])
def test_bad_predict_precision(config, code):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=code):
        nlp.add_pipe("bert_textcat", config=config)


def test_exclusive_classes_need_two_labels(tiny_bert):
    """A softmax over one label is always 1.0: E120 at initialize (as spaCy's
    textcat gives E867) instead of a loss of 0 and 1.0 for every doc; its
    advice, exclusive_classes = false, trains on the one label."""
    nlp = make_nlp(tiny_bert)
    one_label = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS")}}) for t, y in TRAIN]
    with pytest.raises(ValueError, match=r"E120.*'POS'.*exclusive_classes = false"):
        nlp.initialize(lambda: [eg for eg in one_label if eg.reference.cats["POS"] == 1.0])
    nlp = make_nlp(tiny_bert, exclusive_classes=False)
    nlp.initialize(lambda: one_label)
    assert list(nlp("a good movie").cats) == ["POS"]


def test_initialize_streams_the_training_data_and_samples_the_dev_data(tiny_bert, monkeypatch):
    """initialize never holds the training corpus (one example at a time is
    alive while it streams 200), and checks the first DEV_CHECK_SAMPLE dev
    examples, not the whole dev corpus."""
    import weakref

    from spacy_gptbert.pipeline import textcat as textcat_module

    class Probe:  # one per example, on its reference doc: alive while the example is
        pass

    nlp = make_nlp(tiny_bert)
    alive, most_alive, dev_read = weakref.WeakSet(), [0], [0]

    def stream(n):
        for i in range(n):
            most_alive[0] = max(most_alive[0], len(alive))
            eg = examples(nlp, [TRAIN[i % len(TRAIN)]])[0]
            probe = Probe()
            alive.add(probe)
            eg.reference.user_data["probe"] = probe
            yield eg

    def dev_corpus(nlp):
        for eg in examples(nlp) * 1000:
            dev_read[0] += 1
            yield eg

    monkeypatch.setattr(textcat_module, "_dev_examples", dev_corpus)
    nlp.get_pipe("bert_textcat").initialize(lambda: stream(200), nlp=nlp)
    assert most_alive[0] == 1  # the example before, not yet released when the next is made
    assert dev_read[0] == textcat_module.DEV_CHECK_SAMPLE
    assert nlp.get_pipe("bert_textcat").labels == ("POS", "NEG")
