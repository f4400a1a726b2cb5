"""Turn the TSV and label files of text-classification data sets into .spacy
DocBins with doc.cats, so `spacy train` can read them. The one TSV reader:
generator_data.py reads its TSV input with read_tsv too."""
import csv
import random
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import DocBin

from ..errors import Errors

Record = Tuple[str, List[str]]  # text, its labels


def read_tsv(path: Path, text_column: str = "sentence", label_column: str = "label",
             label_names: Optional[Dict[str, str]] = None) -> Iterator[Record]:
    """A header-led TSV (GLUE style), UTF-8 (a byte order mark is dropped).
    Labels may be separated by ',' for multi-label data; label_names renames
    raw labels (parse_label_names)."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")
    except OSError as err:
        raise OSError(Errors.E301.format(path=path, err=err)) from None
    with handle:
        try:
            reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
            for field in (text_column, label_column):
                if field not in (reader.fieldnames or []):
                    raise ValueError(Errors.E302.format(line=1, path=path, why=(
                        f"no column '{field}' in the header {reader.fieldnames} (the first line must name the "
                        "text and label columns)")))
            for i, row in enumerate(reader, start=2):
                text, raw = row[text_column], row[label_column]
                if text is None or raw is None:
                    raise ValueError(Errors.E302.format(line=i, path=path, why="too few columns"))
                yield text, rename([x for x in raw.split(",") if x != ""], label_names)
        except UnicodeDecodeError as err:
            raise ValueError(Errors.E301.format(path=path, err=f"{err}; save it as UTF-8")) from None


def parse_label_names(value: str) -> Dict[str, str]:
    """--label-names "0=NEGATIVE,1=POSITIVE" -> {"0": "NEGATIVE", "1": "POSITIVE"}."""
    names: Dict[str, str] = {}
    for item in (x.strip() for x in value.split(",")):
        if not item:
            continue
        raw, sep, name = item.partition("=")
        if not sep or not raw or not name:
            raise ValueError(Errors.E309.format(item=item, value=value))
        names[raw] = name
    return names


def rename(labels: List[str], label_names: Optional[Dict[str, str]]) -> List[str]:
    return [label_names.get(x, x) for x in labels] if label_names else labels


def read_trec(path: Path, fine: bool = False, label_names: Optional[Dict[str, str]] = None) -> Iterator[Record]:
    """TREC question classification: `COARSE:fine question ?` per line, ISO-8859-1."""
    try:
        lines = Path(path).read_text(encoding="latin-1").splitlines()
    except OSError as err:
        raise OSError(Errors.E301.format(path=path, err=err)) from None
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if ":" not in label or not text:
            raise ValueError(Errors.E302.format(line=i, path=path, why="expected 'COARSE:fine question'"))
        yield text.strip(), rename([label if fine else label.split(":")[0]], label_names)


def label_set(records: List[Record], fixed: Optional[List[str]] = None) -> List[str]:
    """The labels every doc of a conversion gets in doc.cats: the ones in the
    data, sorted, or a fixed list, so that files converted one at a time (a
    test file that lacks a rare label, say) share one label set and order."""
    seen = {label for _, labels in records for label in labels}
    if not fixed:
        return sorted(seen)
    unknown = sorted(seen - set(fixed))
    if unknown:
        raise ValueError(Errors.E305.format(unknown=unknown, labels=fixed))
    return list(dict.fromkeys(fixed))


def to_docbin(nlp: Language, records: Iterable[Record], all_labels: List[str], exclusive: bool = True) -> DocBin:
    docbin = DocBin(store_user_data=False)
    texts_labels = list(records)
    for doc, (_, labels) in zip(nlp.tokenizer.pipe(t for t, _ in texts_labels), texts_labels):
        doc.cats = {label: float(label in labels) for label in all_labels}
        docbin.add(doc)
    return docbin


def split(records: List[Record], dev_fraction: float, seed: int = 0) -> Tuple[List[Record], List[Record]]:
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    n_dev = int(round(len(shuffled) * dev_fraction))
    return shuffled[n_dev:], shuffled[:n_dev]
