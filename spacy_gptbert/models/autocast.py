"""Mixed precision on the CPU (raw torch; no spaCy or thinc imports)."""
import functools

import torch


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX512-BF16
    or AMX). Without them torch emulates bf16, and autocast makes a MiniLM
    training step about 2x slower than float32 instead of faster."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent in some torch builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_autocast(enabled: bool, device: torch.device):
    """bf16 autocast on CPU. Callers pass `enabled` only where `native_bf16()`
    holds (see models/shim.py `cpu_bf16`). On GPU, thinc's PyTorchShim already
    applies fp16 autocast and gradient scaling, so this is a no-op there."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled and device.type == "cpu")
