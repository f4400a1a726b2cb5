"""Output records, atomic part files and the run manifest.

Layout of OUTPUT (a directory):
    manifest.json                    the plan: inputs (size, mtime), settings, pipeline (sha256), parts
    00000-<shard>-<hash>.00000.jsonl one file per finished part, names sort in input order
    .<part>.<random>.tmp             a part being written (never read; removed on the next run)
    errors/<part>.tsv                the bad records of a part (file, line, reason), if it has any
    errors.tsv                       all of them, in input order, after a run that met any

A part file appears only through os.replace of a complete temporary file, so
it is either whole or absent: a killed worker leaves no half part, and a part
processed twice (a retried task) replaces itself instead of adding records.
A part's errors file is written before its part file, so a finished part
never lacks the list of records it skipped.
"""
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from ..errors import Errors
from .inputs import Part, Shard

MANIFEST = "manifest.json"
ERRORS_DIR = "errors"
ERRORS_FILE = "errors.tsv"
ERRORS_HEADER = "file\tline\treason\n"
MANIFEST_FORMAT = "spacy-gptbert-apply/1"
# Large per-doc arrays that the encoder keeps: not part of an output record.
DROPPED_EXTENSIONS = ("bert_pooled", "bert_wordpieces")


def part_path(output: Path, part: Part, output_format: str) -> Path:
    return output / f"{part.name}.{output_format}"


def doc_record(doc, doc_id: Any, vectors: bool) -> Dict[str, Any]:
    """One JSONL record: id, text, cats and, when the pipeline sets them,
    generations; the doc vector when asked."""
    record: Dict[str, Any] = {"id": doc_id, "text": doc.text}
    if doc.cats:
        record["cats"] = {label: float(score) for label, score in doc.cats.items()}
    if doc.has_extension("generation") and doc._.generation is not None:
        record["generation"] = doc._.generation
        if doc._.generations and len(doc._.generations) > 1:
            record["generations"] = list(doc._.generations)
    if vectors:
        record["vector"] = doc_vector(doc)
    return record


def doc_vector(doc) -> List[float]:
    if not doc.has_vector:
        raise ValueError(Errors.E355.format(id=doc.user_data.get("id")))
    vector = doc.vector
    vector = vector.get() if hasattr(vector, "get") else vector  # cupy -> numpy
    return [float(x) for x in vector]


def encode_part(docs_with_ids: Iterable[Tuple[Any, Any]], output_format: str, vectors: bool) -> Tuple[bytes, int]:
    """The bytes of a part file and its number of records."""
    n = 0
    if output_format == "jsonl":
        lines = []
        for doc_id, doc in docs_with_ids:
            lines.append(json.dumps(doc_record(doc, doc_id, vectors), ensure_ascii=False))
            n += 1
        return ("\n".join(lines) + "\n" if lines else "").encode("utf8"), n
    from spacy.tokens import DocBin

    docbin = DocBin(store_user_data=True)
    for doc_id, doc in docs_with_ids:
        doc.user_data["id"] = doc_id
        if vectors:  # before the encoder's arrays are dropped: the vector hook reads them
            doc.user_data["vector"] = doc_vector(doc)
        for name in DROPPED_EXTENSIONS:
            if doc.has_extension(name):
                doc._.set(name, None)
        docbin.add(doc)
        n += 1
    return docbin.to_bytes(), n


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same directory, then rename: readers
    (and a resumed run) never see a partial file."""
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# --- bad records ----------------------------------------------------------------

def part_errors_path(output: Path, part: Part) -> Path:
    return output / ERRORS_DIR / f"{part.name}.tsv"


def write_part_errors(output: Path, part: Part, bad: List[Tuple[int, str]]) -> None:
    """The (line, reason) of each bad record of a part; none: no file."""
    path = part_errors_path(output, part)
    if not bad:
        path.unlink(missing_ok=True)  # left by a run killed before this part's file was written
        return
    path.parent.mkdir(exist_ok=True)
    rows = "".join(f"{_one_field(part.path)}\t{line}\t{_one_field(reason)}\n" for line, reason in bad)
    write_atomic(path, rows.encode("utf8"))


def collect_errors(output: Path, parts: List[Part]) -> int:
    """Write OUTPUT/errors.tsv from the parts' error files, in input order
    (none: no file); returns the number of bad records."""
    rows = []
    for part in parts:
        path = part_errors_path(output, part)
        if path.exists():
            rows.extend(path.read_text(encoding="utf8").splitlines(keepends=True))
    target = output / ERRORS_FILE
    if rows:
        write_atomic(target, (ERRORS_HEADER + "".join(rows)).encode("utf8"))
    else:
        target.unlink(missing_ok=True)
    return len(rows)


def _one_field(text: str) -> str:
    return " ".join(str(text).replace("\t", " ").splitlines())


# --- manifest -----------------------------------------------------------------

def make_manifest(shards: List[Shard], counts: List[int], parts: List[Part], fingerprint: Dict,
                  pipeline: Dict[str, str]) -> Dict:
    """pipeline: its directory and sha256 (fingerprint.describe_pipeline)."""
    inputs = []
    for shard, n in zip(shards, counts):
        stat = os.stat(shard.path)
        inputs.append({"key": shard.key, "path": shard.path, "kind": shard.kind, "size": stat.st_size,
                       "mtime_ns": stat.st_mtime_ns, "n_records": n})
    return {"format": MANIFEST_FORMAT, "settings": fingerprint, "pipeline": pipeline, "inputs": inputs,
            "parts": [p.to_dict() for p in parts], "n_records": sum(counts), "complete": False}


def read_manifest(output: Path) -> Optional[Dict]:
    path = output / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except ValueError as err:
        raise ValueError(Errors.E353.format(path=output, why=f"its {MANIFEST} is unreadable ({err})")) from err


def write_manifest(output: Path, manifest: Dict) -> None:
    write_atomic(output / MANIFEST, json.dumps(manifest, indent=1).encode("utf8"))


def check_manifest(output: Path, manifest: Dict, shards: List[Shard], fingerprint: Dict,
                   pipeline: Dict[str, str]) -> None:
    """A resumed run must read the same inputs with the same settings and the
    same pipeline (config and weights), or the finished parts would not be
    parts of this run's output."""
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(Errors.E353.format(path=output, why=f"unknown manifest format {manifest.get('format')!r}"))
    before = manifest.get("pipeline") or {"path": "unknown", "sha256": "not recorded"}
    if before["sha256"] != pipeline["sha256"]:
        raise ValueError(Errors.E306.format(output=output, before_path=before["path"], before=before["sha256"],
                                            path=pipeline["path"], now=pipeline["sha256"]))
    if manifest["settings"] != fingerprint:
        changed = sorted(k for k in set(fingerprint) | set(manifest["settings"])
                         if fingerprint.get(k) != manifest["settings"].get(k))
        raise ValueError(Errors.E353.format(path=output, why=f"it was started with other settings ({', '.join(changed)})"))
    before = [(i["key"], i["path"]) for i in manifest["inputs"]]
    now = [(s.key, s.path) for s in shards]
    if before != now:
        raise ValueError(Errors.E353.format(path=output, why="it was started on other input files"))
    for entry in manifest["inputs"]:
        try:
            stat = os.stat(entry["path"])
        except OSError as err:
            raise ValueError(Errors.E301.format(path=entry["path"], err=err)) from err
        if (stat.st_size, stat.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
            raise ValueError(Errors.E350.format(path=entry["path"], why="size or modification time differ"))


def prepare_output(output: Path, overwrite: bool) -> None:
    """Create OUTPUT, or accept it when it is an apply output (resume); refuse
    to write into, or delete, anything else."""
    if output.exists() and not output.is_dir():
        raise ValueError(Errors.E353.format(path=output, why="it is a file, not a directory"))
    if output.is_dir() and any(output.iterdir()):
        if not (output / MANIFEST).exists():
            raise ValueError(Errors.E353.format(path=output, why=f"it is not empty and has no {MANIFEST}"))
        if overwrite:
            shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    for stale in (*output.glob(".*.tmp"), *output.glob(f"{ERRORS_DIR}/.*.tmp")):  # left by a killed run
        stale.unlink(missing_ok=True)


def finished(output: Path, parts: List[Part], output_format: str) -> List[bool]:
    return [part_path(output, p, output_format).exists() for p in parts]


def iter_records(output: Path) -> Iterator[Dict[str, Any]]:
    """The records of a finished (or partly finished) JSONL output, in input order."""
    manifest = read_manifest(output)
    if manifest is None:
        raise ValueError(Errors.E353.format(path=output, why=f"it has no {MANIFEST}"))
    fmt = manifest["settings"]["output_format"]
    for data in manifest["parts"]:
        path = part_path(output, Part.from_dict(data), fmt)
        if path.exists() and fmt == "jsonl":
            with open(path, encoding="utf8") as f:
                for line in f:
                    yield json.loads(line)
        elif path.exists():
            import spacy
            from spacy.tokens import DocBin

            for doc in DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab):
                yield {"id": doc.user_data.get("id"), "text": doc.text, "cats": dict(doc.cats)}


def merge(output: Path, target: Path) -> int:
    """Concatenate the parts, in input order, into one .jsonl or .spacy file."""
    manifest = read_manifest(output)
    fmt = manifest["settings"]["output_format"]
    paths = [part_path(output, Part.from_dict(d), fmt) for d in manifest["parts"]]
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        data = b"".join(p.read_bytes() for p in paths)
        write_atomic(target, data)
        return data.count(b"\n")
    from spacy.tokens import DocBin

    merged = DocBin(store_user_data=True)
    for p in paths:
        merged.merge(DocBin(store_user_data=True).from_disk(p))
    write_atomic(target, merged.to_bytes())
    return len(merged)
