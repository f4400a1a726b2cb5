"""One bad record does not stop apply: records that are not UTF-8, not
JSON, without text, or with a lone surrogate go to OUTPUT/errors.tsv with
their file and line, and the run goes on; --strict makes them fatal (E308
and the other catalogued errors name file and line). A UTF-8 byte order
mark opening a file is read as utf-8-sig reads it."""
import codecs
import json
import pickle

import pytest
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app
from spacy_gptbert.scaleout import ApplySettings, apply
from spacy_gptbert.scaleout.inputs import BadRecord, find_shards, plan_parts, read_part

from .conftest import read_jsonl_output

BOM = codecs.BOM_UTF8


def write_bad_corpus(root):
    root.mkdir()
    lines = [
        json.dumps({"id": "ok-1", "text": "a good movie"}).encode(),
        b'{"id": "lone", "text": "lone \\ud800 surrogate"}',                # JSON escape of a lone surrogate
        b'{"id": "latin1", "text": "caf\xe9"}',                             # not UTF-8
        json.dumps({"id": "ok-2", "text": "what a wonderful surprise !"}).encode(),
        b"{broken",
        json.dumps({"id": "no-text", "body": "x"}).encode(),
        json.dumps({"id": "ok-3", "text": "i hated the ending"}).encode(),
    ]
    (root / "a.jsonl").write_bytes(BOM + b"\n".join(lines) + b"\n")
    (root / "b.txt").write_bytes(BOM + b"first line\nsecond \xff line\nthird line\n")
    return root


REASONS = {  # (file, line) -> the reason errors.tsv gives
    ("a.jsonl", 2): "its text holds a lone surrogate '\\ud800'",
    ("a.jsonl", 3): "not UTF-8 (invalid continuation byte at byte 30 of the line)",
    ("a.jsonl", 5): "not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
    ("a.jsonl", 6): "no text under the key 'text'",
    ("b.txt", 2): "not UTF-8 (invalid start byte at byte 8 of the line)",
}


def errors_rows(out):
    header, *rows = (out / "errors.tsv").read_text(encoding="utf8").splitlines()
    assert header == "file\tline\treason"
    return [row.split("\t") for row in rows]


def test_bad_records_go_to_errors_file_and_the_run_goes_on(pipeline_dir, tmp_path):
    corpus = write_bad_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    settings = ApplySettings(pipeline=pipeline_dir, part_size=2)
    result = apply(corpus, out, settings, progress=False)
    records = read_jsonl_output(out)
    assert [(r["id"], r["text"]) for r in records] == [
        ("ok-1", "a good movie"), ("ok-2", "what a wonderful surprise !"), ("ok-3", "i hated the ending"),
        ("b.txt:1", "first line"), ("b.txt:3", "third line")]  # the BOM is not part of the first text
    assert (result.n_records, result.bad_records, result.processed_records) == (5, 5, 10)
    rows = errors_rows(out)
    assert [(f, int(line)) for f, line, _ in rows] == [(str(corpus / k), n) for k, n in REASONS]
    assert [reason for _, _, reason in rows] == list(REASONS.values())
    # A resume (nothing to do) keeps the list; a rerun after --overwrite writes the same.
    before = (out / "errors.tsv").read_bytes()
    assert apply(corpus, out, settings, progress=False).bad_records == 5
    assert apply(corpus, out, settings, overwrite=True, progress=False).bad_records == 5
    assert (out / "errors.tsv").read_bytes() == before


def test_strict_stops_at_the_first_bad_record_with_file_and_line(pipeline_dir, tmp_path):
    corpus = write_bad_corpus(tmp_path / "corpus")
    settings = ApplySettings(pipeline=pipeline_dir, part_size=2, strict=True)
    with pytest.raises(ValueError, match=r"\[E308\] Line 2 of '.*a\.jsonl' is not a readable record: its text "
                                         r"holds a lone surrogate '\\ud800'"):
        apply(corpus, tmp_path / "out", settings, progress=False)
    assert not (tmp_path / "out" / "errors.tsv").exists()
    result = CliRunner().invoke(app, ["apply", pipeline_dir, str(corpus / "b.txt"), str(tmp_path / "cli"),
                                      "--strict"])
    assert result.exit_code == 1 and "E308" in result.output and "Line 2 of" in result.output, result.output
    result = CliRunner().invoke(app, ["apply", pipeline_dir, str(corpus / "b.txt"), str(tmp_path / "cli2")])
    assert result.exit_code == 0, result.output
    assert "1 bad records left out" in result.output and "errors.tsv" in result.output


def test_bom_opens_jsonl_and_text_as_utf8_sig(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(BOM + b'{"text": "first"}\n{"text": "second"}\n')
    (tmp_path / "b.txt").write_bytes(BOM + "ünï line\n".encode() + BOM + b"second keeps its mark\n")
    (tmp_path / "c.txt").write_bytes(BOM + b"\nafter a line holding only the mark\n")
    got = {}
    for shard in find_shards(tmp_path):
        n, parts = plan_parts(shard, 1)
        got[shard.key] = [record for part in parts for record in read_part(part, "text", "id")]
        assert n == len(got[shard.key])
    assert got == {
        "a.jsonl": [("a.jsonl:1", "first"), ("a.jsonl:2", "second")],
        "b.txt": [("b.txt:1", "ünï line"), ("b.txt:2", "\ufeffsecond keeps its mark")],  # only the file's first
        "c.txt": [("c.txt:2", "after a line holding only the mark")],
    }


def test_bad_record_survives_a_worker_process():
    """Raised in a local worker process, it reaches the driver whole."""
    bad = pickle.loads(pickle.dumps(BadRecord("[E308] Line 2 ...", "not UTF-8")))
    assert (str(bad), bad.reason) == ("[E308] Line 2 ...", "not UTF-8")
