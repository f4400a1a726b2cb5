"""thinc's PyTorchShim, with parameter averaging that works.

thinc's optimizer keys a torch parameter's state (and its moving average, with
`use_averages = true`) by `(shim.id, parameter name)`, but `PyTorchShim.use_params`
looks for string keys `pytorch_{id}_{name}`. The averages are kept and never
used, so spaCy evaluates and saves the raw weights. This shim reads the keys
the optimizer actually writes, so `nlp.use_params(optimizer.averages)` (what
`spacy train` does for evaluation and `model-best`) swaps in the averages.
"""
import contextlib

from thinc.api import PyTorchShim, xp2torch


class AveragingPyTorchShim(PyTorchShim):
    @contextlib.contextmanager
    def use_params(self, params):
        averaged = {
            name: xp2torch(params[(self.id, name)], device=self.device)
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
