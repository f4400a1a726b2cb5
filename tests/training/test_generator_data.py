"""generator_data's TSV input goes through convert's one TSV reader and
label-name parser: the same header, BOM handling, label names and errors."""
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_gptbert.training import convert, generator_data


def _docs(path):
    return list(DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def test_one_tsv_reader_and_one_label_names_parser():
    assert generator_data.read_tsv is convert.read_tsv
    assert generator_data.parse_label_names is convert.parse_label_names


def test_tsv_reads_as_convert_reads_it_with_texts_stripped(tmp_path):
    src = tmp_path / "train.tsv"
    src.write_bytes(b"\xef\xbb\xbfsentence\tlabel\nfun \t1\na dull , lifeless film \t0\nthe best film of the year\t1\n")
    out = tmp_path / "gen.spacy"
    generator_data.main(["tsv", str(src), str(out), "--label-names", "0=negative,1=positive", "--min-words", "2"])
    assert [(d.text, d.cats) for d in _docs(out)] == [
        ("a dull , lifeless film", {"negative": 1.0, "positive": 0.0}),
        ("the best film of the year", {"negative": 0.0, "positive": 1.0})]
    assert generator_data.convert("tsv", src, out, limit=1) == {"docs": 1}
    assert [(d.text, d.cats) for d in _docs(out)] == [("fun", {"1": 1.0})]  # labels of the kept rows


def test_tsv_errors_are_convert_s(tmp_path):
    src = tmp_path / "headerless.tsv"
    src.write_text("fun\t1\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"\[E302\] Line 1 .*no column 'sentence' in the header \['fun', '1'\]"):
        generator_data.convert("tsv", src, tmp_path / "o.spacy")
    with pytest.raises(ValueError, match=r"\[E309\] Invalid --label-names item '0'"):
        generator_data.main(["tsv", str(src), str(tmp_path / "o.spacy"), "--label-names", "0"])


@pytest.mark.parametrize("dev_fraction", [-0.1, 1.0])
def test_bad_dev_fraction_has_its_own_code(dev_fraction):
    from spacy_gptbert.training.generator_data import split_train_dev

    with pytest.raises(ValueError, match=r"E122.*dev_fraction"):
        split_train_dev("one\ntwo\n", dev_fraction)
