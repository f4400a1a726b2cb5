"""Dynamic int8 quantization for CPU inference (`quantize = true`).

Prediction runs an int8 copy of each windowed torch module: every
`nn.Linear` quantized with `torch.ao.quantization.quantize_dynamic` (qint8
weights, activations quantized on the fly), everything else (embeddings,
LayerNorm) shared with the float model, not copied. The copy is

- for prediction only: `use_quantized` swaps it into the shim for the
  duration of one predict call; training (`begin_update`) never sees it;
- never saved: the float module stays the shim's model, and to_disk /
  to_bytes read the float weights;
- rebuilt when the float weights change (a training step, `use_params` with
  averaged weights, from_disk): each call compares a cheap fingerprint of the
  float parameters (storage pointer and a strided sample sum per tensor).

On GPU it does nothing: the float (or autocast) module runs as usual.
"""
import contextlib
import copy
import warnings
import weakref
from typing import Iterator, Tuple

import torch
from thinc.api import Model
from torch import nn

from ..errors import Errors

_CACHE: "weakref.WeakKeyDictionary[nn.Module, Tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()
_SAMPLE_STEP = 997  # every 997th value of each parameter enters the fingerprint


def _supported_engines():
    return list(torch.backends.quantized.supported_engines)


def check_quantization_available() -> None:
    engines = [e for e in _supported_engines() if e != "none"]
    if not engines:
        raise ValueError(Errors.E140.format(torch=torch.__version__))


def quantized_copy(module: nn.Module) -> nn.Module:
    """An int8 copy of `module` for inference: nn.Linear layers quantized
    (qint8), all other parameters and buffers shared with `module`."""
    check_quantization_available()
    linear_tensors = {
        id(t) for m in module.modules() if isinstance(m, nn.Linear)
        for t in list(m.parameters(recurse=False)) + list(m.buffers(recurse=False))
    }
    # Share everything that is not a Linear weight/bias (deepcopy's memo maps
    # an object to its copy: mapping it to itself shares it).
    shared = list(module.parameters()) + list(module.buffers())
    memo = {id(t): t for t in shared if id(t) not in linear_tensors}
    with torch.no_grad():
        clone = copy.deepcopy(module, memo)
        if hasattr(clone, "mixed_precision"):
            clone.mixed_precision = False  # int8 kernels take float32 inputs
        clone.eval()
        with warnings.catch_warnings():
            # torch >= 2.10 announces that torch.ao's quantized tensors move to torchao;
            # they still work, and the announcement is not the user's to act on.
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*", category=UserWarning)
            return torch.ao.quantization.quantize_dynamic(clone, {nn.Linear}, dtype=torch.qint8, inplace=True)


def fingerprint(module: nn.Module) -> tuple:
    """Changes when any parameter's storage or (sampled) values change."""
    with torch.no_grad():
        params = list(module.parameters())
        if not params:
            return ()
        sums = torch.stack([p.detach().reshape(-1)[::_SAMPLE_STEP].float().sum() for p in params])
        return tuple(p.data_ptr() for p in params) + tuple(sums.tolist())


def get_quantized(module: nn.Module) -> nn.Module:
    """The cached int8 copy of `module`, rebuilt if its weights changed."""
    key = fingerprint(module)
    cached = _CACHE.get(module)
    if cached is None or cached[0] != key:
        _CACHE[module] = (key, quantized_copy(module))
    return _CACHE[module][1]


def clear_cache(module: nn.Module) -> None:
    _CACHE.pop(module, None)


@contextlib.contextmanager
def use_quantized(model: Model, enabled: bool = True) -> Iterator[None]:
    """Within the block, every windowed torch node of `model` on the CPU
    predicts with its int8 copy; the float modules are put back after."""
    from .encoder import is_windowed_model

    swapped = []
    try:
        if enabled:
            for node in model.walk():
                if not (is_windowed_model(node) and node.shims):
                    continue
                shim = node.shims[0]
                if torch.device(shim.device).type != "cpu":
                    continue  # int8 dynamic quantization is a CPU feature
                original = shim._model
                quantized = get_quantized(original)
                swapped.append((shim, original))
                shim._model = quantized
        yield
    finally:
        for shim, original in swapped:
            shim._model = original
