"""Every config in configs/ trains with `spacy train` (tiny model, a few steps)
and the result loads with spacy.load and predicts."""
from pathlib import Path

import pytest
import spacy
from spacy.cli.train import train
from spacy.tokens import Doc, DocBin

from .conftest import docs_block

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TEXTS = ["a good movie", "a bad film", "i loved it", "boring and dull", "great fun", "awful jokes"]


def _textcat_data(path: Path, multi_label: bool) -> Path:
    nlp = spacy.blank("en")
    db = DocBin()
    for i, text in enumerate(TEXTS):
        doc = nlp(text)
        pos = i % 2 == 0
        doc.cats = {"POSITIVE": float(pos), "NEGATIVE": float(not pos)}
        if multi_label:
            doc.cats["FUN"] = float("fun" in text or "loved" in text)
        db.add(doc)
    db.to_disk(path)
    return path


def _tagger_ner_data(path: Path) -> Path:
    nlp = spacy.blank("en")
    db = DocBin()
    for words, tags, ents in [
        (["Anna", "lives", "in", "Paris"], ["PROPN", "VERB", "ADP", "PROPN"], ["B-PER", "O", "O", "B-LOC"]),
        (["Bob", "likes", "Rome"], ["PROPN", "VERB", "PROPN"], ["B-PER", "O", "B-LOC"]),
    ]:
        doc = Doc(nlp.vocab, words=words, tags=tags, ents=ents)
        db.add(doc)
    db.to_disk(path)
    return path


TINY_GPT = {
    "components.gpt_generator.model.n_layer": 1, "components.gpt_generator.model.n_embd": 32,
    "components.gpt_generator.model.n_head": 2, "components.gpt_generator.model.vocab_size": 300,
    "components.gpt_generator.max_new_tokens": 4,
}
CASES = [
    ("textcat_sst2.cfg", "bert_textcat", "textcat", {}),
    ("textcat_multilabel.cfg", "bert_textcat", "multilabel", {}),
    ("encoder_textcat.cfg", "bert_encoder", "textcat", {}),
    ("encoder_tagger_ner.cfg", "bert_encoder", "tagger_ner", {}),
    ("classify_then_generate.cfg", "bert_textcat", "textcat", TINY_GPT),
]


@pytest.mark.slow
@pytest.mark.parametrize("config,encoder_component,data,extra", CASES)
def test_config_trains_and_loads(tmp_path, tiny_bert, config, encoder_component, data, extra):
    if data == "tagger_ner":
        corpus = _tagger_ner_data(tmp_path / "train.spacy")
    else:
        corpus = _textcat_data(tmp_path / "train.spacy", multi_label=data == "multilabel")
    prefix = f"components.{encoder_component}.model"
    overrides = {
        "paths.train": str(corpus), "paths.dev": str(corpus),
        f"{prefix}.name": tiny_bert, f"{prefix}.window": 32, f"{prefix}.stride": 16,
        "training.max_steps": 6, "training.eval_frequency": 3,
        "training.optimizer.learn_rate.total_steps": 6, "training.optimizer.learn_rate.warmup_steps": 1,
        **extra,
    }
    train(CONFIGS / config, tmp_path / "out", overrides=overrides)
    nlp = spacy.load(tmp_path / "out" / "model-last")
    doc = nlp("a good movie in Paris")
    if data == "tagger_ner":
        assert all(t.tag_ for t in doc)
    else:
        assert set(doc.cats) >= {"POSITIVE", "NEGATIVE"}
    if "gpt_generator" in nlp.pipe_names:
        assert isinstance(doc._.generation, str)


@pytest.mark.slow
def test_docs_base_config_fills_trains_and_loads(tmp_path, tiny_bert):
    """A user who writes the base config of docs/training.md and runs `spacy init fill-config`
    on it gets a config that trains (multi-label, the metric it names) and loads."""
    from spacy.cli.init_config import fill_config

    base = tmp_path / "base.cfg"
    base.write_text(docs_block("docs/training.md", "Writing your own config"), encoding="utf8")
    filled = tmp_path / "config.cfg"
    fill_config(filled, base, silent=True)
    config = spacy.util.load_config(filled)
    assert config["training"]["score_weights"]["cats_macro_f"] == 1.0
    assert config["training"]["score_weights"]["cats_score"] is None
    corpus = _textcat_data(tmp_path / "train.spacy", multi_label=True)
    overrides = {
        "paths.train": str(corpus), "paths.dev": str(corpus),
        "components.bert_textcat.model.name": tiny_bert,
        "training.max_steps": 4, "training.eval_frequency": 2,
        "training.optimizer.learn_rate.total_steps": 4, "training.optimizer.learn_rate.warmup_steps": 1,
    }
    train(filled, tmp_path / "out", overrides=overrides)
    nlp = spacy.load(tmp_path / "out" / "model-best")
    assert nlp.get_pipe("bert_textcat").cfg["exclusive_classes"] is False
    assert set(nlp("great fun").cats) == {"POSITIVE", "NEGATIVE", "FUN"}


@pytest.mark.slow
def test_docs_generator_config_fills_trains_and_generates(tmp_path):
    """The label-conditioned generator config of docs/generation.md, filled by fill-config,
    trains (a tiny GPT) and writes a completion that the prompt conditions."""
    from spacy.cli.init_config import fill_config

    base = tmp_path / "base.cfg"
    base.write_text(docs_block("docs/generation.md", "A label-conditioned generator"), encoding="utf8")
    filled = tmp_path / "config.cfg"
    fill_config(filled, base, silent=True)
    corpus = _textcat_data(tmp_path / "train.spacy", multi_label=False)
    overrides = {
        "paths.train": str(corpus), "paths.dev": str(corpus), **TINY_GPT,
        "components.gpt_generator.model.n_positions": 32,
        "training.max_steps": 4, "training.eval_frequency": 2,
        "training.optimizer.learn_rate.total_steps": 4, "training.optimizer.learn_rate.warmup_steps": 1,
    }
    train(filled, tmp_path / "out", overrides=overrides)
    nlp = spacy.load(tmp_path / "out" / "model-best")
    gen = nlp.get_pipe("gpt_generator")
    doc = nlp.make_doc("a good movie")
    doc.cats = {"POSITIVE": 0.9, "NEGATIVE": 0.1}
    assert gen.prompt(doc) == "positive review: "
    doc = gen(doc)
    assert isinstance(doc._.generation, str) and "positive review" not in doc._.generation
