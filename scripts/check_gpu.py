"""Fail early, with the fix, unless the given GPU id can be used by spaCy/thinc
(cupy) and torch. Used as the first step of the all_gpu workflow."""
import sys


def main(gpu_id: int) -> None:
    if gpu_id < 0:
        sys.exit("all_gpu needs a GPU id: run `python -m spacy project run all_gpu . --vars.gpu_id 0`")
    try:
        import cupy  # noqa: F401
    except ImportError:
        sys.exit("cupy is not installed: `pip install .[cuda12x]` (and a CUDA build of torch)")
    import torch

    if not torch.cuda.is_available():
        sys.exit("torch sees no CUDA device: install a CUDA build of torch (see README, GPU)")
    import spacy

    spacy.require_gpu(gpu_id)
    from thinc.api import get_torch_default_device

    print(f"GPU {gpu_id}: {torch.cuda.get_device_name(gpu_id)}; thinc/torch device {get_torch_default_device()}")


if __name__ == "__main__":
    main(int(sys.argv[1]))
