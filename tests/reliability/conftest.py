"""Tiny pipelines for the reliability tests: every component, built once per
session, small enough that one document costs milliseconds on one CPU core
(BERT: width 16, 1 layer, 62-wordpiece windows; GPT: width 32, 1 layer,
64-token context)."""
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example

from spacy_gptbert import text_checks  # noqa: F401  (registers SafeTokenizer.v1)

from ..conftest import build_tiny_bert

SAFE_TOKENIZER = {"nlp": {"tokenizer": {"@tokenizers": "spacy-gptbert.SafeTokenizer.v1"}}}
WINDOWS = {"window": 32, "stride": 16, "max_batch_tokens": 256}
TINY_GPT = {
    "@architectures": "spacy-gptbert.GPT.v1", "n_layer": 1, "n_head": 2, "n_embd": 32,
    "n_positions": 64, "vocab_size": 300, "min_frequency": 1, "seed": 0,
}
TRAIN = [
    ("a good movie with great actors", "POS"), ("a bad film with awful jokes", "NEG"),
    ("i loved every minute of it", "POS"), ("boring , dull and terrible", "NEG"),
    ("ünïcödé and emoji 😀 and 日本語 text", "POS"), ("numbers 1 2 3 4 5", "NEG"),
]
MULTI = [("great fun sports", {"FUN": 1.0, "SPORTS": 1.0}), ("dull news", {"FUN": 0.0, "SPORTS": 0.0}),
         ("the team won", {"FUN": 0.0, "SPORTS": 1.0})]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads; on a shared 2-core machine extra
    threads only spin against other processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def bert16(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("bert16"), hidden=16, layers=1, heads=2, positions=64))


def cats_examples(nlp: Language, data=TRAIN):
    return [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS"), "NEG": float(y == "NEG")}})
            for t, y in data]


def full_nlp(bert_dir: str, *, safe: bool = True, **generator) -> Language:
    """bert_encoder + bert_textcat (exclusive) + gpt_generator, initialized."""
    nlp = spacy.blank("en", config=SAFE_TOKENIZER if safe else {})
    nlp.add_pipe("bert_encoder", config={"model": {"name": bert_dir, **WINDOWS}})
    nlp.add_pipe("bert_textcat", config={"model": {"name": bert_dir, **WINDOWS}})
    generator = {"model": TINY_GPT, "prompt": "{label}: {text}", "max_new_tokens": 4, **generator}
    nlp.add_pipe("gpt_generator", config=generator)
    egs = cats_examples(nlp)
    spacy.util.fix_random_seed(0)
    nlp.initialize(lambda: egs)
    return nlp


def multilabel_nlp(bert_dir: str) -> Language:
    nlp = spacy.blank("en", config=SAFE_TOKENIZER)
    nlp.add_pipe("bert_textcat", config={"model": {"name": bert_dir, **WINDOWS}, "exclusive_classes": False})
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in MULTI]
    nlp.initialize(lambda: egs)
    return nlp


@pytest.fixture(scope="session")
def nlp_all(bert16) -> Language:
    return full_nlp(bert16)


@pytest.fixture(scope="session")
def nlp_multi(bert16) -> Language:
    return multilabel_nlp(bert16)
