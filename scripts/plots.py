"""Plots for the project (PNG; needs matplotlib: `pip install .[plots]`).

    python scripts/plots.py curves LOG.jsonl OUT.png [--title T]
        training curves from the JSONL log that spaCy's ConsoleLogger.v3 writes
        (`output_file`): loss per step and the dev scores at each evaluation.
    python scripts/plots.py confusion PIPELINE DATA.spacy OUT.png [--title T]
        confusion matrix of the pipeline's top label against the gold top label
        (single-label doc.cats); also writes OUT.json with the counts.
    python scripts/plots.py check
        fail now, not at the end of a long workflow, when matplotlib is missing.
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List, Tuple

import srsly


def read_log(path: Path) -> List[dict]:
    rows = [row for row in srsly.read_jsonl(path)]
    if not rows:
        raise SystemExit(f"{path} has no evaluation rows: train with "
                         "[training.logger] @loggers = \"spacy.ConsoleLogger.v3\" and output_file set")
    return rows


def loss_per_step(rows: List[dict]) -> Dict[str, Tuple[List[int], List[float]]]:
    """The logger writes each component's loss summed since the previous
    evaluation; divide by the steps in between to get the mean loss per step."""
    out: Dict[str, Tuple[List[int], List[float]]] = {}
    prev = 0
    for row in rows:
        n = row["step"] - prev
        if n > 0:
            for name, value in row["losses"].items():
                xs, ys = out.setdefault(name, ([], []))
                xs.append(row["step"])
                ys.append(value / n)
        prev = row["step"]
    return out


def scores_per_step(rows: List[dict]) -> Dict[str, Tuple[List[int], List[float]]]:
    out: Dict[str, Tuple[List[int], List[float]]] = {}
    for row in rows:
        for key, value in list(row["scores"].items()) + [("score (x100)", row["score"] * 100)]:
            if key == "speed" or value is None:
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(row["step"])
            ys.append(float(value))
    return out


# Dev metrics where lower is better and the scale is open (nats/char, bits/char,
# perplexity): drawn on their own log-scaled panel in their real units, so a
# perplexity in the thousands does not flatten the 0-100 scores.
LOSS_LIKE = ("loss", "bpc", "ppl")


def is_loss_like(name: str) -> bool:
    return any(part in name for part in LOSS_LIKE)


def plot_curves(log: Path, output: Path, title: str = "") -> Path:
    plt = _pyplot()
    rows = read_log(log)
    scores = scores_per_step(rows)
    losses = {name: (xs, [y / 100 for y in ys]) for name, (xs, ys) in scores.items() if is_loss_like(name)}
    percents = {name: curve for name, curve in scores.items() if not is_loss_like(name)}
    n_panels = 3 if losses else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(5.5 * n_panels, 4))
    ax_loss, ax_score = axes[0], axes[1]
    for name, (xs, ys) in loss_per_step(rows).items():
        ax_loss.plot(xs, ys, marker="o", label=name)
    ax_loss.set(xlabel="step", ylabel="training loss per step (mean since last eval)", title="training loss")
    if ax_loss.lines:
        ax_loss.legend()
    for name, (xs, ys) in percents.items():
        ax_score.plot(xs, ys, marker="o", label=name)
    ax_score.set(xlabel="step", ylabel="dev score (x100, as in spaCy's table)", title="dev scores")
    ax_score.legend(fontsize="small")
    if losses:
        ax_dev = axes[2]
        for name, (xs, ys) in losses.items():
            ax_dev.plot(xs, ys, marker="o", label=name)
        ax_dev.set_yscale("log")
        ax_dev.set(xlabel="step", ylabel="value (log scale; lower is better)",
                   title="dev loss, bits/char, perplexity")
        ax_dev.legend(fontsize="small")
    fig.suptitle(title or str(log))
    fig.tight_layout()
    return _save(fig, output)


def confusion(pipeline: str, data: Path) -> Tuple[List[str], List[List[int]]]:
    import spacy
    from spacy.tokens import DocBin
    from tqdm import tqdm

    nlp = spacy.load(pipeline)
    # Only the classifier (and what it listens to): never generate for a confusion matrix.
    generators = [name for name in nlp.pipe_names if nlp.get_pipe_meta(name).factory == "gpt_generator"]
    gold_docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    labels = sorted({label for doc in gold_docs for label in doc.cats})
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    with nlp.select_pipes(disable=generators):
        texts = (doc.text for doc in gold_docs)
        for gold, doc in zip(gold_docs, tqdm(nlp.pipe(texts, batch_size=64), total=len(gold_docs),
                                            desc="confusion matrix", unit="doc", disable=None)):
            g = max(gold.cats, key=gold.cats.get)
            p = max(doc.cats, key=doc.cats.get)
            matrix[index[g]][index[p]] += 1
    return labels, matrix


def plot_confusion(pipeline: str, data: Path, output: Path, title: str = "") -> Path:
    plt = _pyplot()
    labels, matrix = confusion(pipeline, data)
    total = sum(map(sum, matrix))
    accuracy = sum(matrix[i][i] for i in range(len(labels))) / max(total, 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 3, 1.0 * len(labels) + 2.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="gold")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center",
                    color="white" if count > peak / 2 else "black")
    ax.set_title(f"{title or pipeline}\naccuracy {accuracy:.4f} on {total} docs")
    fig.tight_layout()
    output = Path(output)
    srsly.write_json(output.with_suffix(".json"), {"labels": labels, "matrix": matrix, "accuracy": accuracy})
    return _save(fig, output)


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("The plots need matplotlib: pip install .[plots]") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, output: Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    print(f"Wrote {output}")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    curves = sub.add_parser("curves")
    curves.add_argument("log", type=Path)
    curves.add_argument("output", type=Path)
    curves.add_argument("--title", default="")
    conf = sub.add_parser("confusion")
    conf.add_argument("pipeline")
    conf.add_argument("data", type=Path)
    conf.add_argument("output", type=Path)
    conf.add_argument("--title", default="")
    sub.add_parser("check")
    args = parser.parse_args()
    if args.what == "check":
        _pyplot()
        print("matplotlib found: the plots step will run")
    elif args.what == "curves":
        plot_curves(args.log, args.output, args.title)
    else:
        plot_confusion(args.pipeline, args.data, args.output, args.title)


if __name__ == "__main__":
    main()
