import spacy
import pytest
from spacy.tokens import DocBin
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app
from spacy_gptbert.training.convert import read_trec, read_tsv

from ..conftest import SHARED

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
