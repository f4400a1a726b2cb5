"""Saving and loading components: what comes from the files (learned state)
and what from the config spacy.load builds them from (settings it may override)."""
import pytest
import spacy
from spacy.training import Example

from spacy_gptbert.models import autocast
from spacy_gptbert.models.encoder import is_windowed_model

SAVED_MODEL = {"window": 32, "stride": 16, "max_batch_tokens": 256, "mixed_precision": False}


@pytest.fixture(scope="module")
def saved_pipeline(tiny_bert, tmp_path_factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": tiny_bert, **SAVED_MODEL}})
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_bert, **SAVED_MODEL}, "exclusive_classes": False})
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"FUN": float(f), "NEWS": float(n)}})
           for t, f, n in [("great fun", 1, 0), ("the vote failed", 0, 1)]]
    nlp.initialize(lambda: egs)
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    nlp.to_disk(path)
    return path


def _node(nlp, name):
    return next(node for node in nlp.get_pipe(name).model.walk() if is_windowed_model(node))


def test_a_load_without_overrides_restores_the_saved_settings_and_labels(saved_pipeline):
    nlp = spacy.load(saved_pipeline)
    textcat = nlp.get_pipe("bert_textcat")
    assert textcat.cfg == {"labels": ["FUN", "NEWS"], "exclusive_classes": False, "threshold": 0.5}
    for name in ("bert_encoder", "bert_textcat"):
        node = _node(nlp, name)
        assert {key: node.attrs[key] for key in SAVED_MODEL} == SAVED_MODEL
        assert node.shims[0]._model.mixed_precision is False


def _module(nlp, name):
    return _node(nlp, name).shims[0]._model


@pytest.mark.parametrize("component,override,read,expected", [
    ("bert_textcat", {"threshold": 0.3}, lambda nlp: nlp.get_pipe("bert_textcat").cfg["threshold"], 0.3),
    ("bert_textcat", {"model": {"window": 24, "stride": 12}},
     lambda nlp: (_node(nlp, "bert_textcat").attrs["window"], _node(nlp, "bert_textcat").attrs["stride"]), (24, 12)),
    ("bert_textcat", {"model": {"max_batch_tokens": 64}},
     lambda nlp: _node(nlp, "bert_textcat").attrs["max_batch_tokens"], 64),
    ("bert_textcat", {"model": {"mixed_precision": True}},
     lambda nlp: (_node(nlp, "bert_textcat").attrs["mixed_precision"], _module(nlp, "bert_textcat").mixed_precision),
     (True, True)),
    ("bert_encoder", {"model": {"mixed_precision": True}},
     lambda nlp: (_node(nlp, "bert_encoder").attrs["mixed_precision"], _module(nlp, "bert_encoder").mixed_precision),
     (True, True)),
    ("bert_encoder", {"doc_pooling": "cls", "store_wordpieces": True},
     lambda nlp: (nlp.get_pipe("bert_encoder").cfg, _node(nlp, "bert_encoder").attrs["return_wordpieces"]),
     ({"doc_pooling": "cls", "store_wordpieces": True}, True)),
])
def test_a_load_time_override_wins_over_the_saved_setting(saved_pipeline, monkeypatch, component, override,
                                                         read, expected):
    """spacy.load(P, config=...) changes a setting, as in spaCy's own
    components, and keeps what training learned (the labels)."""
    monkeypatch.setattr(autocast, "native_bf16", lambda: True)  # bf16 asked for is bf16 used, on any CPU
    nlp = spacy.load(saved_pipeline, config={"components": {component: override}})
    assert read(nlp) == expected
    assert nlp.get_pipe("bert_textcat").labels == ("FUN", "NEWS")


def test_overridden_settings_are_the_ones_that_run(saved_pipeline):
    nlp = spacy.load(saved_pipeline, config={"components": {
        "bert_encoder": {"doc_pooling": "cls", "store_wordpieces": True}}})
    doc = nlp("great fun")
    assert doc._.bert_wordpieces.shape == (2, 32)  # "great", "fun"
    assert (doc.vector == doc._.bert_pooled["cls"]).all()
