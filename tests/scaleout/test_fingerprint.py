"""A resumed apply runs the pipeline its output was started with: the
manifest holds a digest of the pipeline's files, a resume with other config
or weights stops with E306, --overwrite starts over."""
import json
import shutil

import pytest
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app
from spacy_gptbert.scaleout import ApplySettings, apply
from spacy_gptbert.scaleout.fingerprint import describe_pipeline, pipeline_directory, pipeline_fingerprint
from spacy_gptbert.scaleout.outputs import MANIFEST

from .conftest import part_bytes, read_jsonl_output
from .test_inputs import EXPECTED_IDS


def settings(pipeline, **kw):
    return ApplySettings(pipeline=str(pipeline), part_size=3, batch_size=4, **kw)


def stop_after(n_parts):
    done = []

    def on_part(part, n_docs):
        done.append(part)
        if len(done) == n_parts:
            raise KeyboardInterrupt  # as Ctrl-C between parts

    return on_part


def test_fingerprint_follows_content_not_path(pipeline_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(pipeline_dir, copy)
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"cache")
    (copy / ".DS_Store").write_bytes(b"finder")
    assert pipeline_fingerprint(copy) == pipeline_fingerprint(pipeline_dir)
    weights = copy / "gpt_generator" / "hf_0" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    weights.write_bytes(bytes(data))
    assert pipeline_fingerprint(copy) != pipeline_fingerprint(pipeline_dir)
    assert describe_pipeline(str(copy))["path"] == str(copy.resolve())


def test_installed_package_is_read_from_its_data_directory(pipeline_dir, tmp_path, monkeypatch):
    site = tmp_path / "site"
    package = site / "en_fake_pipe"
    shutil.copytree(pipeline_dir, package / "en_fake_pipe-0.0.1")
    (package / "__init__.py").write_text("")
    (package / "meta.json").write_text(json.dumps({"lang": "en", "name": "fake_pipe", "version": "0.0.1"}))
    dist = site / "en_fake_pipe-0.0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: en_fake_pipe\nVersion: 0.0.1\n")
    monkeypatch.syspath_prepend(str(site))
    assert pipeline_directory("en_fake_pipe") == package / "en_fake_pipe-0.0.1"
    assert describe_pipeline("en_fake_pipe")["sha256"] == pipeline_fingerprint(pipeline_dir)
    with pytest.raises(ValueError, match=r"\[E307\] The pipeline 'no_such_pipe_xyz'"):
        pipeline_directory("no_such_pipe_xyz")


def test_resume_with_another_pipeline_stops_and_overwrite_starts_over(pipeline_dir, corpus, tmp_path):
    pipe = tmp_path / "model-best"
    shutil.copytree(pipeline_dir, pipe)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        apply(corpus, out, settings(pipe), progress=False, on_part=stop_after(2))
    finished_before = part_bytes(out)
    manifest = json.loads((out / MANIFEST).read_text())
    before = manifest["pipeline"]
    assert before == {"path": str(pipe.resolve()), "sha256": pipeline_fingerprint(pipe)}
    # "Retrain into the same model-best": another config under the same path.
    config = pipe / "config.cfg"
    config.write_text(config.read_text().replace("max_new_tokens = 3", "max_new_tokens = 2"))
    now = pipeline_fingerprint(pipe)
    assert now != before["sha256"]
    with pytest.raises(ValueError, match=r"\[E306\]") as err:
        apply(corpus, out, settings(pipe), progress=False)
    message = str(err.value)
    assert f"(sha256 {before['sha256']}) then" in message and f"(sha256 {now}) now" in message
    assert str(pipe.resolve()) in message and "--overwrite" in message
    assert part_bytes(out) == finished_before  # nothing was mixed in
    # --overwrite: every part from the new pipeline, as a fresh run gives.
    apply(corpus, out, settings(pipe), overwrite=True, progress=False)
    apply(corpus, tmp_path / "fresh", settings(pipe), progress=False)
    assert part_bytes(out) == part_bytes(tmp_path / "fresh")
    assert json.loads((out / MANIFEST).read_text())["pipeline"]["sha256"] == now


def test_resume_with_the_same_pipeline_elsewhere_is_byte_identical(pipeline_dir, corpus, tmp_path):
    apply(corpus, tmp_path / "whole", settings(pipeline_dir), progress=False)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        apply(corpus, out, settings(pipeline_dir), progress=False, on_part=stop_after(3))
    moved = tmp_path / "moved"
    shutil.copytree(pipeline_dir, moved)
    result = apply(corpus, out, settings(moved), progress=False)
    assert result.skipped_parts == 3
    assert part_bytes(out) == part_bytes(tmp_path / "whole")
    assert [r["id"] for r in read_jsonl_output(out)] == EXPECTED_IDS


def test_cli_names_the_pipelines_and_overwrite_starts_over(pipeline_dir, corpus, tmp_path):
    pipe = tmp_path / "model-best"
    shutil.copytree(pipeline_dir, pipe)
    out = tmp_path / "out"
    args = ["apply", str(pipe), str(corpus), str(out), "--part-size", "3"]
    assert CliRunner().invoke(app, args).exit_code == 0
    config = pipe / "config.cfg"
    config.write_text(config.read_text().replace("max_new_tokens = 3", "max_new_tokens = 2"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "E306" in result.output, result.output
    result = CliRunner().invoke(app, args + ["--overwrite"])
    assert result.exit_code == 0, result.output
    assert "22 docs in 9 parts" in result.output and "0 parts skipped" in result.output
