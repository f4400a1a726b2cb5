"""mixed_precision on the CPU: bf16 autocast only where the CPU has bf16
instructions; elsewhere (emulated bf16 is slower than float32) the module runs
in float32 and W003 says so."""
import pytest
import spacy
import torch
from spacy.training import Example

from spacy_gptbert.models import autocast
from spacy_gptbert.models.encoder import is_windowed_model
from spacy_gptbert.models.generator_model import find_causal_lm

TEXTS = ["a good movie", "a bad film", "i loved it"]


def _textcat(name):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": name, "window": 16, "stride": 8, "mixed_precision": True}})
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i % 2 == 0), "NEG": float(i % 2 == 1)}})
           for i, t in enumerate(TEXTS)]
    nlp.initialize(lambda: egs)
    return nlp


def _module(nlp):
    node = next(n for n in nlp.get_pipe("bert_textcat").model.walk() if is_windowed_model(n))
    return node.shims[0]._model


def test_native_bf16_is_a_cached_bool():
    assert isinstance(autocast.native_bf16(), bool)
    assert autocast.native_bf16() is autocast.native_bf16()


@pytest.mark.parametrize("asked,on_gpu,native,expected", [
    (False, False, True, False),
    (False, False, False, False),
    (True, True, True, False),  # on GPU thinc's shim autocasts to fp16, not the module
    (True, True, False, False),
    (True, False, True, True),
])
def test_cpu_bf16_without_warning(asked, on_gpu, native, expected, monkeypatch, recwarn):
    monkeypatch.setattr(autocast, "native_bf16", lambda: native)
    assert autocast.cpu_bf16(asked, on_gpu) is expected
    assert not [w for w in recwarn if "W003" in str(w.message)]


def test_cpu_without_bf16_runs_float32_and_warns(monkeypatch):
    monkeypatch.setattr(autocast, "native_bf16", lambda: False)
    with pytest.warns(UserWarning, match=r"\[W003\]"):
        assert autocast.cpu_bf16(True, on_gpu=False) is False


@pytest.mark.parametrize("native", [True, False])
def test_textcat_module_follows_the_cpu(tiny_bert, native, monkeypatch):
    monkeypatch.setattr(autocast, "native_bf16", lambda: native)
    if native:
        nlp = _textcat(tiny_bert)
    else:
        with pytest.warns(UserWarning, match=r"\[W003\]"):
            nlp = _textcat(tiny_bert)
    module = _module(nlp)
    assert module.mixed_precision is native
    # the module's flag is what turns its autocast on: bf16 matmuls only with native bf16
    with torch.no_grad(), autocast.cpu_autocast(module.mixed_precision, torch.device("cpu")):
        x = torch.randn(4, 4) @ torch.randn(4, 4)
    assert x.dtype == (torch.bfloat16 if native else torch.float32)
    doc = nlp("a good movie")
    assert set(doc.cats) == {"POS", "NEG"}


@pytest.mark.parametrize("native", [True, False])
def test_gpt_from_scratch_follows_the_cpu(native, monkeypatch):
    monkeypatch.setattr(autocast, "native_bf16", lambda: native)
    nlp = spacy.blank("en")
    nlp.add_pipe("gpt_generator", config={"model": {
        "@architectures": "spacy-gptbert.GPT.v1", "n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64,
        "vocab_size": 300, "min_frequency": 1, "mixed_precision": True}})
    egs = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in TEXTS * 3]
    if native:
        nlp.initialize(lambda: egs)
    else:
        with pytest.warns(UserWarning, match=r"\[W003\]"):
            nlp.initialize(lambda: egs)
    assert find_causal_lm(nlp.get_pipe("gpt_generator").model).shims[0]._model.mixed_precision is native
