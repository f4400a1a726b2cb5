from pathlib import Path
from typing import Optional

import spacy
import typer
from wasabi import msg

from ..errors import Errors
from ..training.convert import read_trec, read_tsv, split, to_docbin
from .apply import apply_command

app = typer.Typer(name="spacy_gptbert", add_completion=False, no_args_is_help=True,
                  help="spacy-gptbert commands.")
app.command("apply")(apply_command)

SST2_NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}
FORMATS = ("sst2", "tsv", "trec", "trec-fine")


@app.callback()
def main() -> None:
    """spacy-gptbert commands."""


@app.command("convert")
def convert(
    input_path: Path = typer.Argument(..., help="TSV (header with text and label columns) or TREC .label file"),
    output_path: Path = typer.Argument(..., help="Output .spacy file"),
    fmt: str = typer.Option("sst2", "--format", "-f", help=f"One of {', '.join(FORMATS)}"),
    lang: str = typer.Option("en", "--lang", help="Language of the blank tokenizer"),
    text_column: str = typer.Option("sentence", help="TSV text column"),
    label_column: str = typer.Option("label", help="TSV label column (labels joined with ',' = multi-label)"),
    dev_output: Optional[Path] = typer.Option(None, help="Also write a held-out split here"),
    dev_fraction: float = typer.Option(0.1, help="Fraction for --dev-output"),
    limit: int = typer.Option(0, help="Keep only the first N records (0 = all)"),
    seed: int = typer.Option(0, help="Seed of the train/dev split"),
) -> None:
    """Convert a text-classification data set into .spacy files with doc.cats."""
    if fmt not in FORMATS:
        msg.fail(Errors.E303.format(fmt=fmt, options=", ".join(FORMATS)), exits=1)
    if fmt == "sst2":
        records = list(read_tsv(input_path, "sentence", "label", SST2_NAMES))
    elif fmt == "tsv":
        records = list(read_tsv(input_path, text_column, label_column))
    else:
        records = list(read_trec(input_path, fine=fmt == "trec-fine"))
    if limit:
        records = records[:limit]
    labels = sorted({label for _, ls in records for label in ls})
    nlp = spacy.blank(lang)
    parts = [(output_path, records)]
    if dev_output is not None:
        train, dev = split(records, dev_fraction, seed)
        parts = [(output_path, train), (dev_output, dev)]
    for path, part in parts:
        path.parent.mkdir(parents=True, exist_ok=True)
        to_docbin(nlp, part, labels).to_disk(path)
        msg.good(f"Wrote {len(part)} docs with labels {labels} to {path}")


DEMO_TEXTS = [
    "An absolute joy from start to finish, with a cast that clearly loved every minute.",
    "A tedious, overlong mess that never finds its footing.",
    "The soundtrack is lovely but the story goes nowhere.",
    "I laughed, I cried, and I want to see it again tomorrow.",
    "Flat characters and a script full of clichés.",
    "A quietly brilliant film about family and memory.",
    "Nothing in this movie works, not even the jokes.",
    "Surprisingly moving, and the ending is perfect.",
]


@app.command("demo")
def demo(
    pipeline: str = typer.Argument(..., help="A trained pipeline: directory or installed package name"),
    texts_path: Optional[Path] = typer.Option(None, "--texts", help="Text file, one text per line (default: built-in reviews)"),
    metrics: Optional[Path] = typer.Option(None, "--metrics", help="Metrics JSON from `spacy evaluate` to print too"),
    batch_size: int = typer.Option(16, help="nlp.pipe batch size"),
    gpu_id: int = typer.Option(-1, help="GPU id, -1 for CPU"),
) -> None:
    """Process a batch of new texts and print label, probability and, when the
    pipeline has a generator, the generated text."""
    import srsly
    from wasabi import table

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(pipeline)
    texts = DEMO_TEXTS if texts_path is None else [t for t in texts_path.read_text(encoding="utf8").splitlines() if t.strip()]
    generates = "gpt_generator" in nlp.pipe_factories.values()
    rows = []
    for doc in nlp.pipe(texts, batch_size=batch_size):
        label, prob = max(doc.cats.items(), key=lambda kv: kv[1]) if doc.cats else ("-", 0.0)
        row = [_clip(doc.text, 60), label, f"{prob:.3f}"]
        if generates:
            row.append(_clip(doc._.generation or "", 60))
        rows.append(row)
    header = ["text", "label", "prob"] + (["generated"] if generates else [])
    msg.divider(f"{pipeline}: {len(texts)} texts")
    print(table(rows, header=header, divider=True, max_col=64))
    if metrics is not None and metrics.exists():
        scores = srsly.read_json(metrics)
        keys = [k for k in ("cats_acc", "cats_score", "cats_macro_f", "cats_macro_auc", "speed") if scores.get(k) is not None]
        msg.divider("metrics")
        print(table([[k, f"{scores[k]:.4f}" if k != "speed" else f"{scores[k]:.0f} words/s"] for k in keys]))


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
