"""Pick what a downstream layer needs out of an EncoderOutput, and route its
gradient back to the right field."""
from typing import Callable, Tuple

from thinc.api import Model, Ragged

from ..errors import Errors
from .encoder import EncoderOutput

POOLINGS = ("cls", "mean")
OUTPUTS = ("tokens",) + POOLINGS


def check_pooling(pooling: str, options=POOLINGS) -> str:
    if pooling not in options:
        raise ValueError(Errors.E103.format(pooling=pooling, options=", ".join(options)))
    return pooling


def select(ops, X: EncoderOutput, output: str) -> Tuple[object, Callable]:
    """'tokens' -> List[Floats2d] (one row per spaCy token); 'cls'/'mean' -> Floats2d.
    The callback turns the gradient of that output into a (sparse) EncoderOutput."""
    if output == "tokens":

        def backprop_tokens(dY) -> EncoderOutput:
            data = ops.xp.concatenate(dY, axis=0) if dY else X.tokens.dataXd * 0
            return EncoderOutput(Ragged(data, X.tokens.lengths), None, None)

        return X.doc_tokens(), backprop_tokens

    def backprop_pooled(dY) -> EncoderOutput:
        return EncoderOutput(None, dY if output == "cls" else None, dY if output == "mean" else None)

    return getattr(X, output), backprop_pooled


def select_output(output: str) -> Model[EncoderOutput, object]:
    """A layer that applies `select` inside a model (own-encoder architectures)."""
    check_pooling(output, OUTPUTS)
    return Model(f"select_{output}", select_forward, attrs={"output": output})


def select_forward(model: Model, X: EncoderOutput, is_train: bool):
    return select(model.ops, X, model.attrs["output"])
