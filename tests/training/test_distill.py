"""The `label` command: a teacher pipeline's probabilities as doc.cats."""
import json

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app
from spacy_gptbert.pipeline.textcat import GOLD_CATS_KEY
from spacy_gptbert.training.distill import find_classifier

TEXTS = ["a good movie with great actors", "a bad film with awful jokes", "i loved every minute of it",
         "boring , dull and terrible", "what a wonderful surprise !"]
GOLD = ["POS", "NEG", "POS", "NEG", "POS"]


@pytest.fixture(scope="module")
def teacher(tiny_bert, tmp_path_factory):
    """A tiny bert_textcat, trained a few steps, saved: its outputs are not uniform."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_bert, "window": 32, "stride": 16}})
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS"), "NEG": float(y == "NEG")}})
           for t, y in zip(TEXTS, GOLD)]
    spacy.util.fix_random_seed(0)  # the same teacher whichever tests ran before
    opt = nlp.initialize(lambda: egs)
    for _ in range(5):
        nlp.update(egs, sgd=opt)
    path = tmp_path_factory.mktemp("teacher") / "pipeline"
    nlp.to_disk(path)
    return path


def run_label(*args):
    result = CliRunner().invoke(app, ["label", *map(str, args)])
    return result


def read(path, nlp):
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


def expected_cats(teacher_path):
    nlp = spacy.load(teacher_path)
    return [nlp(t).cats for t in TEXTS]


def assert_cats_equal(docs, expected):
    assert [d.text for d in docs] == TEXTS
    for doc, cats in zip(docs, expected):
        assert set(doc.cats) == {"POS", "NEG"}
        numpy.testing.assert_allclose([doc.cats["POS"], doc.cats["NEG"]], [cats["POS"], cats["NEG"]], atol=1e-5)
    assert len({round(d.cats["POS"], 6) for d in docs}) > 1  # really the teacher's, not a constant


def test_label_spacy_corpus_keeps_gold(teacher, tmp_path):
    nlp = spacy.blank("en")
    db = DocBin()
    for text, y in zip(TEXTS, GOLD):
        doc = nlp.make_doc(text)
        doc.cats = {"POS": float(y == "POS"), "NEG": float(y == "NEG"), "OTHER": 0.0}
        db.add(doc)
    db.to_disk(tmp_path / "train.spacy")
    result = run_label(teacher, tmp_path / "train.spacy", tmp_path / "out.spacy", "--batch-size", "2")
    assert result.exit_code == 0, result.output
    assert "Wrote 5 docs" in result.output
    docs = read(tmp_path / "out.spacy", nlp)
    assert_cats_equal(docs, expected_cats(teacher))  # the gold-only label OTHER is gone from the targets
    assert [d.user_data[GOLD_CATS_KEY] for d in docs] == [
        {"POS": float(y == "POS"), "NEG": float(y == "NEG"), "OTHER": 0.0} for y in GOLD]


def test_label_plain_text_and_jsonl(teacher, tmp_path):
    (tmp_path / "texts.txt").write_text("\ufeff" + "\n".join(TEXTS[:2]) + "\n\n" + "\n".join(TEXTS[2:]) + "\n",
                                        encoding="utf8")
    (tmp_path / "texts.jsonl").write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS), encoding="utf8")
    expected = expected_cats(teacher)
    nlp = spacy.blank("en")
    for name, extra in [("texts.txt", []), ("texts.jsonl", ["--text-key", "body"])]:
        result = run_label(teacher, tmp_path / name, tmp_path / f"{name}.spacy", *extra)
        assert result.exit_code == 0, result.output
        docs = read(tmp_path / f"{name}.spacy", nlp)
        assert_cats_equal(docs, expected)
        assert all(GOLD_CATS_KEY not in d.user_data for d in docs)


def test_label_limit_and_no_keep_gold(teacher, tmp_path):
    nlp = spacy.blank("en")
    docs_in = []
    for t in TEXTS:
        doc = nlp.make_doc(t)
        doc.cats = {"POS": 1.0, "NEG": 0.0}
        docs_in.append(doc)
    DocBin(docs=docs_in).to_disk(tmp_path / "in.spacy")
    result = run_label(teacher, tmp_path / "in.spacy", tmp_path / "out.spacy", "--limit", "3", "--no-keep-gold")
    assert result.exit_code == 0, result.output
    docs = read(tmp_path / "out.spacy", nlp)
    assert [d.text for d in docs] == TEXTS[:3]
    assert all(GOLD_CATS_KEY not in d.user_data for d in docs)


def test_labelled_corpus_trains_a_student(teacher, tiny_bert, tmp_path):
    """The written corpus is what bert_textcat trains on: soft targets pass
    its checks and the loss on them is cross-entropy to the teacher."""
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS), encoding="utf8")
    assert run_label(teacher, tmp_path / "texts.txt", tmp_path / "soft.spacy").exit_code == 0
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_bert, "window": 32, "stride": 16}})
    egs = [Example(nlp.make_doc(d.text), d) for d in read(tmp_path / "soft.spacy", nlp)]
    opt = nlp.initialize(lambda: egs)
    # The loss: cross-entropy to the teacher's probabilities, mean over docs,
    # written out with numpy on the student's logits.
    textcat = nlp.get_pipe("bert_textcat")
    logits = textcat.model.ops.to_numpy(textcat.model.predict([eg.predicted for eg in egs]))
    log_probs = logits - numpy.log(numpy.exp(logits).sum(axis=1, keepdims=True))
    targets = numpy.asarray([[eg.reference.cats[label] for label in textcat.labels] for eg in egs])
    assert not set(targets.ravel()) <= {0.0, 1.0}  # soft targets
    loss, _ = textcat.get_loss(egs, logits)
    assert loss == pytest.approx(-float((targets * log_probs).sum(axis=1).mean()), rel=1e-5)
    losses = nlp.update(egs, sgd=opt)
    assert losses["bert_textcat"] > 0  # (the update's forward pass has dropout: not the same logits)


def test_component_errors(teacher, tmp_path):
    (tmp_path / "texts.txt").write_text("hello\n", encoding="utf8")
    result = run_label(teacher, tmp_path / "texts.txt", tmp_path / "out.spacy", "--component", "nope")
    assert result.exit_code == 1 and "E360" in result.output
    assert not (tmp_path / "out.spacy").exists()
    with pytest.raises(ValueError, match="E361"):
        find_classifier(spacy.blank("en"))
