"""Bad configuration and bad model files, tried the way a new user would
(nlp.add_pipe + nlp.initialize, spacy.load, spacy train): each fails at
config or initialize time with its catalogued error, before a training step."""
import json
import math
import os
import pickle
import shutil
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from spacy_gptbert.models import generator_model as lm_model
from spacy_gptbert.models.hf_loading import save_pretrained
from spacy_gptbert.pipeline.textcat import BertTextCategorizer

from ..conftest import HF_TINY, greedy_by_hand
from .conftest import TINY_GPT, WINDOWS, cats_examples

COMPONENTS = ["bert_encoder", "bert_textcat", "gpt_generator"]
TOKENIZER_FILES = ("vocab.txt", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")


@pytest.fixture(scope="module")
def gpt_dir(nlp_all, tmp_path_factory) -> Path:
    """The tiny scratch GPT as a standard Hugging Face directory."""
    path = tmp_path_factory.mktemp("tiny_gpt")
    save_pretrained(*lm_model.get_hf_parts(nlp_all.get_pipe("gpt_generator").lm), path)
    return path


def model_dir_for(component, bert16, gpt_dir) -> Path:
    return Path(gpt_dir if component == "gpt_generator" else bert16)


def build(component: str, name) -> spacy.language.Language:
    nlp = spacy.blank("en")
    if component == "gpt_generator":
        model = {"@architectures": "spacy-gptbert.CausalLM.v1", "name": str(name)}
    else:
        model = {"name": str(name), **WINDOWS}
    nlp.add_pipe(component, config={"model": model})
    return nlp


def initialize(nlp) -> None:
    nlp.initialize(lambda: cats_examples(nlp))


# -- where is the model? -------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_missing_directory_says_where_it_looked(component, tmp_path):
    nlp = build(component, tmp_path / "no-such-model")
    with pytest.raises(OSError, match="E001") as err:
        initialize(nlp)
    message = str(err.value)
    assert str(tmp_path / "no-such-model") in message and "check the path" in message


@pytest.mark.parametrize("component", COMPONENTS)
def test_unknown_hub_name_offline(component):
    nlp = build(component, "some-org/no-such-model")
    with pytest.raises(OSError, match="E001") as err:
        initialize(nlp)
    message = str(err.value)
    assert "Hugging Face cache" in message and "skipped: HF_HUB_OFFLINE is set" in message


# -- broken model directories --------------------------------------------------


class _Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def _remove(path: Path, *names) -> None:
    for name in names:
        if (path / name).exists():
            (path / name).unlink()


def _break_vocab(path: Path) -> None:
    """Tokenizer files that parse but know no words (no [UNK], no merges)."""
    _remove(path, "tokenizer.json")
    if (path / "vocab.txt").exists():
        (path / "vocab.txt").write_text("")
    else:
        (path / "vocab.json").write_text("{}")
        (path / "merges.txt").write_text("#version: 0.2\n")


def _foreign_tokenizer(path: Path) -> None:
    """The tokenizer of a model with a far bigger vocabulary."""
    donor = HF_TINY / ("bert_tiniest" if (path / "vocab.txt").exists() else "fake_gpt2")
    _remove(path, *TOKENIZER_FILES)
    for name in TOKENIZER_FILES:
        if (donor / name).exists():
            shutil.copy(donor / name, path / name)


def _remote_code(path: Path) -> None:
    config = json.loads((path / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (path / "config.json").write_text(json.dumps(config))


def _pickle_only(path: Path) -> None:
    _remove(path, "model.safetensors")
    (path / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))


DAMAGE = {
    "no_config": (lambda p: _remove(p, "config.json"), "E002"),
    "bad_config_json": (lambda p: (p / "config.json").write_text("{not json"), "E007"),
    "no_weights": (lambda p: _remove(p, "model.safetensors"), "E003"),
    "truncated_weights": (lambda p: (p / "model.safetensors").write_bytes(
        (p / "model.safetensors").read_bytes()[:200]), "E004"),
    "pickle_only": (_pickle_only, "E003"),
    "no_tokenizer": (lambda p: _remove(p, *TOKENIZER_FILES), "E005"),
    "garbage_tokenizer_json": (lambda p: (p / "tokenizer.json").write_text("{garbage"), "E005"),
    "vocab_without_words": (_break_vocab, "E005"),
    "foreign_tokenizer": (_foreign_tokenizer, "E010"),
    "remote_code": (_remote_code, "E008"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("component", COMPONENTS)
def test_broken_model_directory(component, damage, bert16, gpt_dir, tmp_path, monkeypatch):
    broken = tmp_path / "model"
    shutil.copytree(model_dir_for(component, bert16, gpt_dir), broken)
    break_it, code = DAMAGE[damage]
    break_it(broken)
    monkeypatch.chdir(tmp_path)  # where the pickle payload would leave its marker
    nlp = build(component, broken)
    with pytest.raises((OSError, ValueError), match=code) as err:
        initialize(nlp)
    assert str(broken) in str(err.value) or code == "E008"
    assert not (tmp_path / "PWNED_MARKER").exists()


@pytest.mark.parametrize("damage", ["truncated_weights", "pickle_only", "no_tokenizer", "foreign_tokenizer"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_spacy_load_of_a_damaged_pipeline(nlp_all, component, damage, tmp_path, monkeypatch):
    """A saved pipeline is standard Hugging Face directories: spacy.load reads
    them with the same checks, and never unpickles anything."""
    nlp_all.to_disk(tmp_path / "pipeline")
    break_it, code = DAMAGE[damage]
    break_it(tmp_path / "pipeline" / component / "hf_0")
    monkeypatch.chdir(tmp_path)
    with pytest.raises((OSError, ValueError), match=code):
        spacy.load(tmp_path / "pipeline")
    assert not (tmp_path / "PWNED_MARKER").exists()


@pytest.mark.parametrize("component", COMPONENTS)
def test_pickle_next_to_safetensors_is_never_read(nlp_all, component, tmp_path, monkeypatch):
    """A payload beside valid weights: the pipeline loads from safetensors and
    the pickle is never opened."""
    nlp_all.to_disk(tmp_path / "pipeline")
    for name in ("pytorch_model.bin", "training_args.bin", "optimizer.pt"):
        (tmp_path / "pipeline" / component / "hf_0" / name).write_bytes(pickle.dumps(_Payload()))
    monkeypatch.chdir(tmp_path)
    nlp = spacy.load(tmp_path / "pipeline")
    doc, saved = nlp("a good movie"), nlp_all("a good movie")
    # The saved weights, all of them: the same outputs as the pipeline that was saved.
    assert doc._.generation == saved._.generation
    assert doc.cats == pytest.approx(saved.cats, abs=1e-6)
    assert numpy.allclose(doc.tensor, saved.tensor, atol=1e-5)
    assert not (tmp_path / "PWNED_MARKER").exists()


# -- the wrong kind of model ---------------------------------------------------


@pytest.mark.parametrize("component,model", [
    ("bert_encoder", HF_TINY / "fake_gpt2"),
    ("bert_textcat", HF_TINY / "fake_gpt2"),
    ("gpt_generator", "bert16"),  # an encoder has no LM head
    ("gpt_generator", HF_TINY / "tiny_gpt2"),  # GPT2Model: no LM head either
])
def test_wrong_kind_of_model(component, model, bert16):
    nlp = build(component, bert16 if model == "bert16" else model)
    with pytest.raises(ValueError, match="E006"):
        initialize(nlp)


def test_plain_encoder_as_a_fine_tuned_classifier(bert16):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {
        "@architectures": "spacy-gptbert.HFSequenceClassifier.v1", "name": bert16, **WINDOWS}})
    with pytest.raises(ValueError, match="E006"):
        initialize(nlp)


# -- bad training and dev data -------------------------------------------------


def textcat_nlp(bert16, **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": bert16, **WINDOWS}, **cfg})
    return nlp


@pytest.mark.parametrize("value", [2.0, -0.5, math.nan, math.inf, "yes"])
def test_multilabel_values_outside_unit_interval(bert16, value):
    nlp = textcat_nlp(bert16, exclusive_classes=False)
    egs = [Example.from_dict(nlp.make_doc("fun"), {"cats": {"FUN": 1.0, "NEWS": 0.0}}),
           Example.from_dict(nlp.make_doc("odd"), {"cats": {"FUN": value, "NEWS": 0.0}})]
    with pytest.raises(ValueError, match="E108"):
        nlp.initialize(lambda: egs)


@pytest.mark.parametrize("component,code", [
    ("bert_encoder", "E109"), ("bert_textcat", "E109"), ("gpt_scratch", "E209"),
])
def test_empty_training_data(bert16, component, code):
    nlp = spacy.blank("en")
    if component == "gpt_scratch":
        nlp.add_pipe("gpt_generator", config={"model": TINY_GPT})
    else:
        nlp.add_pipe(component, config={"model": {"name": bert16, **WINDOWS}})
    with pytest.raises(ValueError, match=code):
        nlp.initialize(lambda: [])


def test_pretrained_generator_needs_no_training_data(gpt_dir):
    nlp = build("gpt_generator", gpt_dir)
    nlp.initialize(lambda: [])
    # The directory loaded by transformers alone, decoded greedily by hand (max_new_tokens 32).
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(str(gpt_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(gpt_dir))
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prompt_ids = [bos] + tokenizer("hello", add_special_tokens=False)["input_ids"]
    assert nlp("hello")._.generation == greedy_by_hand(lm, tokenizer, prompt_ids, 32)


def _write_corpus(path: Path, data) -> Path:
    nlp = spacy.blank("en")
    db = DocBin()
    for text, cats in data:
        doc = nlp.make_doc(text)
        doc.cats = cats
        db.add(doc)
    db.to_disk(path)
    return path


GOOD = [("a good movie", {"POS": 1.0, "NEG": 0.0}), ("a bad film", {"POS": 0.0, "NEG": 1.0})]
TRAIN_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "textcat_multilabel.cfg"


def spacy_train(tmp_path, bert16, train, dev, monkeypatch, steps: list, **overrides):
    """Run `spacy train` on a tiny model; `steps` gets one item per update."""
    from spacy.cli.train import train as train_cli

    real_update = BertTextCategorizer.update
    monkeypatch.setattr(BertTextCategorizer, "update",
                        lambda self, *a, **k: steps.append(1) or real_update(self, *a, **k))
    prefix = "components.bert_textcat.model"
    train_cli(TRAIN_CONFIG, tmp_path / "out", overrides={
        "paths.train": str(_write_corpus(tmp_path / "train.spacy", train)),
        "paths.dev": str(_write_corpus(tmp_path / "dev.spacy", dev)),
        f"{prefix}.name": bert16, f"{prefix}.window": 32, f"{prefix}.stride": 16,
        "training.max_steps": 2, "training.eval_frequency": 1,
        "training.optimizer.learn_rate.total_steps": 2, "training.optimizer.learn_rate.warmup_steps": 1,
        **overrides,
    })


@pytest.mark.parametrize("dev,code", [
    ([("odd", {"POS": 0.0, "NEG": 0.0, "OTHER": 1.0})], "E110"),  # a label training never saw
    ([("odd", {"POS": 3.0, "NEG": 0.0})], "E108"),  # a value outside [0, 1]
])
def test_spacy_train_checks_dev_data_before_the_first_step(tmp_path, bert16, monkeypatch, dev, code):
    """`spacy train` evaluates on the dev corpus only after eval_frequency
    steps; its problems are caught at initialize instead."""
    steps = []
    with pytest.raises(ValueError, match=code):
        spacy_train(tmp_path, bert16, GOOD, dev, monkeypatch, steps)
    assert steps == []


def test_spacy_train_with_good_data_runs(tmp_path, bert16, monkeypatch):
    """The same run with clean dev data trains (so the test above can fail)."""
    steps = []
    spacy_train(tmp_path, bert16, GOOD, GOOD, monkeypatch, steps)
    assert len(steps) >= 2 and (tmp_path / "out" / "model-last").exists()


def test_spacy_train_with_an_empty_training_corpus(tmp_path, bert16, monkeypatch):
    steps = []
    with pytest.raises(ValueError, match="E109"):
        spacy_train(tmp_path, bert16, [], GOOD, monkeypatch, steps)
    assert steps == []


# -- contradicting generation settings -----------------------------------------


@pytest.mark.parametrize("settings,code", [
    ({"num_return_sequences": 2}, "E201"),  # several greedy outputs would be identical
    ({"top_k": 5}, "E204"),  # sampling settings without sampling
    ({"top_p": 0.9}, "E204"),
    ({"temperature": 0.5}, "E204"),
    ({"do_sample": True, "temperature": 0.0}, "E204"),
    ({"do_sample": True, "top_p": 1.5}, "E204"),
    ({"do_sample": True, "top_k": -1}, "E204"),
    ({"repetition_penalty": 0.0}, "E204"),
    ({"num_return_sequences": 0}, "E204"),
    ({"max_new_tokens": -1}, "E204"),
    ({"seed": -3}, "E204"),
    ({"stop": ["", "x"]}, "E204"),
    ({"on_long_prompt": "ignore"}, "E204"),
    ({"prompt": "{text"}, "E204"),  # malformed template
    ({"prompt": "{label} {txt}"}, "E202"),  # unknown field
    ({"prompt": "no.such.prompt.v1", "mode": "prompt"}, None),  # a plain template: fine
    ({"mode": "chat"}, "E206"),
])
def test_contradicting_generation_settings_fail_when_built(settings, code):
    nlp = spacy.blank("en")
    if code is None:
        nlp.add_pipe("gpt_generator", config={"model": TINY_GPT, **settings})
        return
    with pytest.raises(ValueError, match=code):
        nlp.add_pipe("gpt_generator", config={"model": TINY_GPT, **settings})


def test_max_new_tokens_beyond_the_context_fails_at_initialize(gpt_dir):
    nlp = spacy.blank("en")
    nlp.add_pipe("gpt_generator", config={
        "model": {"@architectures": "spacy-gptbert.CausalLM.v1", "name": str(gpt_dir)}, "max_new_tokens": 64})
    with pytest.raises(ValueError, match="E204"):
        nlp.initialize()


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory) -> Path:
    """A random RoBERTa with a byte-level BPE tokenizer (fake_gpt2's files)."""
    import torch
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    path = tmp_path_factory.mktemp("tiny_roberta")
    tokenizer = RobertaTokenizerFast(vocab_file=str(HF_TINY / "fake_gpt2" / "vocab.json"),
                                     merges_file=str(HF_TINY / "fake_gpt2" / "merges.txt"))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=66, pad_token_id=1)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def test_roberta_family_encoder_takes_spacy_words(tiny_roberta):
    """Byte-level BPE tokenizers refuse pre-split words unless they add a
    prefix space; the loader turns it on, so a RoBERTa encoder works."""
    nlp = build("bert_encoder", tiny_roberta)
    initialize(nlp)
    doc = nlp("A RoBERTa encoder, with ünïcödé 😀 too.")
    assert doc.tensor.shape == (len(doc), 16)
