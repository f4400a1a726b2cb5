"""Dynamic int8 quantization for CPU inference (`quantize = true`).

Prediction runs an int8 copy of each windowed torch module: its `nn.Linear`
layers quantized with `torch.ao.quantization.quantize_dynamic` (qint8 weights,
activations quantized on the fly with one scale per tensor), everything else
(embeddings, LayerNorm) shared with the float model, not copied. How the copy
is cached, swapped in and rebuilt: inference_copy.py.

Linear layers whose inputs carry outliers stay float (`input_outlier_ratios`).
In BERT-family encoders these are feed-forward output projections of the
first layers: their inputs are GELU activations with a few huge channels, far
above their RMS. One int8 scale per tensor then leaves the typical value only
a step or two, which costs accuracy; keeping those layers float keeps it
(the measurements, accuracy and speed: benchmarks/int8_outliers.py,
`benchmarks/README.md`).
"""
import warnings
from typing import Dict

import torch
from torch import nn

from ..errors import Errors
from . import prepack
from .hf_loading import usable_positions


def _supported_engines():
    return list(torch.backends.quantized.supported_engines)


def check_quantization_available() -> None:
    engines = [e for e in _supported_engines() if e != "none"]
    if not engines:
        raise ValueError(Errors.E140.format(torch=torch.__version__))


# A linear layer stays float when the largest value entering it exceeds its
# RMS this many times: one int8 scale per tensor (~127 steps up to the largest
# value) would then leave the typical value under 2 steps.
OUTLIER_RATIO = 64.0
_CALIBRATION_SHAPE = (8, 64)  # random token ids: windows x wordpieces


def input_outlier_ratios(module: nn.Module) -> Dict[str, float]:
    """max |x| / RMS(x) of the input of each nn.Linear of `module`, on one batch
    of random token ids (fixed seed) through the Hugging Face model inside it.
    The huge channels are a property of the weights, not of the text: random
    ids and real sentences pick out the same layers (benchmarks/int8_outliers.py).
    {} when `module` holds no Hugging Face model with a vocabulary."""
    hf_model = next((m for m in module.modules() if hasattr(getattr(m, "config", None), "vocab_size")), None)
    if hf_model is None:
        return {}
    config = hf_model.config
    n_windows, length = _CALIBRATION_SHAPE
    length = min(length, usable_positions(hf_model))
    generator = torch.Generator().manual_seed(0)
    device = next(hf_model.parameters()).device
    ids = torch.randint(config.vocab_size, (n_windows, length), generator=generator).to(device)
    ratios: Dict[str, float] = {}

    def record(name):
        def hook(_layer, inputs, _output):
            x = inputs[0].float()
            ratios[name] = float(x.abs().max() / x.pow(2).mean().sqrt().clamp_min(1e-12))
        return hook

    linears = [(name, m) for name, m in module.named_modules() if type(m) is nn.Linear]
    hooks = [m.register_forward_hook(record(name)) for name, m in linears]
    try:
        with torch.inference_mode():
            hf_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        for hook in hooks:
            hook.remove()
    return ratios


def quantized_copy(module: nn.Module, prepack_float: bool = False) -> nn.Module:
    """An int8 copy of `module` for inference: nn.Linear layers quantized
    (qint8) except those whose inputs have outliers (`input_outlier_ratios`
    above OUTLIER_RATIO; without a Hugging Face model inside, the layers that
    narrow their input, i.e. the feed-forward output projections, stay float).
    All other parameters and buffers are shared with `module`. prepack_float:
    the float linear layers left run oneDNN's prepacked kernels (prepack.py)."""
    check_quantization_available()
    clone = prepack.sharing_copy(module)
    if hasattr(clone, "mixed_precision"):
        clone.mixed_precision = False  # int8 kernels take float32 inputs
    ratios = input_outlier_ratios(clone)
    linears = {name: m for name, m in clone.named_modules() if type(m) is nn.Linear}
    if ratios:
        to_int8 = {name for name in linears if ratios.get(name, 0.0) <= OUTLIER_RATIO}
    else:
        to_int8 = {name for name, m in linears.items() if m.in_features <= m.out_features}
    with torch.no_grad(), warnings.catch_warnings():
        # torch >= 2.10 announces that torch.ao's quantized tensors move to torchao;
        # they still work, and the announcement is not the user's to act on.
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
        clone = torch.ao.quantization.quantize_dynamic(clone, to_int8, dtype=torch.qint8, inplace=True)
    if prepack_float:
        prepack.prepack_linears(clone)
    return clone
