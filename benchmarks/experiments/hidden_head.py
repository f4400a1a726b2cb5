"""Experiment, not shipped: bert_textcat with a hidden layer in its head
(dropout, GELU layer, dropout, linear, like BERT's pooler) instead of
dropout + linear. README, Results: seeds 0-3 on SST-2 gave a mean of 89.65%,
within seed noise of the committed config, so it stays out of the package.

    python -m spacy train configs/textcat_sst2.cfg --code benchmarks/experiments/hidden_head.py \
        --components.bert_textcat.model.@architectures experiment.HiddenHeadTextCat.v1 \
        --paths.train corpus/sst2/train.spacy --paths.dev corpus/sst2/dev.spacy --system.seed N
"""
from typing import Any, Dict, Optional

from spacy.util import registry
from thinc.api import Gelu, chain

from spacy_gptbert.models.architectures import build_bert_textcat
from spacy_gptbert.models.hf_loading import DEFAULT_ENCODER

HIDDEN = 384  # all-MiniLM-L6-v2's width, as BERT's pooler keeps the hidden size


@registry.architectures("experiment.HiddenHeadTextCat.v1")
def build_hidden_head_textcat(
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
):
    """spacy-gptbert.BertTextCat.v1 (encoder, pooling, dropout, linear; the
    registry needs its arguments spelled out) with a GELU layer before the linear one."""
    shipped = build_bert_textcat(
        name, pooling, dropout, window, stride, max_batch_tokens, mixed_precision, grad_scaler_config,
        trust_remote_code, freeze_embeddings, nO,
    )
    *body, linear = shipped.layers
    model = chain(*body, Gelu(nO=HIDDEN, dropout=dropout), linear)
    model.name = shipped.name
    return model
