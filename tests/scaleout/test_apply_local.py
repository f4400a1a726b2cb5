"""The apply driver with the local backend: records, formats, resuming,
refusing outputs of other runs, and a worker process that dies."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_gptbert.scaleout import ApplySettings, apply
from spacy_gptbert.scaleout.outputs import MANIFEST, iter_records, merge

from .conftest import HOOKS, part_bytes, pipeline_with, read_jsonl_output
from .test_inputs import EXPECTED_IDS


def settings(pipeline, **kw):
    kw.setdefault("part_size", 3)
    kw.setdefault("batch_size", 4)
    return ApplySettings(pipeline=pipeline, **kw)


def test_jsonl_records_carry_ids_cats_generations_vectors(pipeline_dir, corpus, tmp_path):
    result = apply(corpus, tmp_path / "out", settings(pipeline_dir, vectors=True), progress=False)
    assert (result.n_records, result.n_parts, result.skipped_parts, result.processed_records) == (22, 9, 0, 22)
    records = read_jsonl_output(tmp_path / "out")
    assert [r["id"] for r in records] == EXPECTED_IDS
    assert records == list(iter_records(tmp_path / "out"))
    nlp = spacy.load(pipeline_dir)
    width = nlp.get_pipe("bert_encoder").model.get_dim("nO")
    # The same docs through nlp directly: every output is the pipeline's own prediction.
    for record, doc in zip(records, nlp.pipe([r["text"] for r in records])):
        assert set(record["cats"]) == {"POS", "NEG"}
        assert record["cats"] == pytest.approx(doc.cats, abs=1e-5)
        assert record["generation"] == doc._.generation
        assert len(record["vector"]) == width
        assert record["vector"] == pytest.approx(doc.vector.tolist(), abs=1e-5)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["complete"] and manifest["n_records"] == 22


def test_spacy_output_and_merge(pipeline_dir, corpus, tmp_path):
    apply(corpus, tmp_path / "out", settings(pipeline_dir, output_format="spacy", vectors=True), progress=False)
    assert len(list((tmp_path / "out").glob("*.spacy"))) == 9
    n = merge(tmp_path / "out", tmp_path / "all.spacy")
    docs = list(DocBin().from_disk(tmp_path / "all.spacy").get_docs(spacy.blank("en").vocab))
    assert n == len(docs) == 22
    assert [d.user_data["id"] for d in docs] == EXPECTED_IDS
    assert all(set(d.cats) == {"POS", "NEG"} for d in docs)
    direct = list(spacy.load(pipeline_dir).pipe([d.text for d in docs]))
    assert [d._.generation for d in docs] == [d._.generation for d in direct]
    assert {len(d.user_data["vector"]) for d in docs} == {32}  # the tiny BERT's width
    assert all(d._.bert_pooled is None for d in docs)  # the encoder's arrays are not stored


def test_resume_redoes_only_missing_parts(pipeline_dir, corpus, tmp_path):
    out = tmp_path / "out"
    apply(corpus, out, settings(pipeline_dir), progress=False)
    before = part_bytes(out)
    parts = sorted(out.glob("*.jsonl"))
    parts[2].unlink()
    parts[7].unlink()
    (out / f".{parts[3].name}.deadbeef.tmp").write_text("half a part from a killed worker")
    logs = []
    result = apply(corpus, out, settings(pipeline_dir, batch_size=2), progress=False, log=logs.append)
    assert (result.skipped_parts, result.processed_records) == (7, 6)  # parts of 3 docs each
    assert "skipping 7 finished parts" in logs[0]
    assert part_bytes(out) == before  # the tmp file is gone, the redone parts are the same bytes
    assert [r["id"] for r in read_jsonl_output(out)] == EXPECTED_IDS
    # A complete output: nothing left to do.
    assert apply(corpus, out, settings(pipeline_dir), progress=False, log=logs.append).processed_records == 0


def test_refuses_outputs_it_cannot_resume(pipeline_dir, corpus, tmp_path):
    out = tmp_path / "out"
    apply(corpus, out, settings(pipeline_dir), progress=False)
    with pytest.raises(ValueError, match=r"\[E353\].*part_size"):
        apply(corpus, out, settings(pipeline_dir, part_size=5), progress=False)
    with pytest.raises(ValueError, match=r"\[E353\].*other input files"):
        apply(corpus / "a.jsonl", out, settings(pipeline_dir), progress=False)
    with open(corpus / "a.jsonl", "a") as f:
        f.write('{"text": "one more"}\n')
    with pytest.raises(ValueError, match=r"\[E350\]"):
        apply(corpus, out, settings(pipeline_dir), progress=False)
    result = apply(corpus, out, settings(pipeline_dir), overwrite=True, progress=False)
    assert result.n_records == 23 and result.skipped_parts == 0
    other = tmp_path / "not_an_output"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match=r"\[E353\].*no manifest.json"):
            apply(corpus, other, settings(pipeline_dir), overwrite=overwrite, progress=False)
    assert (other / "precious.txt").exists()


def test_setting_errors(pipeline_dir, corpus, tmp_path):
    with pytest.raises(ValueError, match=r"\[E351\]"):
        settings(pipeline_dir, output_format="csv")
    with pytest.raises(ValueError, match=r"\[E352\] Invalid setting part_size=0"):
        settings(pipeline_dir, part_size=0)
    with pytest.raises(ValueError, match=r"\[E356\]"):
        apply(corpus, tmp_path / "out", settings(pipeline_dir), backend="slurm")
    blank = tmp_path / "blank"
    spacy.blank("en").to_disk(blank)  # no encoder: docs have no vector
    with pytest.raises(ValueError, match=r"\[E355\]"):
        apply(corpus, tmp_path / "out", settings(str(blank), vectors=True), progress=False)
    with pytest.raises(ValueError, match=r"\[E359\]"):
        apply(corpus, tmp_path / "out2", settings(str(blank), code=str(tmp_path / "nope.py")), progress=False)


def test_core_package_does_not_import_ray():
    code = ("import sys, spacy_gptbert, spacy_gptbert.scaleout, spacy_gptbert.scaleout.local, "
            "spacy_gptbert.cli.app; assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ray_backend_without_ray_says_how_to_install(monkeypatch, corpus, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError, match=r"\[E357\].*spacy-gptbert\[ray\]"):
        apply(corpus, tmp_path / "out", settings("unused"), backend="ray")
    assert not (tmp_path / "out").exists()  # failed before touching the output


def test_worker_processes_match_in_process_and_survive_a_death(pipeline_dir, corpus, tmp_path):
    """n_process=2 gives the same bytes as one process. A worker that dies
    fails the run with E358, keeping finished parts; the re-run completes
    with one record per id."""
    apply(corpus, tmp_path / "one", settings(pipeline_dir), progress=False)
    marker = tmp_path / "crashed"
    crashing = pipeline_with(pipeline_dir, tmp_path / "crashing", "test_crash_once",
                             {"marker": str(marker), "after": 8})
    run = settings(crashing, code=str(HOOKS))
    with pytest.raises(RuntimeError, match=r"\[E358\]"):
        apply(corpus, tmp_path / "two", run, n_process=2, progress=False)
    assert marker.exists()
    result = apply(corpus, tmp_path / "two", run, progress=False)  # the re-run may use another backend
    assert result.skipped_parts >= 2  # the dying worker had finished two parts of 3 docs
    assert [r["id"] for r in read_jsonl_output(tmp_path / "two")] == EXPECTED_IDS
    assert part_bytes(tmp_path / "two") == part_bytes(tmp_path / "one")
