"""Label steering for gpt_generator (its `label_bias` setting).

A generator trained for a few minutes writes fluent text but may not yet have
learned what its label prompt asks for. Steering adds, at every decoding step,

    label_bias * (log P(w | label) - log P(w | the other labels))

to the log-probability of each token w: the add-one-smoothed unigram log-odds
of the label's training texts against the other labels' texts. It is a product
of experts at decoding time (DExperts, Liu et al. 2021, with unigram expert and
anti-expert): the counts come from the training data at initialize, with no
training of their own, and the language model is unchanged (its loss and
nats/char do not include the bias).

The counts are kept per label as the prompt names it (a template's
label_names: "1" and "POSITIVE" both count as "positive"), so the gold labels
of the training data and the labels a textcat predicts share one row.
"""
from collections import Counter
from typing import Dict, Iterable, List, Sequence

import numpy

LabelCounts = Dict[str, Dict[str, int]]  # label -> token id (as str, for JSON) -> count


def count_label_tokens(labels: Sequence[str], token_ids: Iterable[List[int]]) -> LabelCounts:
    """Token counts per label of the targets (the text and its end token);
    docs without a label ('') are left out."""
    counts: Dict[str, Counter] = {}
    for label, ids in zip(labels, token_ids):
        if label:
            counts.setdefault(label, Counter()).update(map(str, ids))
    return {label: dict(row) for label, row in counts.items()}


def log_odds(counts: LabelCounts, vocab_size: int) -> Dict[str, numpy.ndarray]:
    """(vocab_size,) float32 per label: log P(w | label) - log P(w | others),
    each add-one smoothed over the vocabulary. Empty with fewer than two labels
    (nothing to contrast)."""
    if len(counts) < 2:
        return {}
    dense = {}
    for label, row in counts.items():
        vector = numpy.zeros((vocab_size,), dtype="float64")
        for token, count in row.items():
            if int(token) < vocab_size:
                vector[int(token)] += count
        dense[label] = vector
    total = sum(dense.values())
    table = {}
    for label, own in dense.items():
        rest = total - own + 1.0
        own = own + 1.0
        table[label] = (numpy.log(own / own.sum()) - numpy.log(rest / rest.sum())).astype("float32")
    return table


def bias_rows(table: Dict[str, numpy.ndarray], labels: Sequence[str], scale: float,
              vocab_size: int) -> numpy.ndarray:
    """(len(labels), vocab_size): scale * the label's log-odds; zeros for a
    label the counts do not know (or '' for a doc without doc.cats)."""
    rows = numpy.zeros((len(labels), vocab_size), dtype="float32")
    for i, label in enumerate(labels):
        if label in table:
            rows[i] = scale * table[label]
    return rows
