"""fp32 CPU inference with oneDNN's prepacked matrix kernels
(`onednn_prepack = true`, the default).

torch's `nn.Linear` on the CPU calls the BLAS it was built with (MKL in the
official wheels) and hands it the weight in its plain layout on every call.
oneDNN can reorder a weight once into the blocked layout its kernels read
(`torch.ops.mkldnn._reorder_linear_weight`, what torch.compile's CPU freezing
pass uses) and multiply with it directly (`_linear_pointwise`). Same fp32
arithmetic, different summation order: outputs agree to ~1e-6. On the 2-core
AMD EPYC these projects run on, MiniLM's linear layers ran 1.5-4x faster that
way and the whole fp32 encoder 1.7-1.9x (`benchmarks/README.md`); the gain
elsewhere depends on the CPU and the BLAS.

The copy shares every tensor with the float module (embeddings, LayerNorms,
biases); only the reordered weights are new memory, about one extra copy of
the linear weights (40.5 MiB for MiniLM-L6; building the first copy raised
RSS by 82 MiB, a second one by 41 MiB). inference_copy.py swaps it in for
prediction and rebuilds it when the weights change.
"""
import copy
import functools

import torch
from torch import nn


class PrepackedLinear(nn.Module):
    """`linear`'s forward with its weight reordered once for oneDNN. For
    prediction only: the packed weight has no autograd."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = linear.bias  # shared with the float layer
        with torch.no_grad():
            self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x (..., in_features) -> (..., out_features)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")


def prepacked_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` for fp32 CPU inference whose nn.Linear layers run
    prepacked oneDNN kernels; all parameters and buffers shared with `module`."""
    shared = list(module.parameters()) + list(module.buffers())
    with torch.no_grad():
        clone = copy.deepcopy(module, {id(t): t for t in shared})
    clone.eval()
    return prepack_linears(clone)


def prepack_linears(module: nn.Module) -> nn.Module:
    """Replace, in place, every nn.Linear of `module` (a prediction-only copy)
    by a PrepackedLinear sharing its bias."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:  # not subclasses, whose forward may differ
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
