"""Finding shards, cutting them into parts, reading a part back: every
record lands in exactly one part, with a stable id."""
import json

import pytest
import spacy

from spacy_gptbert.scaleout.inputs import find_shards, plan_parts, read_part

from .conftest import write_corpus

EXPECTED_IDS = (
    # a.jsonl: no id on every third record -> file:line; line 6 is blank
    ["a.jsonl:1", "a-1", "a-2", "a.jsonl:4", "a-4", "a-5", "a.jsonl:8", "a-7", "a-8", "a.jsonl:11"]
    + ["c-0", "c.spacy:2", "c-2", "c.spacy:4", "c-4"]                      # .spacy: user_data id or position
    + ["sub/b.txt:1", "sub/b.txt:2", "sub/b.txt:3"] + [f"sub/b.txt:{n}" for n in (5, 6, 7, 8)]  # blank line 4
)


def all_ids(root, part_size):
    vocab = spacy.blank("en").vocab
    ids, parts = [], []
    for shard in find_shards(root):
        n, shard_parts = plan_parts(shard, part_size)
        assert sum(p.count for p in shard_parts) == n
        parts.extend(shard_parts)
        for part in shard_parts:
            got = list(read_part(part, "text", "id", vocab))
            assert len(got) == part.count
            ids.extend(i for i, _ in got)
    return ids, parts


@pytest.mark.parametrize("part_size", [1, 3, 4, 100])
def test_parts_cover_every_record_once(tmp_path, part_size):
    write_corpus(tmp_path / "corpus")
    ids, parts = all_ids(tmp_path / "corpus", part_size)
    assert ids == EXPECTED_IDS
    names = [p.name for p in parts]
    assert names == sorted(names) and len(set(names)) == len(names)  # file order = input order


def test_file_directory_and_glob(tmp_path):
    write_corpus(tmp_path / "corpus")
    assert [s.key for s in find_shards(tmp_path / "corpus")] == ["a.jsonl", "c.spacy", "sub/b.txt"]
    assert [s.key for s in find_shards(tmp_path / "corpus" / "sub" / "b.txt")] == ["b.txt"]
    assert [(s.key, s.kind) for s in find_shards(str(tmp_path / "corpus" / "*.jsonl"))] == [("a.jsonl", "jsonl")]
    assert [s.key for s in find_shards(str(tmp_path / "corpus" / "**" / "*.txt"))] == ["sub/b.txt"]
    with pytest.raises(ValueError, match=r"\[E304\]"):
        find_shards(str(tmp_path / "corpus" / "*.csv"))
    with pytest.raises(ValueError, match=r"\[E304\]"):
        find_shards(tmp_path / "missing")


def test_text_lines_keep_their_text(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("first line\n\n  indented ünï 😀\r\nlast without newline", encoding="utf8")
    (shard,) = find_shards(path)
    n, parts = plan_parts(shard, 2)
    assert n == 3 and [p.count for p in parts] == [2, 1]
    got = [r for p in parts for r in read_part(p, "text", "id")]
    assert got == [("t.txt:1", "first line"), ("t.txt:3", "  indented ünï 😀"), ("t.txt:4", "last without newline")]


def test_bad_jsonl_records(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n{broken\n")
    (shard,) = find_shards(path)
    _, parts = plan_parts(shard, 1)
    assert list(read_part(parts[0], "text", "id")) == [("bad.jsonl:1", "ok")]
    with pytest.raises(ValueError, match=r"\[E354\] Line 2"):
        list(read_part(parts[1], "text", "id"))
    with pytest.raises(ValueError, match=r"\[E302\] Line 3"):
        list(read_part(parts[2], "text", "id"))
    assert list(read_part(parts[1], "body", "id")) == [("bad.jsonl:2", "no text")]  # --text-key


def test_unreadable_spacy_file(tmp_path):
    path = tmp_path / "broken.spacy"
    path.write_bytes(b"not a docbin")
    (shard,) = find_shards(path)
    with pytest.raises(ValueError, match=r"\[E301\]"):
        plan_parts(shard, 10)
