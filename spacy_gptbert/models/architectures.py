"""Registered architectures. Published names are never changed: a new
behaviour gets a new version (`.v2`)."""
from typing import Any, Dict, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, chain
from thinc.types import Floats2d

from .encoder import EncoderOutput, windowed_model
from .hf_loading import DEFAULT_ENCODER
from .listener import EncoderListener
from .pooling import check_pooling, select_output


@registry.architectures("spacy-gptbert.Encoder.v1")
def build_encoder(
    name: str = DEFAULT_ENCODER,
    window: int = 256,
    stride: int = 192,
    max_batch_tokens: int = 1024,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    trust_remote_code: bool = False,
    freeze_embeddings: bool = False,
) -> Model[List[Doc], EncoderOutput]:
    """A BERT-family encoder by Hugging Face name or local directory.

    window / stride: wordpieces per window and the step between windows;
        long docs are covered by overlapping windows, never truncated.
    max_batch_tokens: padded wordpieces per forward call; windows are sorted by
        length and grouped so padding stays small.
    freeze_embeddings: do not train the word-embedding matrix.
    """
    return windowed_model(
        "encoder", name, window, stride, max_batch_tokens, mixed_precision, grad_scaler_config,
        trust_remote_code, freeze_embeddings,
    )


@registry.architectures("spacy-gptbert.EncoderListener.v1")
def build_encoder_listener(
    upstream: str = "*", pooling: str = "tokens", width: Optional[int] = None
) -> Model[List[Doc], Any]:
    """Share an upstream bert_encoder. pooling: "tokens" gives one row per spaCy
    token (List[Floats2d], what spaCy's tagger/ner/textcat expect); "cls" or
    "mean" give one row per doc (Floats2d). width is set by the encoder at
    initialize when left empty."""
    return EncoderListener(upstream, width, pooling)


@registry.architectures("spacy-gptbert.TextCatHead.v1")
def build_textcat_head(
    encoder: Model[List[Doc], Floats2d], dropout: float = 0.1, nO: Optional[int] = None
) -> Model[List[Doc], Floats2d]:
    """Dropout and a linear layer on pooled doc vectors; outputs logits.
    `encoder` must give one row per doc, e.g. an EncoderListener with pooling
    "cls" or "mean"."""
    model = chain(encoder, Dropout(dropout), Linear(nO=nO))
    model.name = "bert-textcat-head"
    return model


@registry.architectures("spacy-gptbert.BertTextCat.v1")
def build_bert_textcat(
    name: str = DEFAULT_ENCODER,
    pooling: str = "mean",
    dropout: float = 0.1,
    window: int = 256,
    stride: int = 192,
    max_batch_tokens: int = 1024,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    trust_remote_code: bool = False,
    freeze_embeddings: bool = False,
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """A text classifier with its own encoder: encoder -> pooling -> dropout -> linear."""
    check_pooling(pooling)
    encoder = build_encoder(
        name, window, stride, max_batch_tokens, mixed_precision, grad_scaler_config, trust_remote_code,
        freeze_embeddings,
    )
    return build_textcat_head(chain(encoder, select_output(pooling)), dropout, nO)


@registry.architectures("spacy-gptbert.HFSequenceClassifier.v1")
def build_hf_sequence_classifier(
    name: str,
    window: int = 256,
    stride: int = 192,
    max_batch_tokens: int = 1024,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    trust_remote_code: bool = False,
    freeze_embeddings: bool = False,
) -> Model[List[Doc], Floats2d]:
    """An already fine-tuned Hugging Face sequence classifier (its own head and
    id2label): predicts without training, and can be fine-tuned further."""
    return windowed_model(
        "seq_cls", name, window, stride, max_batch_tokens, mixed_precision, grad_scaler_config,
        trust_remote_code, freeze_embeddings,
    )
