"""onednn_prepack = true (the default): fp32 CPU prediction through a copy of
the transformer whose linear layers run oneDNN's prepacked kernels. Same
arithmetic as the float module up to summation order; training and saving
never see the copy."""
import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose
from spacy.training import Example
from thinc.api import Adam
from torch import nn

from spacy_gptbert.models import autocast, inference_copy, prepack
from spacy_gptbert.models.encoder import is_windowed_model

pytestmark = pytest.mark.skipif(not prepack.prepack_available(), reason="torch build without oneDNN linear kernels")

TEXTS = ["a good movie with great actors", "a bad film with awful jokes", "i loved every minute of it",
         "boring , dull and terrible " * 12, ""]


def _nlp(name, factory="bert_encoder", model=None, **settings):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config={"model": {"name": name, "window": 16, "stride": 8, **(model or {})}, **settings})
    if factory == "bert_textcat":
        egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i % 2 == 0), "NEG": float(i % 2 == 1)}})
               for i, t in enumerate(TEXTS)]
        return nlp, egs, nlp.initialize(lambda: egs)
    nlp.initialize()
    return nlp


def _module(pipe):
    return next(n for n in pipe.model.walk() if is_windowed_model(n)).shims[0]._model


def _cached_kinds(module):
    return set(inference_copy._CACHE.get(module, {}))


def test_prepacked_linear_matches_linear():
    torch.manual_seed(0)
    layer = nn.Linear(24, 40)
    x = torch.randn(3, 7, 24)
    with torch.inference_mode():
        packed = prepack.PrepackedLinear(layer)
        assert packed.bias is layer.bias
        assert_allclose(packed(x).numpy(), layer(x).numpy(), atol=1e-5)
        assert packed(x[:0]).shape == (0, 7, 40)


def test_availability_check_leaves_torch_rng_alone():
    prepack.prepack_available.cache_clear()
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert prepack.prepack_available()
    assert torch.equal(torch.rand(4), expected)


def test_prepacked_copy_shares_everything_but_packed_weights(tiny_bert):
    nlp = _nlp(tiny_bert)
    module = _module(nlp.get_pipe("bert_encoder"))
    clone = prepack.prepacked_copy(module)
    assert not any(type(m) is nn.Linear for m in clone.modules())
    n_linear = sum(type(m) is nn.Linear for m in module.modules())
    assert n_linear > 0 and sum(type(m) is prepack.PrepackedLinear for m in clone.modules()) == n_linear
    original = {id(t) for t in list(module.parameters()) + list(module.buffers())}
    assert {id(t) for t in list(clone.parameters()) + list(clone.buffers())} <= original
    assert clone.transformer.get_input_embeddings().weight is module.transformer.get_input_embeddings().weight


def test_default_encoder_predicts_with_the_copy_and_agrees_with_torch_kernels(tiny_bert):
    packed_nlp = _nlp(tiny_bert)
    plain_nlp = _nlp(tiny_bert, onednn_prepack=False)
    assert packed_nlp.get_pipe("bert_encoder").onednn_prepack is True
    packed_docs = list(packed_nlp.pipe(TEXTS))
    plain_docs = [plain_nlp(t) for t in TEXTS]
    assert _cached_kinds(_module(packed_nlp.get_pipe("bert_encoder"))) == {"onednn"}
    assert _cached_kinds(_module(plain_nlp.get_pipe("bert_encoder"))) == set()
    for a, b in zip(packed_docs, plain_docs):
        assert a.tensor.shape == b.tensor.shape
        assert_allclose(a.tensor, b.tensor, atol=1e-5)
        assert_allclose(a._.bert_pooled["cls"], b._.bert_pooled["cls"], atol=1e-5)
    # pipe and __call__ take the same path
    for doc, text in zip(packed_docs, TEXTS):
        assert_allclose(packed_nlp(text).tensor, doc.tensor, atol=1e-6)


@pytest.mark.parametrize("settings,model,expected", [
    ({"quantize": True}, {}, {"int8+onednn"}),  # int8 wins over the fp32 copy; its float layers prepacked
    ({"quantize": True, "onednn_prepack": False}, {}, {"int8"}),
    ({}, {"mixed_precision": True}, {"onednn"}),  # trained in bf16, predicts in fp32 by default
    ({"predict_precision": "mixed"}, {"mixed_precision": True}, set()),  # bf16 autocast runs torch's bf16 kernels
])
def test_copy_choice(tiny_bert, settings, model, expected, monkeypatch):
    monkeypatch.setattr(autocast, "native_bf16", lambda: True)  # bf16 autocast even on CPUs without bf16 instructions
    nlp = _nlp(tiny_bert, model=model, **settings)
    list(nlp.pipe(TEXTS))
    assert _cached_kinds(_module(nlp.get_pipe("bert_encoder"))) == expected


def test_without_kernels_the_float_module_predicts(tiny_bert, monkeypatch):
    nlp = _nlp(tiny_bert)
    expected = _nlp(tiny_bert, onednn_prepack=False)(TEXTS[0]).tensor
    monkeypatch.setattr(prepack, "prepack_available", lambda: False)
    assert_allclose(nlp(TEXTS[0]).tensor, expected, atol=0)
    assert _cached_kinds(_module(nlp.get_pipe("bert_encoder"))) == set()


def test_training_and_averages_refresh_the_copy(tiny_bert):
    nlp, egs, _ = _nlp(tiny_bert, factory="bert_textcat")
    optimizer = Adam(0.001, use_averages=True)  # the defaults keep no averages
    textcat = nlp.get_pipe("bert_textcat")
    module = _module(textcat)
    docs = [nlp.make_doc(t) for t in TEXTS]
    first = textcat.predict(docs)
    copy_before = inference_copy._CACHE[module]["onednn"][1]
    for _ in range(3):
        nlp.update(egs, sgd=optimizer, drop=0.0)
    assert all(type(m) is not prepack.PrepackedLinear for m in module.modules())  # training ran the float module
    second = textcat.predict(docs)
    assert inference_copy._CACHE[module]["onednn"][1] is not copy_before
    assert not numpy.allclose(first, second)
    textcat.onednn_prepack = False
    assert_allclose(textcat.predict(docs), second, atol=1e-5)
    textcat.onednn_prepack = True
    with nlp.use_params(optimizer.averages):
        averaged = textcat.predict(docs)
    assert not numpy.allclose(averaged, second, atol=1e-6)
    assert_allclose(textcat.predict(docs), second, atol=1e-6)
    assert _module(textcat) is module


def test_setting_comes_from_the_config_not_the_weights(tiny_bert, tmp_path):
    nlp, _, _ = _nlp(tiny_bert, factory="bert_textcat")
    scores = [d.cats for d in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "p")
    cfg = (tmp_path / "p" / "config.cfg").read_text()
    assert "onednn_prepack = true" in cfg
    assert "onednn_prepack" not in nlp.get_pipe("bert_textcat").cfg
    off = spacy.load(tmp_path / "p", config={"components": {"bert_textcat": {"onednn_prepack": False}}})
    assert off.get_pipe("bert_textcat").onednn_prepack is False
    # A pipeline saved before the setting existed loads with the default.
    (tmp_path / "p" / "config.cfg").write_text(cfg.replace("onednn_prepack = true\n", ""))
    old = spacy.load(tmp_path / "p")
    assert old.get_pipe("bert_textcat").onednn_prepack is True
    for a, b, c in zip(scores, off.pipe(TEXTS), old.pipe(TEXTS)):
        for label in a:
            assert a[label] == pytest.approx(b.cats[label], abs=1e-5)
            assert a[label] == c.cats[label]


def test_conv1d_prepacked_like_gpt2():
    """transformers' Conv1D (GPT-2) stores its weight as (in, out); the packed
    layer computes the same and shares the float weight, and a single row runs
    torch's kernel on that shared weight."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(48, 16)  # nf=48 outputs, nx=16 inputs
    with torch.no_grad():
        conv.bias.normal_()
    packed = prepack.PrepackedLinear(conv)
    assert (packed.out_features, packed.in_features) == (48, 16)
    assert packed.float_weight.data_ptr() == conv.weight.data_ptr() and packed.bias is conv.bias
    with torch.inference_mode():
        for shape in [(2, 5, 16), (1, 1, 16), (1, 16), (7, 16)]:
            x = torch.randn(*shape)
            assert_allclose(packed(x).numpy(), conv(x).numpy(), atol=1e-5)
    assert "packed_weight" not in dict(packed.named_parameters())
    assert set(dict(packed.named_parameters())) == {"bias"}  # nothing new to train or save
