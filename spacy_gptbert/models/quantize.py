"""Dynamic int8 quantization for CPU inference (`quantize = true`).

Prediction runs an int8 copy of each windowed torch module: every
`nn.Linear` quantized with `torch.ao.quantization.quantize_dynamic` (qint8
weights, activations quantized on the fly), everything else (embeddings,
LayerNorm) shared with the float model, not copied. How the copy is cached,
swapped in and rebuilt: inference_copy.py.
"""
import copy
import warnings

import torch
from torch import nn

from ..errors import Errors


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
