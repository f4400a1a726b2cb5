"""How a batch's windows are cut into forward calls: the old greedy cut (fill
each chunk up to max_batch_tokens, longest windows first) against
`split_sorted` (least padded wordpieces plus a fixed cost per call), side by
side in one process, plus a sweep of that per-call cost:

    python benchmarks/chunking.py [--steps 20] [--rounds 3]

- training: seconds per `bert_textcat` step (configs/textcat_sst2.cfg's model
  settings) on SST-2 batches of 32 in random order (mixed lengths) and from
  `batch_by_length` (similar lengths);
- inference: docs/s of `nlp.pipe(batch_size=64)` over SST-2 dev twice and the
  first 3,000 train phrases, default (fp32) model settings.

Uses the packaged all-MiniLM-L6-v2 and ../shared/data/sst2. Prints medians
over --rounds, writes benchmarks/results/chunking.json.
"""
import argparse
import random
import statistics
import time
from typing import Callable, Dict, List

import spacy
from spacy.training import Example

from benchlib import MINILM, RESULTS, SST2, sst2_texts, write_json
from spacy_gptbert.models import encoder
from spacy_gptbert.training.batchers import batch_by_length
from spacy_gptbert.training.convert import read_tsv

LABELS = ("NEGATIVE", "POSITIVE")


def greedy_cut(padded: List[int], max_batch_tokens: int, call_cost: int = 0):
    """The cut plan_windows made before split_sorted: a new chunk whenever the
    next window would take the chunk past max_batch_tokens."""
    bounds, start = [], 0
    for k in range(1, len(padded)):
        if (k + 1 - start) * padded[start] > max_batch_tokens:
            bounds.append((start, k))
            start = k
    return bounds + [(start, len(padded))] if padded else []


def with_split(split: Callable, run: Callable[[], float]) -> float:
    saved = encoder.split_sorted
    encoder.split_sorted = split
    try:
        return run()
    finally:
        encoder.split_sorted = saved


def training_batches(steps: int) -> Dict[str, List[List[Example]]]:
    nlp = spacy.blank("en")
    records = list(read_tsv(SST2 / "train.tsv", label_names={"0": LABELS[0], "1": LABELS[1]}))
    random.Random(0).shuffle(records)
    examples = [Example.from_dict(nlp.make_doc(text), {"cats": {n: float(n == labels[0]) for n in LABELS}})
                for text, labels in records[: 32 * 50]]
    random.seed(1)  # batch_by_length shuffles its batches with the global generator
    return {
        "random order": [examples[i * 32 : (i + 1) * 32] for i in range(steps + 1)],
        "batch_by_length": list(batch_by_length(examples, 32, 50))[: steps + 1],
    }


def seconds_per_step(batches: List[List[Example]]) -> float:
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("bert_textcat", config={"model": {
        "name": MINILM, "window": 128, "stride": 96, "max_batch_tokens": 1024,
        "freeze_embeddings": True, "mixed_precision": True}})
    optimizer = nlp.initialize(lambda: batches[0])
    spent = 0.0
    for i, batch in enumerate(batches):  # the first step warms up and is not counted
        start = time.perf_counter()
        textcat.update(batch, sgd=optimizer)
        if i:
            spent += time.perf_counter() - start
    return spent / (len(batches) - 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=str(RESULTS / "chunking.json"))
    args = parser.parse_args()
    batches = training_batches(args.steps)
    texts = sst2_texts("dev") * 2 + sst2_texts("train")[:3000]
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": MINILM, "window": 128, "stride": 96}})
    nlp.initialize(lambda: batches["random order"][0])

    def docs_per_s() -> float:
        start = time.perf_counter()
        for _ in nlp.pipe(texts, batch_size=64):
            pass
        return len(texts) / (time.perf_counter() - start)

    now = encoder.split_sorted
    cuts = {"greedy cut (before)": greedy_cut, "split_sorted (now)": now}
    costs = (32, 64, 128, 256, 512)
    seen: Dict[str, List[float]] = {}
    for _ in range(args.rounds):  # rounds interleave the contenders against drift
        for name, split in cuts.items():
            for kind, kind_batches in batches.items():
                seen.setdefault(f"train s/step, {kind}: {name}", []).append(
                    with_split(split, lambda: seconds_per_step(kind_batches)))
            seen.setdefault(f"inference docs/s: {name}", []).append(with_split(split, docs_per_s))
        for cost in costs:
            split = lambda padded, max_tokens, _device_cost, cost=cost: now(padded, max_tokens, cost)  # noqa: E731
            seen.setdefault(f"inference docs/s: split_sorted, call_cost {cost}", []).append(
                with_split(split, docs_per_s))
    rows = [{"measure": k, "median": statistics.median(v), "runs": v} for k, v in seen.items()]
    for r in rows:
        print(f"{r['measure']:62} {r['median']:9.3f}   ({', '.join(f'{x:.3f}' for x in r['runs'])})")
    write_json(args.output, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
