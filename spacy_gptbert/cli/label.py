"""`python -m spacy_gptbert label PIPELINE INPUT OUTPUT`: a teacher's
probabilities as doc.cats of a .spacy corpus, to distil a student on."""
from pathlib import Path
from typing import Optional

import spacy
import typer
from tqdm import tqdm
from wasabi import msg

from ..training.distill import find_classifier, label_counts, label_docs, read_inputs, write_docbin

INPUT_HELP = ("A .spacy file (its cats are kept as gold labels), a .jsonl file (text under --text-key), "
              "plain text (one doc per non-empty line), a directory or a quoted glob of them")


def label_command(
    pipeline: str = typer.Argument(..., help="The teacher: a trained pipeline directory or package name"),
    input_path: str = typer.Argument(..., help=INPUT_HELP),
    output_path: Path = typer.Argument(..., help="Output .spacy file: the teacher's probabilities as doc.cats"),
    component: Optional[str] = typer.Option(
        None, "--component", "-c", help="The classifier to take probabilities from (default: the last "
        "component that sets doc.cats)"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="nlp.pipe batch size"),
    keep_gold: bool = typer.Option(
        True, "--keep-gold/--no-keep-gold", help="Keep each input doc's own cats as gold labels in "
        "doc.user_data['gold_cats'] (for bert_textcat's gold_weight)"),
    text_key: str = typer.Option("text", "--text-key", help="JSONL: the field that holds the text"),
    limit: int = typer.Option(0, "--limit", help="Label only the first N docs (0 = all)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
) -> None:
    """Label a corpus with a trained classifier's probabilities (the teacher's),
    for training a student bert_textcat on them (distillation)."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        nlp = spacy.load(pipeline)
        name = find_classifier(nlp, component)
        total, docs = read_inputs(nlp, input_path, text_key=text_key, limit=limit)
        with tqdm(total=total, unit="doc", desc=f"labelling with {name}") as bar:
            n = write_docbin(label_docs(nlp, docs, name, batch_size=batch_size, keep_gold=keep_gold,
                                        progress=bar.update), output_path)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    counts = ", ".join(f"{label} {count}" for label, count in label_counts(output_path, nlp))
    msg.good(f"Wrote {n} docs labelled by '{name}' to {output_path} (top labels: {counts})")
