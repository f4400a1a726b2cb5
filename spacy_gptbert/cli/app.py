from pathlib import Path
from typing import Optional

import spacy
import typer
from tqdm import tqdm
from wasabi import msg

from ..errors import Errors
from ..training.convert import label_set, parse_label_names, read_trec, read_tsv, split, to_docbin
from .apply import apply_command
from .download import download_command
from .label import label_command

app = typer.Typer(name="spacy_gptbert", add_completion=False, no_args_is_help=True,
                  help="spacy-gptbert commands.")
app.command("apply")(apply_command)
app.command("download")(download_command)
app.command("label")(label_command)

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
    fixed_labels: Optional[str] = typer.Option(
        None, "--labels", help="Comma-separated label set and order for doc.cats (default: the labels in "
        "the data). Give the same list to every file of a data set so that all share one label set"),
    label_names: Optional[str] = typer.Option(
        None, "--label-names", help="Rename raw labels: raw=name pairs, e.g. 0=NEGATIVE,1=POSITIVE (the names "
        "of a fine-tuned classifier's id2label). Labels not listed keep their name; --labels takes the "
        "new names. sst2's default: 0=NEGATIVE,1=POSITIVE"),
) -> None:
    """Convert a text-classification data set into .spacy files with doc.cats."""
    if fmt not in FORMATS:
        msg.fail(Errors.E303.format(fmt=fmt, options=", ".join(FORMATS)), exits=1)
    try:
        names = parse_label_names(label_names) if label_names is not None else None
        if fmt == "sst2":
            records = list(read_tsv(input_path, "sentence", "label", SST2_NAMES if names is None else names))
        elif fmt == "tsv":
            records = list(read_tsv(input_path, text_column, label_column, names))
        else:
            records = list(read_trec(input_path, fine=fmt == "trec-fine", label_names=names))
        if limit:
            records = records[:limit]
        labels = label_set(records, [x for x in (fixed_labels or "").split(",") if x])
    except (OSError, ValueError) as err:
        msg.fail(str(err), exits=1)
    nlp = spacy.blank(lang)
    parts = [(output_path, records)]
    if dev_output is not None:
        train, dev = split(records, dev_fraction, seed)
        parts = [(output_path, train), (dev_output, dev)]
    for path, part in parts:
        path.parent.mkdir(parents=True, exist_ok=True)
        docbin = to_docbin(nlp, [], labels)
        with tqdm(total=len(part), desc=f"convert {path.name}", unit="doc", disable=None, leave=False) as bar:
            for start in range(0, len(part), 2000):  # chunks, so the bar moves while tokenizing
                docbin.merge(to_docbin(nlp, part[start : start + 2000], labels))
                bar.update(len(part[start : start + 2000]))
        docbin.to_disk(path)
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


# what `demo --metrics` prints of a `spacy evaluate` JSON, when there
DEMO_METRICS = ("cats_acc", "cats_score", "cats_macro_f", "cats_macro_auc",
                "gen_agreement", "gen_loss_per_char", "gen_ppl",
                "gen_distinct_1", "gen_distinct_2", "gen_repeat_4gram", "speed")


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
    docs = nlp.pipe(texts, batch_size=batch_size)
    for doc in tqdm(docs, total=len(texts), desc="classify and generate" if generates else "classify",
                    unit="text", disable=None, leave=False):
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
        keys = [k for k in DEMO_METRICS if scores.get(k) is not None]
        msg.divider("metrics")
        print(table([[k, f"{scores[k]:.4f}" if k != "speed" else f"{scores[k]:.0f} words/s"] for k in keys]))


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("pretrain-mlm")
def pretrain_mlm_command(
    input_path: Path = typer.Argument(..., help="In-domain texts: .spacy file, TSV with a 'sentence' column, or one text per line"),
    output_dir: Path = typer.Argument(..., help="Output Hugging Face encoder directory (bert_textcat's `name` can point here)"),
    model: str = typer.Option("sentence-transformers/all-MiniLM-L6-v2", "--model", "-m", help="Encoder name or directory"),
    steps: int = typer.Option(500, help="Training steps (batches)"),
    batch_size: int = typer.Option(32, help="Texts per batch"),
    learn_rate: float = typer.Option(5e-5, help="Peak learning rate of the encoder"),
    head_learn_rate: float = typer.Option(1e-3, help="Peak learning rate of a freshly built MLM head"),
    max_length: int = typer.Option(128, help="Wordpieces per text (longer texts are truncated)"),
    mlm_probability: float = typer.Option(0.15, help="Share of wordpieces to predict"),
    dev: Optional[Path] = typer.Option(None, help="Held-out texts: masked-LM loss/accuracy before and after"),
    limit: int = typer.Option(0, help="Use only the first N texts (0 = all)"),
    seed: int = typer.Option(0, help="Seed of batch order and masking"),
    mixed_precision: bool = typer.Option(False, help="fp16 autocast + gradient scaling on GPU, bf16 autocast on CPU"),
    gpu_id: int = typer.Option(-1, help="GPU id, -1 for CPU"),
) -> None:
    """Continue masked-LM pretraining of an encoder on in-domain text, before fine-tuning."""
    from ..training.mlm import perplexity, run

    report = run(input_path, output_dir, model_name=model, steps=steps, dev_path=dev, limit=limit, gpu_id=gpu_id,
                 batch_size=batch_size, learn_rate=learn_rate, head_learn_rate=head_learn_rate,
                 max_length=max_length, mlm_probability=mlm_probability, seed=seed, mixed_precision=mixed_precision)
    for key in ("dev_before", "dev_after"):
        if key in report:
            r = report[key]
            msg.info(f"{key}: MLM loss {r['mlm_loss']:.3f} (ppl {perplexity(r['mlm_loss']):.1f}), accuracy {r['mlm_acc']:.3f}")
    msg.good(f"{report['steps']} steps in {report['train_seconds']}s; encoder written to {output_dir}")
