"""apply's output does not depend on --batch-size: a seeded sampling
generator draws each doc from its own stream, so batches of 32 or 8, and a
resume with yet another batch size, give the same records."""
import json

import pytest
import spacy

from spacy_gptbert.scaleout import ApplySettings, apply

from ..conftest import CORPUS
from .conftest import read_jsonl_output

N_RECORDS = 48


@pytest.fixture(scope="module")
def sampling_pipeline(pipeline_dir, tmp_path_factory) -> str:
    """The tiny pipeline with a seeded sampling generator (random weights:
    nearly every draw differs from every other)."""
    nlp = spacy.load(pipeline_dir, config={"components": {"gpt_generator": {"do_sample": True, "seed": 7}}})
    path = tmp_path_factory.mktemp("sampling") / "nlp"
    nlp.to_disk(path)
    return str(path)


@pytest.fixture
def records(tmp_path):
    path = tmp_path / "in.jsonl"
    # Texts of many lengths, so that each batch pads them differently.
    texts = [f"{i} " + " ".join([CORPUS[i % len(CORPUS)]] * (1 + i % 2)) for i in range(N_RECORDS)]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf8")
    return path


def run(pipeline, records, out, batch_size, **kw):
    apply(records, out, ApplySettings(pipeline=pipeline, batch_size=batch_size, part_size=16), progress=False, **kw)
    return read_jsonl_output(out)


def assert_same_records(got, expected):
    assert [r["id"] for r in got] == list(range(N_RECORDS))
    assert [r["generation"] for r in got] == [r["generation"] for r in expected]
    for a, b in zip(got, expected):
        assert a["cats"] == pytest.approx(b["cats"], abs=1e-5)


def test_batch_size_does_not_change_generations_or_cats(sampling_pipeline, records, tmp_path):
    by_32 = run(sampling_pipeline, records, tmp_path / "b32", 32)
    by_8 = run(sampling_pipeline, records, tmp_path / "b8", 8)
    assert_same_records(by_8, by_32)
    assert len({r["generation"] for r in by_32}) > N_RECORDS * 0.9  # really sampled, one draw per doc
    # ... and each doc alone gives the same generation.
    nlp = spacy.load(sampling_pipeline)
    assert [nlp(r["text"])._.generation for r in by_32[:5]] == [r["generation"] for r in by_32[:5]]


def test_resume_with_another_batch_size_gives_the_uninterrupted_output(sampling_pipeline, records, tmp_path):
    whole = run(sampling_pipeline, records, tmp_path / "whole", 32)
    done = []

    def stop_after_one(part, n_docs):
        done.append(part)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(sampling_pipeline, records, tmp_path / "resumed", 8, on_part=stop_after_one)
    assert len(done) == 1
    resumed = run(sampling_pipeline, records, tmp_path / "resumed", 3)
    assert_same_records(resumed, whole)
