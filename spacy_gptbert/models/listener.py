"""EncoderListener: the proxy through which downstream components share one
bert_encoder, in the manner of spaCy's Tok2VecListener.

In training the encoder hands each listener its batch output and a backprop
callback (`receive`), which the listener uses for that batch once; in
prediction, or in training with a frozen encoder that annotates the docs
(`annotating_components`), the listener reads what the encoder wrote on the
Doc (`doc.tensor` for tokens, `doc._.bert_pooled` for cls/mean).
"""
from typing import Callable, Iterable, List, Optional

from spacy.tokens import Doc
from thinc.api import Model

from ..errors import Errors
from .encoder import EncoderOutput
from .pooling import OUTPUTS, check_pooling, select


class EncoderListener(Model):
    name = "encoder-listener"

    def __init__(self, upstream_name: str = "*", width: Optional[int] = None, pooling: str = "tokens") -> None:
        check_pooling(pooling, OUTPUTS)
        Model.__init__(self, name=self.name, forward=listener_forward, dims={"nO": width}, attrs={"pooling": pooling})
        self.upstream_name = upstream_name
        self._batch_id: Optional[int] = None
        self._outputs: Optional[EncoderOutput] = None
        self._backprop: Optional[Callable] = None
        # For error messages; BertEncoder.add_listener sets both.
        self.component_name = "the listening component"
        self.upstream_component = "bert_encoder"

    @classmethod
    def get_batch_id(cls, inputs: Iterable[Doc]) -> int:
        """Content hash of a batch, to catch a listener fed the wrong batch."""
        return sum(sum(token.orth for token in doc) + len(doc) for doc in inputs)

    def receive(self, batch_id: int, outputs: EncoderOutput, backprop: Callable) -> None:
        self._batch_id = batch_id
        self._outputs = outputs
        self._backprop = backprop

    def verify_inputs(self, inputs: List[Doc]) -> None:
        batch_id = self.get_batch_id(inputs)
        if batch_id != self._batch_id:
            raise ValueError(Errors.E105.format(id1=batch_id, id2=self._batch_id))

    def consume(self, inputs: List[Doc]):
        """The outputs and backprop callback received for this batch, handed
        out once: a second use would backpropagate through the encoder's graph
        a second time, so the listener forgets them."""
        self.verify_inputs(inputs)
        outputs, backprop = self._outputs, self._backprop
        self._batch_id = self._outputs = self._backprop = None
        return outputs, backprop


def listener_forward(model: EncoderListener, docs: List[Doc], is_train: bool):
    pooling = model.attrs["pooling"]
    if is_train and model._batch_id is not None:
        outputs, upstream_backprop = model.consume(docs)
        Y, to_encoder_grad = select(model.ops, outputs, pooling)
        return Y, lambda dY: upstream_backprop(to_encoder_grad(dY))
    annotated = Doc.has_extension("bert_pooled")
    if is_train and not (annotated and all(doc._.bert_pooled is not None for doc in docs)):
        # Training on zeros would teach nothing and say nothing: the encoder
        # neither ran on this batch nor annotated it (frozen, not annotating).
        raise ValueError(Errors.E104.format(name=model.component_name, upstream=model.upstream_component))
    # Prediction, or a frozen encoder that annotated the docs: read the Doc
    # annotations, with no gradient. In prediction, docs the encoder has not
    # seen (e.g. while initializing downstream layers) give zeros, as spaCy's
    # Tok2VecListener does.
    width = model.get_dim("nO")
    if pooling == "tokens":
        Y = [doc.tensor if doc.tensor.size else model.ops.alloc2f(len(doc), width) for doc in docs]
        return Y, lambda dY: []
    Y = model.ops.alloc2f(len(docs), width)
    for i, doc in enumerate(docs):
        pooled = doc._.bert_pooled if annotated else None
        if pooled is not None:
            Y[i] = model.ops.asarray(pooled[pooling])
    return Y, lambda dY: []
