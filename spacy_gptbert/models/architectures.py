"""Registered architectures, all of them: the encoders and classifiers, and
the generator's causal LMs. Published names are never changed: a new
behaviour gets a new version (`.v2`)."""
from typing import Any, Dict, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, chain
from thinc.types import Floats1d, Floats2d

from .encoder import EncoderOutput, windowed_model
from .generator_model import causal_lm_model, load_decoder_into
from .gpt import Rows, check_gpt_sizes
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
    return windowed_model("encoder", **locals())  # the arguments, as given


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
    return windowed_model("seq_cls", **locals())  # the arguments, as given


@registry.architectures("spacy-gptbert.CausalLM.v1")
def build_causal_lm(
    name: str,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    trust_remote_code: bool = False,
) -> Model[Rows, Floats1d]:
    """A pretrained Hugging Face causal LM (AutoModelForCausalLM + tokenizer),
    by hub name or local directory. Weights load at initialize."""
    return causal_lm_model(
        "pretrained", name=name, mixed_precision=mixed_precision,
        grad_scaler_config=grad_scaler_config, trust_remote_code=trust_remote_code, gpt={},
    )


@registry.architectures("spacy-gptbert.GPT.v1")
def build_gpt(
    n_layer: int = 4,
    n_head: int = 4,
    n_embd: int = 256,
    n_positions: int = 128,
    vocab_size: int = 2048,
    dropout: float = 0.0,
    min_frequency: int = 2,
    seed: int = 0,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
) -> Model[Rows, Floats1d]:
    """A GPT-2-style model trained from scratch. At initialize, a byte-level
    BPE tokenizer of `vocab_size` entries is trained on the training texts and
    a fresh GPT2LMHeadModel of the given sizes is built."""
    check_gpt_sizes(n_layer, n_head, n_embd, n_positions, vocab_size)
    sizes = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=n_positions,
                 vocab_size=vocab_size, dropout=dropout, min_frequency=min_frequency, seed=seed)
    return causal_lm_model(
        "scratch", name="", mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config,
        trust_remote_code=False, gpt=sizes,
    )


@registry.architectures("spacy-gptbert.BertDecoder.v1")
def build_bert_decoder(
    name: str = DEFAULT_ENCODER,
    dropout: Optional[float] = None,
    seed: int = 0,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[Dict[str, Any]] = None,
    trust_remote_code: bool = False,
) -> Model[Rows, Floats1d]:
    """A pretrained BERT-family encoder (bert, roberta, xlm-roberta, camembert,
    electra, ernie), by hub name or local directory, warm-started as a causal
    decoder (Rothe, Narayan and Severyn, 2020): loaded at initialize with
    Hugging Face's causal-LM class for its type (e.g. BertLMHeadModel) and
    `is_decoder = true`, so each token attends only to the tokens before it.
    The output layer is tied to the word embeddings; an encoder checkpoint has
    no LM head, so the head's transform and bias start fresh (from `seed`).
    Generation starts on the tokenizer's bos token, else its [CLS], and ends on
    its eos token, else its [SEP].
    dropout: the hidden and attention dropout while training; null keeps the
    checkpoint's."""
    return causal_lm_model(
        "decoder", name=name, mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config,
        trust_remote_code=trust_remote_code, gpt={}, decoder={"dropout": dropout, "seed": seed},
        load=load_decoder_into,
    )
