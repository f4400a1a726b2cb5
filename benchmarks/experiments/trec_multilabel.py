"""The README's multi-label check on a set no shipped config was written for:
TREC questions, each labelled with its coarse type and, for the fine types with
at least 100 training questions (the "other" types left out), its fine type.
20 labels, 1 or 2 per question; 4,900 train and 552 dev questions from TREC's
training file (shuffled with seed 7), its 500-question test file as test.

It converts the three files with one label set (`convert --labels`), trains
each config for --steps steps and evaluates model-best on the test file:

    python benchmarks/experiments/trec_multilabel.py [--configs readme,readme-user] [--steps 800]

  readme       the base config of the README's "Writing your own config", filled
               by `spacy init fill-config`
  readme-user  trec_multilabel_readme_user.cfg: the config written from the
               README alone, before that section existed

Work files go to training/trec_multilabel/; the metrics print as a table.
Run it with OMP_NUM_THREADS=1 to match the README's figures (one thread each).
"""
import argparse
import collections
import json
import random
import subprocess
import sys
from pathlib import Path

from spacy_gptbert.training.convert import read_trec

ROOT = Path(__file__).resolve().parents[2]
TREC = ROOT.parent / "shared" / "data" / "trec"
HERE = Path(__file__).resolve().parent
MIN_FINE = 100
N_TRAIN = 4900
METRICS = ("cats_micro_f", "cats_exact_match", "cats_macro_f", "cats_macro_auc")


def write_tsvs(out: Path) -> str:
    """Write train/dev/test TSVs; return the label set, comma-joined."""
    train = [(text, *label.split(":")) for text, (label,) in read_trec(TREC / "train_5500.label", fine=True)]
    test = [(text, *label.split(":")) for text, (label,) in read_trec(TREC / "TREC_10.label", fine=True)]
    counts = collections.Counter(f"{c}:{f}" for _, c, f in train)
    fine_kept = {k for k, n in counts.items() if n >= MIN_FINE and not k.endswith(":other")}

    def labels(coarse, fine):
        return [coarse] + ([f"{coarse}_{fine}"] if f"{coarse}:{fine}" in fine_kept else [])

    random.Random(7).shuffle(train)
    parts = {"train": train[:N_TRAIN], "dev": train[N_TRAIN:], "test": test}
    all_labels = set()
    for name, rows in parts.items():
        with open(out / f"{name}.tsv", "w", encoding="utf8") as f:
            f.write("sentence\tlabel\n")
            for text, coarse, fine in rows:
                row_labels = labels(coarse, fine)
                all_labels.update(row_labels)
                f.write(f"{text}\t{','.join(row_labels)}\n")
    return ",".join(sorted(all_labels))


def readme_config(out: Path) -> Path:
    readme = (ROOT / "README.md").read_text(encoding="utf8")
    block = readme.split("### Writing your own config", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    base = out / "readme_base.cfg"
    base.write_text(block, encoding="utf8")
    filled = out / "readme.cfg"
    run(["-m", "spacy", "init", "fill-config", str(base), str(filled)])
    return filled


def run(args):
    subprocess.run([sys.executable, *args], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="readme,readme-user")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--workdir", type=Path, default=ROOT / "training" / "trec_multilabel")
    args = parser.parse_args()
    out = args.workdir
    out.mkdir(parents=True, exist_ok=True)
    labels = write_tsvs(out)
    for name in ("train", "dev", "test"):
        run(["-m", "spacy_gptbert", "convert", str(out / f"{name}.tsv"), str(out / f"{name}.spacy"),
             "--format", "tsv", "--labels", labels])
    configs = {"readme": lambda: readme_config(out),
               "readme-user": lambda: HERE / "trec_multilabel_readme_user.cfg"}
    rows = []
    for name in args.configs.split(","):
        config = configs[name]()
        train_dir = out / name
        steps = args.steps
        run(["-m", "spacy", "train", str(config), "--output", str(train_dir),
             "--paths.train", str(out / "train.spacy"), "--paths.dev", str(out / "dev.spacy"),
             "--training.max_steps", str(steps), "--training.optimizer.learn_rate.total_steps", str(steps),
             "--training.optimizer.learn_rate.warmup_steps", str(steps // 10)])
        metrics_path = out / f"{name}_test.json"
        run(["-m", "spacy", "evaluate", str(train_dir / "model-best"), str(out / "test.spacy"),
             "--output", str(metrics_path)])
        metrics = json.loads(metrics_path.read_text())
        rows.append([name] + [f"{metrics[k]:.4f}" for k in METRICS])
    print("\t".join(["config", *METRICS]))
    for row in rows:
        print("\t".join(row))


if __name__ == "__main__":
    main()
