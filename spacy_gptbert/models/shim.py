"""thinc's PyTorchShim, with parameter averaging that works and an optimizer
step that stays in torch.

Averaging: thinc's optimizer keys a torch parameter's state (and its moving
average, with `use_averages = true`) by `(shim.id, parameter name)`, but
`PyTorchShim.use_params` looks for string keys `pytorch_{id}_{name}`. The
averages are kept and never used, so spaCy evaluates and saves the raw
weights. This shim reads the keys the optimizer actually writes, so
`nlp.use_params(optimizer.averages)` (what `spacy train` does for evaluation
and `model-best`) swaps in the averages.

Optimizer step: thinc's `PyTorchShim.finish_update` hands every parameter to
the optimizer one at a time as a numpy/cupy array, runs thinc's Adam on one
CPU thread and wraps the result back into a new torch tensor. For a 22M
parameter MiniLM that was ~38 ms of a ~200 ms SST-2 training step. With
thinc's Adam (the optimizer spaCy configs use) the same arithmetic runs here
as in-place multi-tensor torch ops on the parameters' own device (see
`torch_adam_step`); any other optimizer takes thinc's path unchanged.
"""
import contextlib
from typing import Dict, List, Optional, Tuple

import torch
from thinc.api import Optimizer, PyTorchShim, xp2torch

from .autocast import cpu_bf16, native_bf16  # noqa: F401  (re-exported: their home is autocast.py)

# Use torch's fused Adam kernel where this torch has one: a private API, so
# the multi-tensor ops in _adam_moments_and_step stay as the fallback (the
# tests run both against thinc's optimizer).
FUSED = True


class AveragingPyTorchShim(PyTorchShim):
    def __init__(self, *args, predict_mixed_precision: Optional[bool] = None, **kwargs) -> None:
        """predict_mixed_precision: autocast (fp16, on CUDA) in predict; None
        autocasts in predict as in training (thinc's behaviour)."""
        super().__init__(*args, **kwargs)
        self._predict_mixed_precision = (
            self._mixed_precision if predict_mixed_precision is None else predict_mixed_precision)

    def predict(self, inputs):
        """thinc's predict, with the autocast of prediction rather than of training."""
        self._model.eval()
        with torch.no_grad(), torch.autocast(device_type="cuda", enabled=self._predict_mixed_precision):
            outputs = self._model(*inputs.args, **inputs.kwargs)
        self._model.train()
        return outputs

    @contextlib.contextmanager
    def use_params(self, params):
        averaged = {
            name: _as_torch(params[(self.id, name)], self.device)
            for name, _ in self._model.named_parameters()
            if (self.id, name) in params
        }
        if not averaged:
            with super().use_params(params):
                yield
            return
        backup = {name: self._model.get_parameter(name).data.clone() for name in averaged}
        self._load(averaged)
        try:
            yield
        finally:
            self._load(backup)

    def _load(self, tensors) -> None:
        for name, value in tensors.items():
            self._model.get_parameter(name).data.copy_(value)

    def finish_update(self, optimizer: Optimizer) -> None:
        if not steps_in_torch(optimizer):
            super().finish_update(optimizer)
            return
        named = [(name, p) for name, p in self._model.named_parameters() if p.grad is not None]
        if not self._grad_scaler.found_inf:  # an overflowed fp16 step is skipped, as in thinc
            torch_adam_step(optimizer, [((self.id, name), p) for name, p in named if p.numel()])
        for _, p in named:
            p.grad.zero_()
        self._grad_scaler.update()


def _as_torch(value, device) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else xp2torch(value, device=device)


def steps_in_torch(optimizer) -> bool:
    """Whether torch_adam_step reproduces this optimizer: thinc's Adam/AdamW
    (not RAdam or SGD), and not a subclass that may change the arithmetic."""
    return type(optimizer) is Optimizer and not optimizer.use_radam and optimizer.b1 > 0 and optimizer.b2 > 0


@torch.no_grad()
def torch_adam_step(optimizer: Optimizer, params: List[Tuple[Tuple[int, str], torch.Tensor]]) -> None:
    """thinc's `Optimizer.__call__` for Adam, for many torch parameters at once.

    Same order of operations as thinc: L2 added to the gradient (unless it is
    decoupled weight decay), each gradient clipped to norm `grad_clip` on its
    own, the Adam update with thinc's bias correction (eps outside it), decoupled
    weight decay, then the parameter averages. State lives in the optimizer's
    own dicts under thinc's keys, as torch tensors.
    """
    if not params:
        return
    # Parameters that were first updated at different steps have different
    # bias corrections and average decays: one multi-tensor group per count.
    groups: Dict[int, list] = {}
    for key, param in params:
        optimizer.nr_update[key] += 1
        groups.setdefault(optimizer.nr_update[key], []).append((key, param))
    for nr_upd, group in groups.items():
        _adam_group(optimizer, nr_upd, group)


def _adam_group(optimizer: Optimizer, nr_upd: int, group) -> None:
    keys = [key for key, _ in group]
    weights = [p.data for _, p in group]
    grads = [p.grad for _, p in group]
    mom1 = [_state(optimizer.mom1, key, w) for key, w in zip(keys, weights)]
    mom2 = [_state(optimizer.mom2, key, w) for key, w in zip(keys, weights)]
    learn_rate, L2 = optimizer.learn_rate, optimizer.L2
    if L2 != 0 and not optimizer.L2_is_weight_decay:
        torch._foreach_add_(grads, weights, alpha=L2)
    if optimizer.grad_clip:
        norms = torch._foreach_norm(grads)
        clip = optimizer.grad_clip
        scales = [torch.where(n >= clip, clip / n, torch.ones_like(n)) for n in norms]
        torch._foreach_mul_(grads, scales)
    _adam_moments_and_step(weights, grads, mom1, mom2, optimizer.b1, optimizer.b2, optimizer.eps, learn_rate, nr_upd)
    if L2 != 0 and optimizer.L2_is_weight_decay:
        torch._foreach_mul_(weights, 1.0 - learn_rate * L2)
    if optimizer.averages is not None:
        decay = min((1.0 + nr_upd) / (10.0 + nr_upd), 0.9999)
        # Started at the weights, not at zeros (as thinc does): from zeros the
        # first evaluation of a fine-tuned model sees 0.82x its weights.
        averages = [_state(optimizer.averages, key, w, from_weight=True) for key, w in zip(keys, weights)]
        torch._foreach_lerp_(averages, weights, 1.0 - decay)


def _state(store: dict, key, weight: torch.Tensor, from_weight: bool = False) -> torch.Tensor:
    """The optimizer's state tensor for key, shaped and placed like weight:
    zeros (or a float32 copy of the weight) the first time, converted once if
    thinc's own path left an array (1-D for the moments) there."""
    value = store.get(key)
    if not isinstance(value, torch.Tensor):
        if value is None:
            value = weight.detach().float().clone() if from_weight else torch.zeros_like(weight, dtype=torch.float32)
        else:
            value = xp2torch(value, device=weight.device).reshape(weight.shape).float()
        store[key] = value
    return value


def _adam_moments_and_step(weights, grads, mom1, mom2, b1, b2, eps, learn_rate, nr_upd) -> None:
    """thinc's Adam: m, v updated, then w -= lr * sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)."""
    fused = getattr(torch, "_fused_adam_", None)
    if fused is not None and FUSED:
        # torch's fused kernel (one pass over memory) puts eps after the bias
        # correction of v: sqrt(v) / sqrt(1-b2^t) + eps'. With
        # eps' = eps / sqrt(1-b2^t) that is thinc's formula exactly.
        step = torch.tensor(float(nr_upd), device=weights[0].device)  # read, not advanced, by the kernel
        fused(weights, grads, mom1, mom2, [], [step] * len(weights), lr=learn_rate, beta1=b1, beta2=b2,
              weight_decay=0.0, eps=eps / (1.0 - b2**nr_upd) ** 0.5, amsgrad=False, maximize=False)
        return
    torch._foreach_mul_(mom1, b1)
    torch._foreach_add_(mom1, grads, alpha=1 - b1)
    torch._foreach_mul_(mom2, b2)
    torch._foreach_addcmul_(mom2, grads, grads, value=1 - b2)
    denominators = torch._foreach_sqrt(mom2)
    torch._foreach_add_(denominators, eps)
    step_size = learn_rate * (1.0 - b2**nr_upd) ** 0.5 / (1.0 - b1**nr_upd)
    torch._foreach_addcdiv_(weights, mom1, denominators, value=-step_size)
