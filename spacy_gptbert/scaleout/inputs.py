"""Find input shards and cut them into parts; read the records of one part.

Formats (by suffix, as `spacy apply` does): `.jsonl` (one JSON object per
line, text under `text_key`, id under `id_key`), `.spacy` (a DocBin; id from
`doc.user_data["id"]`) and anything else as plain text, one doc per non-empty
line. A record without an id gets `<shard key>:<n>`, n being the 1-based line
(JSONL, text) or position (.spacy) in its shard, so ids stay stable between runs.
JSONL and text are UTF-8; a byte order mark opening the file is dropped (as
Python's "utf-8-sig" does). A line that cannot be a record (not UTF-8, not
JSON, no text, a lone surrogate) is a BadRecord: read_part raises it, or hands
it to `on_bad` and goes on.

Planning records each part's byte offset and first line, so a worker reads
its part with one seek instead of re-reading the shard from the start.
"""
import codecs
import glob
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from ..errors import Errors

GLOB_CHARS = re.compile(r"[*?[]")


class BadRecord(ValueError):
    """A line that cannot be a record: its catalogued message, plus the short
    reason apply's errors file gives next to its file and line."""

    def __init__(self, message: str, reason: str = ""):  # one argument: unpickled from a worker process
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Shard:
    index: int     # position in the sorted input list: gives output names their order
    path: str      # absolute, so workers in other processes (or nodes) find it
    key: str       # path relative to the input root, used in ids and part names
    kind: str      # "jsonl", "text" or "spacy"


@dataclass(frozen=True)
class Part:
    shard_index: int
    path: str
    key: str
    kind: str
    index: int     # part number within the shard
    start: int     # first record (0-based) within the shard
    count: int     # number of records
    offset: int = 0  # byte offset of the first record (jsonl, text)
    line: int = 1    # 1-based line number of the first record (jsonl, text)

    @property
    def name(self) -> str:
        """Output file stem: sorts in input order, unique per (shard, part)."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.key)[-60:]
        digest = hashlib.sha1(self.key.encode("utf8")).hexdigest()[:8]
        return f"{self.shard_index:05d}-{safe}-{digest}.{self.index:05d}"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Part":
        return cls(**{k: (v if k in ("path", "key", "kind") else int(v)) for k, v in data.items()})


def kind_of(path: Path) -> str:
    return {".jsonl": "jsonl", ".spacy": "spacy"}.get(path.suffix.lower(), "text")


def find_shards(input_path: Union[str, Path]) -> List[Shard]:
    """A file, a directory (walked recursively, hidden entries skipped) or a glob."""
    text = str(input_path)
    if GLOB_CHARS.search(text) and not Path(text).exists():
        root = Path(_glob_root(text))
        matches = [Path(p) for p in glob.glob(text, recursive=True)]
    else:
        root = Path(text)
        matches = [root]
    files: List[Path] = []
    for match in matches:
        files.extend(_walk(match))
    if not files:
        raise ValueError(Errors.E304.format(path=text))
    root = root.resolve()
    keyed = []
    for f in sorted(set(p.resolve() for p in files)):
        key = f.name if f == root or not _is_under(f, root) else f.relative_to(root).as_posix()
        keyed.append((key, f))
    keyed.sort()
    return [Shard(i, str(f), key, kind_of(f)) for i, (key, f) in enumerate(keyed)]


def _glob_root(pattern: str) -> str:
    parts = []
    for part in Path(pattern).parts:
        if GLOB_CHARS.search(part):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "."


def _walk(path: Path) -> List[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return found


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return root.is_dir()
    except ValueError:
        return False


def plan_parts(shard: Shard, part_size: int) -> Tuple[int, List[Part]]:
    """Count a shard's records and cut them into parts of `part_size`."""
    if shard.kind == "spacy":
        n = _count_docbin(shard.path)
        return n, [Part(shard.index, shard.path, shard.key, shard.kind, i, start, min(part_size, n - start))
                   for i, start in enumerate(range(0, n, part_size))]
    parts: List[Part] = []
    n = 0
    offset = 0
    try:
        with open(shard.path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if _without_bom(raw, lineno).strip():
                    if n % part_size == 0:
                        parts.append(Part(shard.index, shard.path, shard.key, shard.kind, len(parts), n,
                                          0, offset, lineno))
                    n += 1
                offset += len(raw)
    except OSError as err:
        raise ValueError(Errors.E301.format(path=shard.path, err=err)) from err
    parts = [_with_count(p, min(part_size, n - p.start)) for p in parts]
    return n, parts


def _with_count(part: Part, count: int) -> Part:
    data = part.to_dict()
    data["count"] = count
    return Part(**data)


def _count_docbin(path: str) -> int:
    from spacy.tokens import DocBin

    try:
        return len(DocBin().from_disk(path))
    except Exception as err:  # noqa: BLE001  (any unreadable file: say which)
        raise ValueError(Errors.E301.format(path=path, err=err)) from err


def read_part(part: Part, text_key: str, id_key: str, vocab=None,
              on_bad: Optional[Callable[[int, str], None]] = None) -> Iterator[Tuple[Any, Any]]:
    """(id, text) for JSONL and text parts, (id, Doc) for .spacy parts.
    A bad record raises BadRecord, or, given on_bad, is passed to
    on_bad(line, reason) and skipped."""
    if part.kind == "spacy":
        yield from _read_docbin_part(part, vocab)
        return
    with open(part.path, "rb") as f:
        f.seek(part.offset)
        lineno = part.line - 1
        done = 0
        for raw in f:
            lineno += 1
            raw = _without_bom(raw, lineno)
            if not raw.strip():
                continue
            if done == part.count:
                break
            done += 1
            try:
                yield _record(raw, part, lineno, text_key, id_key)
            except BadRecord as bad:
                if on_bad is None:
                    raise
                on_bad(lineno, bad.reason)
    if done != part.count:
        raise ValueError(Errors.E350.format(path=part.path, why=f"part {part.index} expected {part.count} "
                                            f"records from line {part.line}, found {done}"))


def _without_bom(raw: bytes, lineno: int) -> bytes:
    return raw[len(codecs.BOM_UTF8):] if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else raw


def _record(raw: bytes, part: Part, lineno: int, text_key: str, id_key: str) -> Tuple[Any, str]:
    try:
        line = raw.decode("utf8").rstrip("\r\n")
    except UnicodeDecodeError as err:
        why = f"not UTF-8 ({err.reason} at byte {err.start + 1} of the line)"
        raise BadRecord(Errors.E308.format(line=lineno, path=part.path, why=why), why) from None
    default_id = f"{part.key}:{lineno}"
    if part.kind == "text":
        return default_id, line
    try:
        record = json.loads(line)
    except ValueError as err:
        raise BadRecord(Errors.E302.format(line=lineno, path=part.path, why=err), f"not JSON ({err})") from None
    if not isinstance(record, dict) or not isinstance(record.get(text_key), str):
        raise BadRecord(Errors.E354.format(line=lineno, path=part.path, key=text_key),
                        f"no text under the key '{text_key}'")
    record_id = record.get(id_key, default_id)
    for what, value in (("text", record[text_key]), ("id", record_id)):
        # JSON's "\ud800" escapes decode to lone surrogates, which no UTF-8
        # writer (tokenizer, output file) accepts.
        try:
            json.dumps(value, ensure_ascii=False).encode("utf8")
        except UnicodeEncodeError as err:
            why = f"its {what} holds a lone surrogate {err.object[err.start]!a}"
            raise BadRecord(Errors.E308.format(line=lineno, path=part.path, why=why), why) from None
    return record_id, record[text_key]


def _read_docbin_part(part: Part, vocab) -> Iterator[Tuple[Any, Any]]:
    from spacy.tokens import DocBin

    docs = DocBin().from_disk(part.path).get_docs(vocab)
    for position, doc in enumerate(docs, start=1):
        if position <= part.start:
            continue
        if position > part.start + part.count:
            break
        yield doc.user_data.get("id", f"{part.key}:{position}"), doc
