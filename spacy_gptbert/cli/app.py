from pathlib import Path
from typing import Optional

import spacy
import typer
from wasabi import msg

from ..errors import Errors
from ..training.convert import read_trec, read_tsv, split, to_docbin

app = typer.Typer(name="spacy_gptbert", add_completion=False, no_args_is_help=True,
                  help="spacy-gptbert commands.")

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
