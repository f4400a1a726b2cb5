"""Mixed precision, in one place (raw torch and the package's warnings; no
spaCy or thinc imports).

On a GPU, mixed precision is fp16 autocast with gradient scaling (thinc's
PyTorchShim applies both to the thinc nodes; training/mlm.py's loop does the
same). On the CPU it is bf16 autocast, and only where the CPU computes bf16
in hardware: emulated bf16 is slower than float32.
"""
import functools

import torch

from ..errors import Warnings, warn


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware (AVX512-BF16
    or AMX). Without them torch emulates bf16, and autocast makes a training
    step slower than float32 instead of faster."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private: absent in some torch builds
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_bf16(mixed_precision: bool, on_gpu: bool) -> bool:
    """Whether a module on the CPU should run under bf16 autocast: when mixed
    precision is asked for and the CPU has bf16 instructions; else it runs in
    float32, with W003 saying why (emulated bf16 is slower than float32). On
    GPU the shim autocasts to fp16 instead, so the module itself does not."""
    if not mixed_precision or on_gpu:
        return False
    if not native_bf16():
        warn(Warnings.W003)
        return False
    return True


def use_mixed_precision(device: torch.device, mixed_precision: bool) -> bool:
    """Whether a torch loop of our own (not a thinc node) autocasts on
    `device`: always when asked on GPU; on the CPU as `cpu_bf16` decides."""
    return mixed_precision if device.type == "cuda" else cpu_bf16(mixed_precision, on_gpu=False)


def autocast(device: torch.device, enabled: bool):
    """fp16 autocast on GPU, bf16 autocast on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16, enabled=enabled)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled)


def cpu_autocast(enabled: bool, device: torch.device):
    """bf16 autocast on CPU, inside a module that a thinc shim runs. Callers
    pass `enabled` only where `cpu_bf16` said so. On GPU, thinc's PyTorchShim
    already applies fp16 autocast and gradient scaling, so this is a no-op there."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled and device.type == "cpu")
