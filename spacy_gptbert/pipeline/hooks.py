"""The vector/similarity hooks that make doc.vector, span.vector,
token.vector and .similarity() use the encoder's output.

Hooks are module-level functions (picklable), reading what set_annotations
stored: doc.tensor (tokens) and doc._.bert_pooled (cls / mean per doc).
"""
import math

from spacy.tokens import Doc

from ..extensions import register_extensions  # noqa: F401  (its old home; registers them all)


def doc_vector(doc):
    pooled = doc._.bert_pooled
    return pooled[pooled["doc"]]


def span_vector(span):
    if span.start == 0 and span.end == len(span.doc):
        return doc_vector(span.doc)
    rows = span.doc.tensor[span.start : span.end]
    return rows.mean(axis=0) if len(rows) else span.doc.tensor[:0].sum(axis=0)


def token_vector(token):
    return token.doc.tensor[token.i]


def has_vector(_obj) -> bool:
    return True


def similarity(obj, other) -> float:
    # Cosine; written with sums so it works on numpy and cupy arrays alike.
    a, b = obj.vector, other.vector
    norm = vector_norm(obj) * vector_norm(other)
    return float((a * b).sum()) / norm if norm else 0.0


def vector_norm(obj) -> float:
    return math.sqrt(float((obj.vector ** 2).sum()))


def install(doc: Doc) -> None:
    doc.user_hooks.update({"vector": doc_vector, "has_vector": has_vector, "similarity": similarity,
                           "vector_norm": vector_norm})
    doc.user_span_hooks.update({"vector": span_vector, "has_vector": has_vector, "similarity": similarity,
                                "vector_norm": vector_norm})
    doc.user_token_hooks.update({"vector": token_vector, "has_vector": has_vector, "similarity": similarity,
                                 "vector_norm": vector_norm})
