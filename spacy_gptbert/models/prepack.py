"""fp32 CPU inference with oneDNN's prepacked matrix kernels
(`onednn_prepack = true`, the default).

torch's `nn.Linear` on the CPU calls the BLAS it was built with (MKL in the
official wheels) and hands it the weight in its plain layout on every call.
oneDNN can reorder a weight once into the blocked layout its kernels read
(`torch.ops.mkldnn._reorder_linear_weight`, what torch.compile's CPU freezing
pass uses) and multiply with it directly (`_linear_pointwise`). Same fp32
arithmetic, different summation order: outputs agree to float32 rounding.
Where it is faster, and by how much, depends on the CPU and the BLAS
(measurements: `benchmarks/README.md`).

The copy shares every tensor with the float module (embeddings, LayerNorms,
biases); only the reordered weights are new memory, about one extra copy of
the linear weights. inference_copy.py swaps it in for prediction and
rebuilds it when the weights change.
"""
import copy
import functools

import torch
from torch import nn


def _is_conv1d(layer: nn.Module) -> bool:
    """transformers' Conv1D (GPT-2's projections): a linear layer storing its
    weight as (in, out)."""
    return type(layer).__name__ == "Conv1D" and type(layer).__module__.startswith("transformers.")


class PrepackedLinear(nn.Module):
    """The forward of `layer` (an nn.Linear or transformers' Conv1D) with its
    weight reordered once for oneDNN. For prediction only: the packed weight
    has no autograd.

    A single-row input (one prompt decoding one token) runs torch's kernel on
    the shared float weight instead: there oneDNN's per-call overhead loses;
    from two rows on oneDNN was as fast or faster (benchmarks/README.md)."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        # (out, in), sharing the float layer's storage (a transposed view for Conv1D)
        weight = layer.weight.detach().t() if _is_conv1d(layer) else layer.weight.detach()
        self.out_features, self.in_features = weight.shape
        self.float_weight = weight  # a plain tensor attribute: not a parameter of the copy
        self.bias = layer.bias  # shared with the float layer
        with torch.no_grad():
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (..., in_features) -> (..., out_features)
        if x.numel() == x.shape[-1]:  # one row
            return nn.functional.linear(x, self.float_weight, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def sharing_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` in eval mode that shares every parameter and buffer
    with it: the starting point of each prediction-only copy, whose layers are
    then replaced (replacing a layer never changes the float tensors it reads).
    deepcopy's memo maps an object to its copy; mapping a tensor to itself
    shares it."""
    shared = list(module.parameters()) + list(module.buffers())
    with torch.no_grad():
        clone = copy.deepcopy(module, {id(t): t for t in shared})
    return clone.eval()


def prepacked_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` for fp32 CPU inference whose linear layers (nn.Linear,
    transformers' Conv1D) run prepacked oneDNN kernels; all parameters and
    buffers shared with `module`."""
    return prepack_linears(sharing_copy(module))


def prepack_linears(module: nn.Module) -> nn.Module:
    """Replace, in place, every nn.Linear and transformers Conv1D of `module`
    (a prediction-only copy) by a PrepackedLinear sharing its bias."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            # exact types: a subclass's forward may differ
            if type(child) is nn.Linear or _is_conv1d(child):
                setattr(parent, name, PrepackedLinear(child))
    return module


@functools.lru_cache(maxsize=None)
def prepack_available() -> bool:
    """Whether this torch build has oneDNN's prepacked linear kernels and they
    agree with nn.Linear (checked once, on a small layer)."""
    if not torch.backends.mkldnn.is_available():
        return False
    # fork_rng: the check's random layer must not move torch's global RNG (the
    # first predict call would otherwise change every later dropout mask).
    with torch.random.fork_rng(devices=[]):
        try:
            layer = nn.Linear(16, 8)
            x = torch.randn(2, 3, 16)
            with torch.inference_mode():
                return bool(torch.allclose(PrepackedLinear(layer)(x), layer(x), atol=1e-5))
        except (AttributeError, RuntimeError, NotImplementedError):
            return False
