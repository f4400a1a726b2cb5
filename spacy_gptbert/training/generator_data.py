"""Training data for gpt_generator: plain text, JSONL or TSV -> .spacy files.

    python -m spacy_gptbert.training.generator_data text input.txt out_dir --dev-fraction 0.1
    python -m spacy_gptbert.training.generator_data jsonl data.jsonl out.spacy
    python -m spacy_gptbert.training.generator_data tsv train.tsv out.spacy --label-names 0=negative,1=positive
        [--labels negative,positive]

Plain text is cut into blocks of about `block_chars` characters at paragraph,
then line boundaries (one Doc per block), and the last `dev_fraction` of the
text becomes dev.spacy (blocks of `dev_block_chars`). JSONL lines are {"prompt", "completion"} (Doc text =
prompt, doc._.completion = completion) or {"text", "label"} (Doc text = text,
one-hot doc.cats over all labels in the file, or over --labels). TSV has a header
naming its `sentence` and `label` columns (SST-2's format) and is read as
`python -m spacy_gptbert convert --format tsv` reads it (training/convert.py),
texts stripped; `convert` reads other column names, and its output is generator
data too.
"""
import argparse
import json
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc, DocBin
from tqdm import tqdm

from ..errors import Errors
from ..extensions import register_extensions
from .convert import label_set, parse_label_names, read_tsv, to_docbin

FORMATS = ("text", "jsonl", "tsv")

register_extensions()  # doc._.completion


def text_blocks(text: str, block_chars: int = 500) -> List[str]:
    """Cut text into blocks of at most ~block_chars characters, at paragraph
    (blank line) boundaries where possible, else at line boundaries. A single
    line longer than block_chars stays whole. Joining the blocks with "\n\n"
    between paragraphs and "\n" within gives back the text's content."""
    paragraphs = [p for p in (p.strip("\n") for p in text.split("\n\n")) if p]
    pieces = [piece for para in paragraphs
              for piece in ([para] if len(para) <= block_chars else _pack(para.split("\n"), "\n", block_chars))]
    return _pack(pieces, "\n\n", block_chars)


def _pack(pieces: Iterable[str], sep: str, block_chars: int) -> List[str]:
    """Consecutive pieces joined by sep into blocks of at most block_chars
    characters; a piece longer than that is a block of its own."""
    blocks: List[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current}{sep}{piece}" if current else piece
        if current and len(joined) > block_chars:
            blocks.append(current)
            current = piece
        else:
            current = joined
    if current:
        blocks.append(current)
    return blocks


def split_train_dev(text: str, dev_fraction: float) -> Tuple[str, str]:
    """First (1 - dev_fraction) of the characters for training, the rest for dev,
    cut at the nearest line break so no line is split."""
    if not 0.0 <= dev_fraction < 1.0:
        raise ValueError(Errors.E122.format(value=dev_fraction))
    cut = int(len(text) * (1.0 - dev_fraction))
    newline = text.rfind("\n", 0, cut)
    cut = newline + 1 if newline > 0 else cut
    return text[:cut], text[cut:]


def docs_from_text(nlp: Language, text: str, block_chars: int = 500) -> List[Doc]:
    blocks = text_blocks(text, block_chars)
    return [nlp.make_doc(block) for block in tqdm(blocks, desc="text blocks", unit="doc", disable=None, leave=False)]


def read_jsonl(path: Path) -> Iterator[Tuple[int, dict]]:
    for i, line in enumerate(_read(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as err:
            raise ValueError(Errors.E302.format(line=i, path=path, why=f"not JSON ({err})")) from None
        if not isinstance(record, dict):
            raise ValueError(Errors.E302.format(line=i, path=path, why="expected a JSON object"))
        yield i, record


def docs_from_records(nlp: Language, records: Iterable[Tuple[int, dict]], path: Path,
                      label_names: Optional[Dict[str, str]] = None, labels: Optional[List[str]] = None) -> List[Doc]:
    """{"prompt","completion"} or {"text","label"} records -> Docs (see module doc).
    labels: a fixed label set and order for doc.cats (as `convert --labels`), so
    that files converted one at a time share it; default: the file's labels, sorted."""
    records = list(records)
    label_names = label_names or {}
    named = [(None, [label_names.get(str(r["label"]), str(r["label"]))]) for _, r in records if "label" in r]
    labels = label_set(named, labels)
    docs = []
    for i, r in tqdm(records, desc="records", unit="doc", disable=None, leave=False):
        if isinstance(r.get("prompt"), str) and isinstance(r.get("completion"), str):
            doc = nlp.make_doc(r["prompt"])
            doc._.completion = r["completion"]
        elif isinstance(r.get("text"), str) and "label" in r:
            doc = nlp.make_doc(r["text"])
            label = label_names.get(str(r["label"]), str(r["label"]))
            doc.cats = {name: float(name == label) for name in labels}
        else:
            raise ValueError(Errors.E302.format(line=i, path=path, why='expected {"prompt", "completion"} '
                                                'strings or {"text", "label"}'))
        docs.append(doc)
    return docs


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")  # a byte order mark is not text
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(Errors.E301.format(path=path, err=err)) from None


def write_docs(docs: Iterable[Doc], path: Path) -> int:
    """Write Docs to a .spacy file, with cats and extension values (completions)."""
    db = DocBin(attrs=["ORTH", "SPACY"], store_user_data=True)
    n = 0
    for doc in docs:
        db.add(doc)
        n += 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db.to_disk(path)
    return n


def convert(fmt: str, input_path: Path, output: Path, *, lang: str = "en", block_chars: int = 500,
            dev_fraction: float = 0.0, dev_block_chars: Optional[int] = None, label_names: Optional[Dict[str, str]] = None,
            limit: int = 0, min_words: int = 0, labels: Optional[List[str]] = None) -> Dict[str, int]:
    """Convert one input file. min_words: drop jsonl/tsv records whose text (or
    completion) has fewer words, e.g. SST-2's one- and two-word phrases, which
    teach a generator to stop after a word or two. With fmt "text" and dev_fraction > 0, `output` is a
    directory receiving train.spacy and dev.spacy; otherwise a .spacy path."""
    import spacy

    if fmt not in FORMATS:
        raise ValueError(Errors.E303.format(fmt=fmt, options=", ".join(FORMATS)))
    input_path, output = Path(input_path), Path(output)
    if not input_path.exists():
        raise ValueError(Errors.E304.format(path=input_path))
    nlp = spacy.blank(lang)
    if fmt == "text":
        text = _read(input_path)
        if dev_fraction > 0:
            train, dev = split_train_dev(text, dev_fraction)
            return {
                "train": write_docs(docs_from_text(nlp, train, block_chars), output / "train.spacy"),
                "dev": write_docs(docs_from_text(nlp, dev, dev_block_chars or block_chars), output / "dev.spacy"),
            }
        return {"docs": write_docs(docs_from_text(nlp, text, block_chars), output)}
    if fmt == "tsv":
        # Stripped: a completion's trailing space (SST-2 ends every sentence with one) would be a token to learn.
        rows = [(text.strip(), names) for text, names in read_tsv(input_path, label_names=label_names)]
        rows = [row for row in rows if len(row[0].split()) >= min_words][: limit or None]
        output.parent.mkdir(parents=True, exist_ok=True)
        to_docbin(nlp, rows, label_set(rows, labels)).to_disk(output)
        return {"docs": len(rows)}
    records = read_jsonl(input_path)
    if min_words:
        records = (r for r in records if _n_words(r[1]) >= min_words)
    if limit:
        records = (r for j, r in enumerate(records) if j < limit)
    return {"docs": write_docs(docs_from_records(nlp, records, input_path, label_names, labels), output)}


def _n_words(record: dict) -> int:
    text = record.get("completion", record.get("text"))
    return len(text.split()) if isinstance(text, str) else 0


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("format", choices=FORMATS)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--block-chars", type=int, default=500)
    parser.add_argument("--dev-fraction", type=float, default=0.0)
    parser.add_argument("--dev-block-chars", type=int, default=None,
                        help="block size for dev docs (default: --block-chars); longer dev docs mean "
                             "fewer generations during evaluation, the loss is scored in context-size blocks anyway")
    parser.add_argument("--label-names", default="", help="e.g. 0=negative,1=positive")
    parser.add_argument("--labels", default="",
                        help="comma-separated label set and order for doc.cats (after --label-names), the same for "
                             "every file converted; a label in the data but not here fails (E305)")
    parser.add_argument("--limit", type=int, default=0, help="first N records only (jsonl/tsv)")
    parser.add_argument("--min-words", type=int, default=0, help="drop jsonl/tsv records with fewer words")
    args = parser.parse_args(argv)
    counts = convert(args.format, args.input, args.output, lang=args.lang, block_chars=args.block_chars,
                     dev_fraction=args.dev_fraction, dev_block_chars=args.dev_block_chars, label_names=parse_label_names(args.label_names),
                     limit=args.limit, min_words=args.min_words,
                     labels=[x for x in args.labels.split(",") if x] or None)
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
