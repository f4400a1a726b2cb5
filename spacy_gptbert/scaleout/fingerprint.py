"""What a pipeline is, as one digest of its files (config, meta, vocab,
weights): a resumed run must apply the same model as the run that wrote the
finished parts. The path alone says nothing: a config edited, or a model
retrained into the same `model-best`, keeps it. Where the pipeline is stored
does not matter: a copy at another path has the same digest."""
import hashlib
import json
import os
from pathlib import Path
from typing import Dict

from ..errors import Errors

CHUNK_BYTES = 1 << 20


def pipeline_directory(pipeline: str) -> Path:
    """The directory spacy.load reads: the path itself, or the data directory
    of an installed pipeline package."""
    path = Path(pipeline)
    if path.exists():
        return path.resolve()
    from spacy.util import get_package_path, is_package

    if not is_package(pipeline):
        raise ValueError(Errors.E307.format(pipeline=pipeline))
    package = get_package_path(pipeline)
    # As spacy.util.load_model_from_init_py finds it: <lang>_<name>-<version>.
    try:
        meta = json.loads((package / "meta.json").read_text(encoding="utf8"))
        data = package / f"{meta['lang']}_{meta['name']}-{meta['version']}"
    except (OSError, ValueError, KeyError):
        return package
    return data if data.is_dir() else package


def pipeline_fingerprint(directory: Path) -> str:
    """sha256 over every file under `directory`: its relative path, size and
    bytes, in sorted order (hidden files and Python caches left out)."""
    digest = hashlib.sha256()
    for path in _files(directory):
        digest.update(path.relative_to(directory).as_posix().encode("utf8") + b"\0")
        digest.update(path.stat().st_size.to_bytes(8, "little"))
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
                digest.update(chunk)
    return digest.hexdigest()


def describe_pipeline(pipeline: str) -> Dict[str, str]:
    """What the manifest records about the pipeline of a run."""
    directory = pipeline_directory(pipeline)
    return {"path": str(directory), "sha256": pipeline_fingerprint(directory)}


def _files(directory: Path):
    found = []
    # followlinks: a Hugging Face cache links weight files and snapshot folders
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        found.extend(Path(dirpath) / f for f in filenames if not f.startswith(".") and not f.endswith(".pyc"))
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())
