"""Prediction-only copies of the windowed torch modules, swapped into the shim
for one predict call.

Two kinds exist: an int8 copy (`quantize = true`, quantize.py; the linear
layers it leaves float prepacked too when `onednn_prepack`) and an fp32 copy
whose linear layers use oneDNN's prepacked kernels (`onednn_prepack = true`,
prepack.py). Both share every tensor they do not transform with the float
module. A copy is

- for prediction only: training (`begin_update`) never sees it;
- never saved: the float module stays the shim's model, and to_disk /
  to_bytes read the float weights;
- rebuilt when the float weights change (a training step, `use_params` with
  averaged weights, from_disk): each call compares a cheap fingerprint of the
  float parameters (storage pointer and a strided sample sum per tensor).

Only on the CPU: on GPU the float (or autocast) module runs as usual.
"""
import contextlib
import functools
import weakref
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from thinc.api import Model
from torch import nn

from . import prepack, quantize
from .hf_node import WINDOWED_KINDS, hf_nodes

_CACHE: "weakref.WeakKeyDictionary[nn.Module, Dict[str, Tuple[tuple, nn.Module]]]" = weakref.WeakKeyDictionary()
# Per module: (storage pointers, strided views into its parameters, random weights).
_SAMPLES: "weakref.WeakKeyDictionary[nn.Module, Tuple[tuple, List[torch.Tensor], torch.Tensor]]" = (
    weakref.WeakKeyDictionary())
_SAMPLE_STEP = 997  # every 997th value of each parameter enters the fingerprint


def fingerprint(module: nn.Module) -> tuple:
    """Changes when any parameter's storage or (sampled) values change: the
    storage pointers plus a randomly weighted sum of every 997th value of each
    parameter (weighted, so swapping two tensors' values changes it too). It
    runs on every predict call, so the strided views are made once per
    storage, and the sum is one matrix-vector product (~0.25 ms for MiniLM)."""
    params = list(module.parameters())
    if not params:
        return ()
    pointers = tuple(p.data_ptr() for p in params)
    cached = _SAMPLES.get(module)
    if cached is None or cached[0] != pointers:
        views = [p.detach().reshape(-1)[::_SAMPLE_STEP] for p in params]
        weights = torch.rand(sum(v.numel() for v in views), generator=torch.Generator().manual_seed(0),
                             dtype=torch.float64).to(params[0].device)
        cached = (pointers, views, weights)
        # reshape copies a non-contiguous tensor, and a copy never sees later changes.
        if all(p.is_contiguous() for p in params):
            _SAMPLES[module] = cached
    _, views, weights = cached
    with torch.no_grad():
        return pointers + (float(torch.cat(views).double() @ weights),)


def get_copy(module: nn.Module, kind: str, build: Callable[[nn.Module], nn.Module]) -> nn.Module:
    """The cached `kind` copy of `module`, rebuilt if its weights changed."""
    key = fingerprint(module)
    copies = _CACHE.setdefault(module, {})
    cached = copies.get(kind)
    if cached is None or cached[0] != key:
        copies.pop(kind, None)  # free the stale copy before building the new one
        copies[kind] = (key, build(module))
    return copies[kind][1]


def choose_copy(module: nn.Module, use_int8: bool, use_prepack: bool) -> Optional[Tuple[str, Callable]]:
    """Which copy predicts for `module` on the CPU: int8 when asked (its float
    layers prepacked if `use_prepack` and oneDNN has the kernels), else the
    prepacked fp32 copy when asked, oneDNN has the kernels and the module runs
    in fp32 (with bf16 autocast torch's own bf16 kernels run), else none."""
    if use_int8:
        if use_prepack and prepack.prepack_available():
            # the layers int8 leaves float (outlier inputs, see quantize.py) run prepacked
            return "int8+onednn", functools.partial(quantize.quantized_copy, prepack_float=True)
        return "int8", quantize.quantized_copy
    predicts_mixed = getattr(module, "predict_mixed_precision", getattr(module, "mixed_precision", False))
    if use_prepack and not predicts_mixed and prepack.prepack_available():
        return "onednn", prepack.prepacked_copy
    return None


def predicting_module(module: nn.Module, device, use_int8: bool = False, use_prepack: bool = False) -> nn.Module:
    """The module that predicts for `module` on `device`: its cached int8 or
    prepacked copy on the CPU when `choose_copy` picks one, else `module`."""
    if torch.device(device).type != "cpu":
        return module
    choice = choose_copy(module, use_int8, use_prepack)
    return module if choice is None else get_copy(module, *choice)


@contextlib.contextmanager
def use_inference_copy(model: Model, use_int8: bool = False, use_prepack: bool = False) -> Iterator[None]:
    """Within the block, every windowed torch node of `model` on the CPU
    predicts with its int8 or prepacked copy; the float modules are put back
    after."""
    swapped = []
    try:
        for node in hf_nodes(model, *WINDOWED_KINDS):
            if not node.shims:
                continue
            shim = node.shims[0]
            original = shim._model
            predicting = predicting_module(original, shim.device, use_int8, use_prepack)
            if predicting is not original:
                swapped.append((shim, original))
                shim._model = predicting
        yield
    finally:
        for shim, original in swapped:
            shim._model = original
