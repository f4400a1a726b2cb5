"""Perturbed training text for distillation: more sentence-like inputs for the
teacher to label, so the MiniLM student sees the teacher's judgement on texts
that are not in the gold set (the word-replacement augmentation of TinyBERT,
Jiao et al. 2020, with embedding neighbours in place of a masked LM).

Each SST-2 training phrase of at least --min-words words gives one variant:
every alphabetic word that is not a stop word is replaced, with probability --p, by one of its --k
nearest neighbours (cosine) in the teacher's word-embedding matrix, among the
single-piece lower-case words that occur in the training text. Neighbours
include antonyms (good -> bad, love -> hate); the teacher labels each variant
afterwards, so a flipped sentiment is a useful example, not label noise.

    python benchmarks/experiments/distill_augment.py assets/sst2/train.tsv \
        corpus/sst2/train_augmented.txt [--model sentence-transformers/all-mpnet-base-v2] \
        [--min-words 12] [--p 0.4] [--k 8] [--seed 0]
    python -m spacy_gptbert label training/sst2-base/model-best corpus/sst2/train_augmented.txt \
        corpus/sst2/distill/augmented_teacher.spacy

Writes one text per line (plain text: the `label` command's input).

Result (docs/performance.md#distillation): the student trained on the teacher's
labels of both (same step budget, seed 0) reached 89.45% on SST-2 dev against
90.60% without the perturbed text, so the distill workflow does not use it.
"""
import argparse
import csv
import random
from collections import Counter
from typing import Dict, List

import torch
from spacy.lang.en.stop_words import STOP_WORDS
from transformers import AutoModel, AutoTokenizer

from spacy_gptbert.models.hf_loading import resolve_model_dir


def neighbour_table(model_name: str, words: List[str], k: int) -> Dict[str, List[str]]:
    """Each word that is one piece of the model's vocabulary -> its k nearest
    such words by cosine of the input word embeddings."""
    path = resolve_model_dir(model_name)  # the package's offline lookup: a directory, the HF cache, a packaged copy
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    vocab = tokenizer.get_vocab()
    single = [w for w in words if w in vocab]
    ids = torch.tensor([vocab[w] for w in single])
    emb = model.get_input_embeddings().weight.detach()[ids]
    emb = emb / emb.norm(dim=1, keepdim=True)
    table = {}
    for start in range(0, len(single), 2048):
        sims = emb[start:start + 2048] @ emb.T
        sims[torch.arange(sims.shape[0]), torch.arange(start, start + sims.shape[0])] = -1.0
        for row, word in zip(sims.topk(k, dim=1).indices.tolist(), single[start:start + 2048]):
            table[word] = [single[j] for j in row]
    return table


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("train_tsv")
    parser.add_argument("output")
    parser.add_argument("--model", default="sentence-transformers/all-mpnet-base-v2")
    parser.add_argument("--min-words", type=int, default=12)
    parser.add_argument("--p", type=float, default=0.4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with open(args.train_tsv, encoding="utf8") as f:
        texts = [row["sentence"].strip() for row in csv.DictReader(f, delimiter="\t")]
    counts = Counter(w for t in texts for w in t.split())
    # Function words' neighbours are other function words, and swapping them
    # breaks the grammar without changing what the sentence says.
    words = [w for w, n in counts.items() if w.isalpha() and len(w) > 1 and n >= 2 and w not in STOP_WORDS]
    table = neighbour_table(args.model, words, args.k)
    rng = random.Random(args.seed)
    known = set(texts)
    out, replaced, total = [], 0, 0
    for text in texts:
        tokens = text.split()
        if len(tokens) < args.min_words:
            continue
        new = []
        for w in tokens:
            if w in table and rng.random() < args.p:
                new.append(rng.choice(table[w]))
                replaced += 1
            else:
                new.append(w)
            total += 1
        variant = " ".join(new)
        if variant not in known:
            known.add(variant)
            out.append(variant)
    with open(args.output, "w", encoding="utf8") as f:
        f.write("\n".join(out) + "\n")
    print(f"{len(out)} variants of the phrases with >= {args.min_words} words, "
          f"{replaced / max(total, 1):.1%} of their words replaced, {len(table)} words with neighbours")
    for line in out[:5]:
        print("  ", line)


if __name__ == "__main__":
    main()
