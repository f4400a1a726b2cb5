import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import spacy
import pytest
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app
from spacy_gptbert.training.convert import parse_label_names, read_trec, read_tsv

from ..conftest import SHARED, build_tiny_bert

REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()


def _docs(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def test_sst2_tsv(tmp_path):
    src = tmp_path / "train.tsv"
    src.write_text("sentence\tlabel\na fine film \t1\nawful \t0\n", encoding="utf8")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out.spacy"), "--format", "sst2"])
    assert result.exit_code == 0, result.output
    docs = _docs(tmp_path / "out.spacy")
    assert [d.cats for d in docs] == [{"NEGATIVE": 0.0, "POSITIVE": 1.0}, {"NEGATIVE": 1.0, "POSITIVE": 0.0}]


def test_multilabel_tsv_and_split(tmp_path):
    src = tmp_path / "ml.tsv"
    rows = ["text\ttags"] + [f"doc {i}\t{'a,b' if i % 2 else 'b'}" for i in range(10)]
    src.write_text("\n".join(rows) + "\n", encoding="utf8")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "tr.spacy"), "--format", "tsv",
                                 "--text-column", "text", "--label-column", "tags",
                                 "--dev-output", str(tmp_path / "dev.spacy"), "--dev-fraction", "0.2"])
    assert result.exit_code == 0, result.output
    train, dev = _docs(tmp_path / "tr.spacy"), _docs(tmp_path / "dev.spacy")
    assert len(train) == 8 and len(dev) == 2
    assert {tuple(sorted(d.cats.items())) for d in train + dev} == {
        (("a", 1.0), ("b", 1.0)), (("a", 0.0), ("b", 1.0))}


def test_fixed_labels_give_every_file_one_label_set(tmp_path):
    src = tmp_path / "test.tsv"
    src.write_text("sentence\tlabel\nwho ?\tHUM\nwhere ?\tLOC,LOC_city\n", encoding="utf8")
    out = tmp_path / "test.spacy"
    result = runner.invoke(app, ["convert", str(src), str(out), "--format", "tsv",
                                 "--labels", "LOC_city,HUM,LOC,NUM"])
    assert result.exit_code == 0, result.output
    # NUM is in no row of this file, yet every doc has it, in the given order
    assert [list(d.cats.items()) for d in _docs(out)] == [
        [("LOC_city", 0.0), ("HUM", 1.0), ("LOC", 0.0), ("NUM", 0.0)],
        [("LOC_city", 1.0), ("HUM", 0.0), ("LOC", 1.0), ("NUM", 0.0)]]
    result = runner.invoke(app, ["convert", str(src), str(out), "--format", "tsv", "--labels", "HUM,NUM"])
    assert result.exit_code == 1 and "E305" in result.output and "'LOC'" in result.output


def test_trec(tmp_path):
    src = tmp_path / "t.label"
    src.write_bytes("NUM:date When was it ?\nLOC:city Where is Caf\xe9 Rouge ?\n".encode("latin-1"))
    records = list(read_trec(src))
    assert records == [("When was it ?", ["NUM"]), ("Where is Caf\u00e9 Rouge ?", ["LOC"])]
    assert list(read_trec(src, fine=True))[0][1] == ["NUM:date"]


def test_shared_sst2_dev_reads(tmp_path):
    records = list(read_tsv(SHARED / "sst2" / "dev.tsv"))
    assert len(records) == 872


def test_bad_inputs(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nx\t1\n")
    with pytest.raises(ValueError, match="E302"):
        list(read_tsv(bad))  # no 'sentence' column
    with pytest.raises(OSError, match="E301"):
        list(read_tsv(tmp_path / "missing.tsv"))
    trec = tmp_path / "t.label"
    trec.write_text("nolabel\n")
    with pytest.raises(ValueError, match="E302"):
        list(read_trec(trec))
    result = runner.invoke(app, ["convert", str(bad), str(tmp_path / "o.spacy"), "--format", "xml"])
    assert result.exit_code == 1 and "E303" in result.output


# -- --label-names: the relabelling E117 advises -----------------------------


def test_label_names_rename_raw_labels(tmp_path):
    src = tmp_path / "ml.tsv"
    src.write_text("text\ttags\nfine\t1\nbad\t0\nboth\t0,1\nneither\t2\n", encoding="utf8")
    out = tmp_path / "out.spacy"
    result = runner.invoke(app, ["convert", str(src), str(out), "--format", "tsv", "--text-column", "text",
                                 "--label-column", "tags", "--label-names", "0=NEGATIVE, 1=POSITIVE",
                                 "--labels", "POSITIVE,NEGATIVE,2"])
    assert result.exit_code == 0, result.output
    assert [list(d.cats.items()) for d in _docs(out)] == [  # '2' is not renamed: it keeps its name
        [("POSITIVE", 1.0), ("NEGATIVE", 0.0), ("2", 0.0)], [("POSITIVE", 0.0), ("NEGATIVE", 1.0), ("2", 0.0)],
        [("POSITIVE", 1.0), ("NEGATIVE", 1.0), ("2", 0.0)], [("POSITIVE", 0.0), ("NEGATIVE", 0.0), ("2", 1.0)]]
    # sst2's own names give way to --label-names; trec takes them too
    sst2 = tmp_path / "sst2.tsv"
    sst2.write_text("sentence\tlabel\ngood\t1\n", encoding="utf8")
    result = runner.invoke(app, ["convert", str(sst2), str(out), "--label-names", "0=neg,1=pos"])
    assert result.exit_code == 0, result.output
    assert [d.cats for d in _docs(out)] == [{"pos": 1.0}]
    trec = tmp_path / "t.label"
    trec.write_bytes(b"NUM:date When ?\nLOC:city Where ?\n")
    assert list(read_trec(trec, label_names={"NUM": "numeric"})) == [("When ?", ["numeric"]), ("Where ?", ["LOC"])]


def test_label_names_errors_are_catalogued(tmp_path):
    assert parse_label_names("0=NEGATIVE,1=POSITIVE,") == {"0": "NEGATIVE", "1": "POSITIVE"}
    for bad in ("0:NEGATIVE", "=POSITIVE", "0="):
        with pytest.raises(ValueError, match=rf"\[E309\] Invalid --label-names item '{bad}'"):
            parse_label_names(bad)
    src = tmp_path / "in.tsv"
    src.write_text("sentence\tlabel\ngood\t1\n", encoding="utf8")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.spacy"), "--label-names", "0-neg"])
    assert result.exit_code == 1 and "E309" in result.output


def test_tsv_with_byte_order_mark_and_bad_bytes(tmp_path):
    src = tmp_path / "bom.tsv"
    src.write_bytes(b"\xef\xbb\xbfsentence\tlabel\ngood\t1\n")
    assert list(read_tsv(src)) == [("good", ["1"])]
    src.write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(ValueError, match=r"\[E301\].*save it as UTF-8"):
        list(read_tsv(src))


def test_e117_advice_runs_as_written(tmp_path):
    """A fine-tuned SST-2 head (NEGATIVE/POSITIVE) and data labelled 0/1:
    E117 names a command; run exactly as written (in the data's folder), it
    converts the data to labels the head has."""
    from spacy.training import Example

    model = build_tiny_bert(tmp_path / "sst2-head", seq_cls_labels=["NEGATIVE", "POSITIVE"])
    lines = (SHARED / "sst2" / "dev.tsv").read_text(encoding="utf8").splitlines()[:7]
    (tmp_path / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf8")
    raw = tmp_path / "raw.spacy"
    assert runner.invoke(app, ["convert", str(tmp_path / "train.tsv"), str(raw), "--format", "tsv"]).exit_code == 0

    def initialize(path):
        nlp = spacy.blank("en")
        nlp.add_pipe("bert_textcat", config={"model": {
            "@architectures": "spacy-gptbert.HFSequenceClassifier.v1", "name": str(model)}})
        examples = [Example.from_dict(nlp.make_doc(d.text), {"cats": d.cats}) for d in _docs(path)]
        nlp.initialize(lambda: examples)
        return examples

    with pytest.raises(ValueError, match=r"E117.*\['0', '1'\]") as err:
        initialize(raw)
    (command,) = re.findall(r"`([^`]*)`", str(err.value))
    assert command.startswith("python -m spacy_gptbert convert ")
    argv = [sys.executable] + shlex.split(command)[1:]
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1")
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    examples = initialize(tmp_path / "train.spacy")
    assert [eg.reference.cats for eg in examples] == [
        {"NEGATIVE": 0.0, "POSITIVE": 1.0}, {"NEGATIVE": 1.0, "POSITIVE": 0.0},
        {"NEGATIVE": 0.0, "POSITIVE": 1.0}, {"NEGATIVE": 0.0, "POSITIVE": 1.0},
        {"NEGATIVE": 1.0, "POSITIVE": 0.0}, {"NEGATIVE": 0.0, "POSITIVE": 1.0}]
