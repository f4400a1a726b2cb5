"""Mixed precision on the CPU (raw torch; no spaCy or thinc imports)."""
import torch


def cpu_autocast(enabled: bool, device: torch.device):
    """bf16 autocast on CPU (fast on CPUs with AVX512-BF16/AMX). On GPU, thinc's
    PyTorchShim already applies fp16 autocast and gradient scaling, so this is
    a no-op there."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled and device.type == "cpu")
