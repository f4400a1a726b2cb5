"""A tiny model shipped the way all-mpnet-base-v2 is on PyPI: a zip of its
directory split into pieces, each in the wheel of its own package, served
from a local --find-links folder (no network)."""
import hashlib
import io
import shutil
import zipfile
from pathlib import Path
from typing import Dict, List

from spacy_gptbert.models.downloads import ModelFile, SplitZipModel, ZipPart

from ..conftest import HF_TINY

VERSION = "0.0.1"
REVISION = "0123456789abcdef0123456789abcdef01234567"
REPO_ID = "test-org/tiny-split"
MODEL_FILES = ["config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json",
               "tokenizer_config.json", "vocab.txt", "pooling/config.json"]
# in the zip but never installed: a stray and a pickle
EXTRA_FILES = {"desktop.ini": b"[.ShellClassInfo]\n", "pooling/desktop.ini": b"[.ShellClassInfo]\n",
               "pytorch_model.bin": b"\x80\x04not really a pickle"}


def model_dir(tmp_path: Path) -> Path:
    """bert_tiniest with a nested file (sentence-transformers' 1_Pooling is one)."""
    path = tmp_path / "tiny-split"
    shutil.copytree(HF_TINY / "bert_tiniest", path)
    (path / "generation_config.json").unlink()
    (path / "pooling").mkdir()
    (path / "pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}\n')
    for rel, data in EXTRA_FILES.items():
        (path / rel).write_bytes(data)
    for p in path.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return path


def zip_bytes(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            archive.write(path, f"{directory.name}/{path.relative_to(directory).as_posix()}")
    return buffer.getvalue()


def part_member(i: int) -> str:
    return f"tiny_split_part_{i:03d}/input/tiny-split.zip.{i:03d}"


def write_wheel(folder: Path, package: str, member: str, data: bytes) -> Path:
    dist = package.replace("-", "_")
    path = folder / f"{dist}-{VERSION}-py3-none-any.whl"
    info = f"{dist}-{VERSION}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(member, data)
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {VERSION}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(tmp_path: Path, n_parts: int = 2) -> Dict:
    """Wheels in tmp_path/'wheels' and the SplitZipModel entry that matches them."""
    directory = model_dir(tmp_path)
    data = zip_bytes(directory)
    size = -(-len(data) // n_parts)
    pieces: List[bytes] = [data[i * size:(i + 1) * size] for i in range(n_parts)]
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    parts = []
    for i, piece in enumerate(pieces, 1):
        package = f"tiny-split-part-{i:03d}"
        write_wheel(wheels, package, part_member(i), piece)
        parts.append(ZipPart(package, part_member(i), sha256(piece), len(piece)))
    files = {rel: ModelFile(sha256((directory / rel).read_bytes()), (directory / rel).stat().st_size)
             for rel in MODEL_FILES}
    model = SplitZipModel(name="tiny-split", repo_id=REPO_ID, revision=REVISION, version=VERSION,
                          parts=tuple(parts), zip_sha256=sha256(data), zip_root="tiny-split/", files=files,
                          aliases=("tiny-split-alias",), license="MIT", description="a test model")
    return {"model": model, "wheels": wheels, "dir": directory, "pieces": pieces}


def pip_options(wheels: Path) -> List[str]:
    return [f"--find-links={wheels}", "--no-index"]
