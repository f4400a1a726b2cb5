"""quantize = true: int8 dynamic quantization for CPU prediction only; the
float weights are what trains and what is saved."""
import copy
import warnings

import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose
from spacy.training import Example
from torch import nn

from spacy_gptbert.models import prepack
from spacy_gptbert.models import quantize as q
from spacy_gptbert.models.encoder import get_hf_parts, is_windowed_model
from spacy_gptbert.models.inference_copy import get_copy

TEXTS = ["a good movie with great actors", "a bad film with awful jokes", "i loved every minute of it",
         "boring , dull and terrible " * 12]


def _cos(a, b):
    a, b = numpy.asarray(a, dtype="float64").ravel(), numpy.asarray(b, dtype="float64").ravel()
    return float(a @ b / (numpy.linalg.norm(a) * numpy.linalg.norm(b)))


def _encoder_nlp(name, **factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": name, "window": 16, "stride": 8}, **factory})
    nlp.initialize()
    return nlp


def _textcat_nlp(name, **factory):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": name, "window": 16, "stride": 8}, **factory})
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i % 2 == 0), "NEG": float(i % 2 == 1)}})
           for i, t in enumerate(TEXTS)]
    optimizer = nlp.initialize(lambda: egs)
    return nlp, egs, optimizer


def _node(pipe):
    return next(n for n in pipe.model.walk() if is_windowed_model(n))


def _linear_types(module):
    types = {type(m) for m in module.modules() if "Linear" in type(m).__name__}
    return {t.__module__ + "." + t.__name__ for t in types}


def _float_and_int8_layers(module, int8_copy):
    float_layers = {n for n, m in int8_copy.named_modules() if type(m) is nn.Linear}
    int8_type = torch.ao.nn.quantized.dynamic.Linear
    int8_layers = {n for n, m in int8_copy.named_modules() if isinstance(m, int8_type)}
    assert {n for n, m in module.named_modules() if type(m) is nn.Linear} == float_layers | int8_layers
    return float_layers, int8_layers


def test_quantized_copy_shares_non_linear_weights(tiny_bert):
    nlp = _encoder_nlp(tiny_bert)
    module = _node(nlp.get_pipe("bert_encoder")).shims[0]._model
    int8_copy = q.quantized_copy(module)
    assert _linear_types(module) == {"torch.nn.modules.linear.Linear"}
    float_layers, int8_layers = _float_and_int8_layers(module, int8_copy)
    assert not float_layers and int8_layers  # a random tiny BERT has no outlier inputs
    emb, emb_copy = module.transformer.get_input_embeddings(), int8_copy.transformer.get_input_embeddings()
    assert emb_copy.weight is emb.weight  # shared, not copied


def test_layers_with_outlier_inputs_stay_float(tiny_bert, monkeypatch):
    nlp = _encoder_nlp(tiny_bert)
    module = _node(nlp.get_pipe("bert_encoder")).shims[0]._model
    with torch.no_grad():  # one feed-forward channel of layer 0 far above the rest, as in MiniLM
        module.transformer.encoder.layer[0].intermediate.dense.bias[3] = 200.0
    # With 64 channels, one always-on channel reaches max/RMS = sqrt(64) = 8 at
    # most (MiniLM's sparse outliers in 1536 channels reach 87); every layer of
    # the random tiny BERT is below 5. The real threshold on the real model:
    # test_minilm.py.
    monkeypatch.setattr(q, "OUTLIER_RATIO", 6.0)
    ratios = q.input_outlier_ratios(module)
    target = "transformer.encoder.layer.0.output.dense"
    assert ratios[target] > q.OUTLIER_RATIO
    assert all(r <= q.OUTLIER_RATIO for name, r in ratios.items() if name != target)
    int8_copy = q.quantized_copy(module)
    float_layers, _ = _float_and_int8_layers(module, int8_copy)
    assert float_layers == {target}
    assert int8_copy.get_submodule(target).weight is module.get_submodule(target).weight  # shared
    assert q.input_outlier_ratios(module) == ratios  # the calibration batch is fixed
    module.train()
    q.quantized_copy(module)
    assert module.training  # calibration ran on the copy, in eval mode; the float module is untouched


def test_encoder_outputs_close_to_float(tiny_bert):
    float_nlp = _encoder_nlp(tiny_bert)
    int8_nlp = _encoder_nlp(tiny_bert, quantize=True)
    for a, b in zip(float_nlp.pipe(TEXTS), int8_nlp.pipe(TEXTS)):
        assert b.tensor.shape == a.tensor.shape
        assert _cos(a.vector, b.vector) > 0.99
        assert _cos(a.tensor, b.tensor) > 0.98


def test_predict_swaps_back_and_saves_float_weights(tiny_bert, tmp_path):
    nlp = _encoder_nlp(tiny_bert, quantize=True)
    encoder = nlp.get_pipe("bert_encoder")
    module = _node(encoder).shims[0]._model
    before = {k: v.clone() for k, v in module.state_dict().items()}
    list(nlp.pipe(TEXTS))
    assert _node(encoder).shims[0]._model is module  # the float module is back
    assert _linear_types(module) == {"torch.nn.modules.linear.Linear"}
    nlp.to_disk(tmp_path / "p")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "p" / "bert_encoder" / "hf_0" / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in saved.values())
    hf_model, _ = get_hf_parts(_node(encoder))
    for name, tensor in hf_model.state_dict().items():
        if name in saved:
            assert torch.equal(saved[name], tensor)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    # The setting is not part of the saved weights: it comes from the config.
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("bert_encoder").quantize is True
    assert "quantize" not in loaded.get_pipe("bert_encoder").cfg
    float_loaded = spacy.load(tmp_path / "p", config={"components": {"bert_encoder": {"quantize": False}}})
    assert float_loaded.get_pipe("bert_encoder").quantize is False


def test_old_config_without_quantize_loads(tiny_bert, tmp_path):
    nlp = _encoder_nlp(tiny_bert)
    nlp.to_disk(tmp_path / "p")
    cfg = (tmp_path / "p" / "config.cfg").read_text()
    assert "quantize = false" in cfg
    (tmp_path / "p" / "config.cfg").write_text(cfg.replace("quantize = false\n", ""))
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("bert_encoder").quantize is False
    assert_allclose(loaded(TEXTS[0]).vector, nlp(TEXTS[0]).vector, atol=1e-6)


def test_training_updates_float_weights_and_refreshes_the_copy(tiny_bert):
    nlp, egs, optimizer = _textcat_nlp(tiny_bert, quantize=True)
    textcat = nlp.get_pipe("bert_textcat")
    module = _node(textcat).shims[0]._model
    first = textcat.predict([nlp.make_doc(t) for t in TEXTS])
    copy_before = get_copy(module, "int8", q.quantized_copy)
    weight = module.transformer.encoder.layer[0].attention.self.query.weight.detach().clone()
    for _ in range(3):
        nlp.update(egs, sgd=optimizer, drop=0.0)
    assert type(module.transformer.encoder.layer[0].attention.self.query) is nn.Linear
    assert not torch.equal(weight, module.transformer.encoder.layer[0].attention.self.query.weight)
    second = textcat.predict([nlp.make_doc(t) for t in TEXTS])
    assert get_copy(module, "int8", q.quantized_copy) is not copy_before  # rebuilt from the new float weights
    assert not numpy.allclose(first, second)
    textcat.quantize = False
    float_scores = textcat.predict([nlp.make_doc(t) for t in TEXTS])
    assert_allclose(second, float_scores, atol=0.05)


def test_use_params_refreshes_the_copy(tiny_bert):
    nlp, egs, optimizer = _textcat_nlp(tiny_bert, quantize=True)
    textcat = nlp.get_pipe("bert_textcat")
    docs = [nlp.make_doc(t) for t in TEXTS]
    base = textcat.predict(docs)
    module = _node(textcat).shims[0]._model
    shifted = {}
    for node in textcat.model.walk():
        for shim in node.shims:
            for name, p in shim._model.named_parameters():
                shifted[(shim.id, name)] = (p.detach().numpy() * 0.5).copy()
    with textcat.model.use_params(shifted):
        inside = textcat.predict(docs)
    assert not numpy.allclose(base, inside, atol=1e-4)
    assert_allclose(textcat.predict(docs), base, atol=1e-6)
    assert _node(textcat).shims[0]._model is module


def test_textcat_quantized_scores_close(tiny_bert):
    nlp, egs, optimizer = _textcat_nlp(tiny_bert)
    for _ in range(5):
        nlp.update(egs, sgd=optimizer, drop=0.0)
    textcat = nlp.get_pipe("bert_textcat")
    docs = [nlp.make_doc(t) for t in TEXTS]
    float_scores = textcat.predict(docs)
    textcat.quantize = True
    assert_allclose(textcat.predict(docs), float_scores, atol=0.05)


def test_no_engine_is_an_error(tiny_bert, monkeypatch):
    monkeypatch.setattr(q, "_supported_engines", lambda: ["none"])
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="E140"):
        nlp.add_pipe("bert_encoder", config={"model": {"name": tiny_bert}, "quantize": True})


def test_textcat_own_encoder_skips_token_pooling(tiny_bert):
    nlp, egs, optimizer = _textcat_nlp(tiny_bert)
    assert _node(nlp.get_pipe("bert_textcat")).attrs["return_tokens"] is False
    losses = [nlp.update(egs, sgd=optimizer, drop=0.0)["bert_textcat"] for _ in range(15)]
    assert losses[-1] < losses[0]
    enc = _encoder_nlp(tiny_bert)
    assert _node(enc.get_pipe("bert_encoder")).attrs.get("return_tokens", True) is True


def test_without_a_hf_model_narrowing_layers_stay_float():
    """Without a Hugging Face model to calibrate, the layers that narrow their
    input stay float. Why it matters: a feed-forward block whose hidden
    activations have one channel ~100x the rest (as MiniLM's do) loses far
    more to int8 when its output projection is quantized too."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16)).eval()
    with torch.no_grad():
        block[0].bias[7] = 100.0  # hidden channel 7 sits ~100x above the rest
    x = torch.randn(256, 16)
    with torch.inference_mode():
        exact = block(x)
        mixed_copy = q.quantized_copy(block)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's move to torchao
            all_int8 = torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(block), {nn.Linear}, dtype=torch.qint8)
        mixed_error = (mixed_copy(x) - exact).abs().mean()
        all_int8_error = (all_int8(x) - exact).abs().mean()
    assert q.input_outlier_ratios(block) == {}
    # only the narrowing layer stays float
    assert type(mixed_copy[0]) is not nn.Linear and type(mixed_copy[2]) is nn.Linear
    assert mixed_error * 5 < all_int8_error  # measured: 0.0031 vs 0.0876


def test_float_layers_prepacked_on_request(tiny_bert, monkeypatch):
    if not prepack.prepack_available():
        pytest.skip("this torch build lacks oneDNN's prepacked kernels")
    nlp = _encoder_nlp(tiny_bert)
    module = _node(nlp.get_pipe("bert_encoder")).shims[0]._model
    with torch.no_grad():
        module.transformer.encoder.layer[0].intermediate.dense.bias[3] = 200.0
    monkeypatch.setattr(q, "OUTLIER_RATIO", 6.0)  # as above: layer 0's output.dense stays float
    int8_copy = q.quantized_copy(module, prepack_float=True)
    assert not any(type(m) is nn.Linear for m in int8_copy.modules())
    float_layer = int8_copy.get_submodule("transformer.encoder.layer.0.output.dense")
    assert type(float_layer) is prepack.PrepackedLinear
