"""What the components (bert_encoder, bert_textcat, gpt_generator) share: the
default settings of their models, the start of update(), the update of a
component that learns from its own loss, and the CPU inference settings."""
import copy
from typing import Any, Dict, Iterable, List, Optional, Tuple

from spacy.training import Example, validate_examples
from thinc.api import Optimizer, set_dropout_rate

from ..models.encoder import set_predict_precision
from ..models.inference_copy import use_inference_copy
from ..models.quantize import check_quantization_available

# What every transformer architecture takes, at the architectures' defaults,
# and the windowing of the BERT-family encoders (Encoder.v1, BertTextCat.v1).
TRANSFORMER_DEFAULTS: Dict[str, Any] = {
    "mixed_precision": False, "grad_scaler_config": {}, "trust_remote_code": False,
}
WINDOW_DEFAULTS: Dict[str, Any] = {"window": 256, "stride": 192, "max_batch_tokens": 1024, "freeze_embeddings": False}


def default_model(architecture: str, **settings: Any) -> Dict[str, Any]:
    """A factory's default [model] block: the architecture, its own settings,
    then the transformer settings at their defaults."""
    return {"@architectures": architecture, **settings, **copy.deepcopy(TRANSFORMER_DEFAULTS)}


def begin_update(component, examples: Iterable[Example],
                 losses: Optional[Dict[str, float]]) -> Tuple[List[Example], Dict[str, float]]:
    """The checked examples and the losses dict (new if None) with the
    component's entry, as every TrainablePipe.update starts."""
    examples = list(examples)
    validate_examples(examples, f"{type(component).__name__}.update")
    losses = {} if losses is None else losses
    losses.setdefault(component.name, 0.0)
    return examples, losses


class LossUpdate:
    """Mixin for a TrainablePipe that learns from its own loss: the model's
    output for update_input(examples) goes to get_loss (through loss_input),
    and the loss's gradient back through the model."""

    def update(
        self, examples: Iterable[Example], *, drop: float = 0.0,
        sgd: Optional[Optimizer] = None, losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        examples, losses = begin_update(self, examples, losses)
        batch = self.update_input(examples)
        if batch is None:
            return losses
        set_dropout_rate(self.model, drop)
        outputs, backprop = self.model.begin_update(batch)
        loss, d_outputs = self.get_loss(examples, self.loss_input(outputs, batch))
        backprop(d_outputs)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def update_input(self, examples: List[Example]) -> Any:
        """The model's input for the batch; None when there is nothing to learn from."""
        raise NotImplementedError

    def loss_input(self, outputs: Any, batch: Any) -> Any:
        """What get_loss receives as its scores: the model's output."""
        return outputs


class InferenceSettings:
    """Mixin for a component with a windowed BERT-family model: prediction in
    fp32 or mixed precision, on the CPU optionally with an int8 copy
    (quantize) or oneDNN's prepacked kernels (onednn_prepack)."""

    def set_inference(self, model, quantize: bool, onednn_prepack: bool, predict_precision: str) -> None:
        if quantize:
            check_quantization_available()
        set_predict_precision(model, predict_precision, quantize)
        # Inference settings: not in cfg, so never saved with the weights.
        self.quantize = quantize
        self.onednn_prepack = onednn_prepack

    def predict_model(self, docs: List) -> Any:
        """The model's prediction for the docs, with the inference settings."""
        with use_inference_copy(self.model, self.quantize, self.onednn_prepack):
            return self.model.predict(docs)
