"""A tiny saved pipeline (encoder + classifier + generator, random weights)
and a small mixed corpus: JSONL with and without ids, plain text with blank
lines, and a .spacy file."""
import json
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import import_file

from ..conftest import CORPUS, build_tiny_bert

HOOKS = Path(__file__).with_name("apply_hooks.py")
TINY_GPT = {
    "@architectures": "spacy-gptbert.GPT.v1", "n_layer": 1, "n_head": 2, "n_embd": 32,
    "n_positions": 64, "vocab_size": 300, "min_frequency": 1, "seed": 0,
}
LABELS = ("POS", "NEG")


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """A 2-core machine shared with other work: tiny models gain nothing from threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _build_pipeline(bert_dir: str) -> spacy.Language:
    nlp = spacy.blank("en")
    window = {"name": bert_dir, "window": 32, "stride": 16}
    nlp.add_pipe("bert_encoder", config={"model": window})
    nlp.add_pipe("bert_textcat", config={"model": window})
    nlp.add_pipe("gpt_generator", config={"model": TINY_GPT, "prompt": "{label}: {text}", "max_new_tokens": 3})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i % 2), "NEG": float(1 - i % 2)}})
                for i, t in enumerate(CORPUS)]
    nlp.initialize(lambda: examples)
    return nlp


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("apply_pipeline")
    nlp = _build_pipeline(str(build_tiny_bert(root / "bert")))
    nlp.to_disk(root / "nlp")
    return str(root / "nlp")


def pipeline_with(pipeline_dir: str, target: Path, factory: str, config: dict) -> str:
    """The tiny pipeline plus one component from apply_hooks.py."""
    import_file("apply_hooks", str(HOOKS))
    nlp = spacy.load(pipeline_dir)
    nlp.add_pipe(factory, config=config, first=True)
    nlp.to_disk(target)
    return str(target)


def write_corpus(root: Path, n_jsonl: int = 10, n_text: int = 7, n_spacy: int = 5) -> int:
    """Writes three shards under root (plus a hidden file that must be
    ignored) and returns the number of records."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "a.jsonl", "w", encoding="utf8") as f:
        for i in range(n_jsonl):
            record = {"text": CORPUS[i % len(CORPUS)], "meta": i}
            if i % 3:  # every third record has no id: it gets a.jsonl:<line>
                record["id"] = f"a-{i}"
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            if i == 4:
                f.write("\n")  # a blank line is skipped, line numbers still count it
    sub = root / "sub"
    sub.mkdir(exist_ok=True)
    lines = [CORPUS[(i + 3) % len(CORPUS)] for i in range(n_text)]
    (sub / "b.txt").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n", encoding="utf8")
    nlp = spacy.blank("en")
    docbin = DocBin(store_user_data=True)
    for i in range(n_spacy):
        doc = nlp.make_doc(CORPUS[(i + 5) % len(CORPUS)])
        if i % 2 == 0:
            doc.user_data["id"] = f"c-{i}"
        docbin.add(doc)
    docbin.to_disk(root / "c.spacy")
    (root / ".hidden.jsonl").write_text('{"text": "never read"}\n', encoding="utf8")
    return n_jsonl + n_text + n_spacy


@pytest.fixture
def corpus(tmp_path) -> Path:
    write_corpus(tmp_path / "corpus")
    return tmp_path / "corpus"


def read_jsonl_output(output: Path) -> list:
    records = []
    for path in sorted(output.glob("*.jsonl")):
        records.extend(json.loads(line) for line in path.read_text(encoding="utf8").splitlines())
    return records


def part_bytes(output: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(output.iterdir()) if p.name != "manifest.json"}
