"""gpt_generator with spacy-gptbert.BertDecoder.v1: a BERT-family encoder
warm-started as a causal decoder trains (LM and prompt mode), generates from
[CLS] to [SEP], batches, scores and saves like the GPT.

A tiny random BERT (2 layers, width 32) whose WordPiece vocabulary is the
words of the test sentences keeps it fast on a CPU and the same on every run
(a vocabulary trained by `tokenizers` can order tied pieces differently).
"""
import json
import math
from pathlib import Path

import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam

from spacy_gptbert.models import generator_model as lm_model
from spacy_gptbert.pipeline.generator_scoring import generation_quality

from ..conftest import greedy_by_hand

SENTENCES = [
    "a good movie with great actors",
    "a bad film with awful jokes",
    "the plot is great fun",
    "i loved every minute of it",
    "i hated the ending",
]
EXTRA_WORDS = {"complete", "waste", "time", ".", "review", ":", "pos", "neg"}
WORDS = sorted({w for s in SENTENCES for w in s.split()} | EXTRA_WORDS)


def build_word_bert(path):
    """A random BertModel whose vocabulary is WORDS (one wordpiece per word)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=64)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def word_bert(tmp_path_factory):
    return build_word_bert(tmp_path_factory.mktemp("word_bert"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def make_nlp(name, **config) -> Language:
    nlp = spacy.blank("en")
    config.setdefault("model", {"@architectures": "spacy-gptbert.BertDecoder.v1", "name": str(name),
                                "dropout": 0.0})
    nlp.add_pipe("gpt_generator", config=config)
    return nlp


def examples(nlp, texts=SENTENCES):
    return [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in texts]


def train(nlp, egs, steps, lr=3e-3):
    """Returns the loss of every step."""
    spacy.util.fix_random_seed(0)
    nlp.initialize(lambda: egs)
    optimizer = Adam(lr)
    return [nlp.update(egs, sgd=optimizer)["gpt_generator"] for _ in range(steps)]


@pytest.fixture(scope="module")
def trained(word_bert):
    """The tiny decoder overfit on five sentences (LM mode), and its losses."""
    nlp = make_nlp(word_bert, max_new_tokens=12)
    losses = train(nlp, examples(nlp), steps=150)
    return nlp, losses


def test_training_lowers_the_loss(trained):
    _, losses = trained
    # from a near-uniform start (the fresh head) to a near-perfect fit of the five sentences
    assert losses[0] == pytest.approx(math.log(len(WORDS) + 5), abs=0.1)
    assert max(losses[-10:]) < 0.1 * losses[0]


def test_starts_on_cls_stops_on_sep_and_leaves_both_out(trained):
    nlp, _ = trained
    gen = nlp.get_pipe("gpt_generator")
    tokenizer = gen.lm.attrs["tokenizer"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert gen.prompt_ids([nlp.make_doc("a good"), nlp.make_doc("")]) == [
        [cls] + tokenizer("a good", add_special_tokens=False)["input_ids"], [cls]]
    for text in SENTENCES:
        words = text.split(" ")
        doc = nlp(" ".join(words[:2]))
        assert doc._.generation == " ".join(words[2:])  # WordPiece decodes without the joining space
    prompt = gen.prompt_ids([nlp.make_doc("a good")])
    new = lm_model.gpt.generate_ids(lm_model.get_lm(gen.lm), *lm_model.gpt.left_pad(prompt, 0), gen.settings,
                                    0, sep)[0].tolist()
    assert new[:5] == tokenizer("movie with great actors", add_special_tokens=False)["input_ids"] + [sep]
    assert len(new) == 5  # stopped on [SEP], not after max_new_tokens


def test_batch_equals_single_greedy(trained):
    nlp, _ = trained
    prompts = [" ".join(s.split(" ")[:k]) for s in SENTENCES for k in (1, 2, 3)] + ["", "the"]
    single = [nlp(p)._.generation for p in prompts]
    assert [d._.generation for d in nlp.pipe(prompts, batch_size=17)] == single
    assert [d._.generation for d in nlp.pipe(prompts, batch_size=4)] == single


def test_to_disk_spacy_load_and_bytes_identical(trained, word_bert, tmp_path):
    nlp, _ = trained
    texts = ["a good", "i hated", "", "the plot"]
    expected = [d._.generation for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "nlp")
    hf_dir = tmp_path / "nlp" / "gpt_generator" / "hf_0"
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["architectures"] == ["BertLMHeadModel"] and config["is_decoder"] is True
    special = json.loads((hf_dir / "special_tokens_map.json").read_text())
    assert (special["bos_token"], special["eos_token"]) == ("[CLS]", "[SEP]")
    loaded = spacy.load(tmp_path / "nlp")  # HF_HUB_OFFLINE (conftest): no network
    assert [d._.generation for d in loaded.pipe(texts)] == expected
    lm = lm_model.get_lm(loaded.get_pipe("gpt_generator").lm)
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    fresh = make_nlp(word_bert, max_new_tokens=12)
    fresh.get_pipe("gpt_generator").from_bytes(nlp.get_pipe("gpt_generator").to_bytes())
    assert [d._.generation for d in fresh.pipe(texts)] == expected


def test_evaluate_reports_quality_of_the_generations(trained):
    nlp, _ = trained
    prefixes = [" ".join(s.split(" ")[:2]) for s in SENTENCES]
    egs = examples(nlp, prefixes)
    scores = nlp.evaluate(egs)
    generations = [doc._.generation for doc in nlp.pipe(prefixes)]
    quality = generation_quality(generations)
    assert None not in quality.values()
    for key, value in quality.items():
        assert scores[key] == pytest.approx(value)


def label_examples(nlp, pairs):
    egs = []
    for label, text in pairs:
        ref = nlp.make_doc(text)
        ref.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        egs.append(Example(nlp.make_doc(text), ref))
    return egs


def test_prompt_mode_learns_completion_given_label(word_bert):
    nlp = make_nlp(word_bert, prompt="{label} review :", mode="prompt", max_new_tokens=12)
    pairs = [("POS", "a good movie with great actors"), ("NEG", "a complete waste of time .")]
    egs = label_examples(nlp, pairs)
    losses = train(nlp, egs, steps=40, lr=1e-2)
    assert losses[-1] < 0.05 * losses[0]
    gen = nlp.get_pipe("gpt_generator")
    # WordPiece decoding joins "time ." to "time." (the tokenizer's clean-up of spaces)
    for label, text in (("POS", "a good movie with great actors"), ("NEG", "a complete waste of time.")):
        doc = nlp.make_doc("")
        doc.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        assert gen(doc)._.generation == text


def test_nats_per_char_counts_the_end_token_like_the_gpt(word_bert):
    """Prompt mode: summed cross-entropy of the completion's tokens and [SEP]
    given [CLS] + prompt, over the completion's characters + 1, as for a GPT."""
    nlp = make_nlp(word_bert, prompt="{label} review :", mode="prompt")
    egs = label_examples(nlp, [("POS", "the plot is great fun"), ("NEG", "i hated the ending")])
    nlp.initialize(lambda: egs)
    gen = nlp.get_pipe("gpt_generator")
    tokenizer = gen.lm.attrs["tokenizer"]
    lm = lm_model.get_lm(gen.lm).eval()
    expected = []
    for eg in egs:
        prompt = tokenizer(gen.prompt(eg.reference), add_special_tokens=False)["input_ids"]
        completion = tokenizer(eg.reference.text, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([[tokenizer.cls_token_id] + prompt + completion + [tokenizer.sep_token_id]])
        with torch.no_grad():
            logits = lm(input_ids=ids).logits[0, :-1]
        nll = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")[len(prompt):].sum()
        expected.append((float(nll), len(completion) + 1, len(eg.reference.text) + 1))
    stats = gen.lm_stats(egs)
    assert [s[1:] for s in stats] == [e[1:] for e in expected]
    assert [s[0] for s in stats] == pytest.approx([e[0] for e in expected], rel=1e-5)
    scores = nlp.evaluate(egs)
    nats_per_char = sum(e[0] for e in expected) / sum(e[2] for e in expected)
    assert scores["gen_loss_per_char"] == pytest.approx(nats_per_char, rel=1e-5)


@pytest.mark.slow
def test_warmstart_config_trains_loads_and_generates(word_bert, tmp_path):
    """configs/generator_warmstart.cfg with the tiny BERT as its encoder: a few
    `spacy train` steps, then spacy.load generates on the label asked for."""
    from spacy.cli.train import train as spacy_train
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    corpus = DocBin()
    for i, text in enumerate(SENTENCES):
        doc = nlp(text)
        doc.cats = {"POSITIVE": float(i % 2 == 0), "NEGATIVE": float(i % 2 == 1)}
        corpus.add(doc)
    corpus.to_disk(tmp_path / "data.spacy")
    config = Path(__file__).resolve().parents[2] / "configs" / "generator_warmstart.cfg"
    spacy_train(config, tmp_path / "out", overrides={
        "paths.train": str(tmp_path / "data.spacy"), "paths.dev": str(tmp_path / "data.spacy"),
        "components.gpt_generator.model.name": word_bert, "components.gpt_generator.max_new_tokens": 4,
        "training.max_steps": 2, "training.eval_frequency": 2,
        "training.optimizer.learn_rate.warmup_steps": 1,
    })
    loaded = spacy.load(tmp_path / "out" / "model-last")
    lm = lm_model.get_lm(loaded.get_pipe("gpt_generator").lm)
    assert type(lm).__name__ == "BertLMHeadModel"
    doc = loaded.make_doc("")
    doc.cats = {"POSITIVE": 1.0, "NEGATIVE": 0.0}
    assert loaded.get_pipe("gpt_generator").prompt(doc) == "positive review: "
    generation = loaded.get_pipe("gpt_generator")(doc)._.generation  # sampled, as the config says
    assert len(generation.split()) <= 4 and set(generation.split()) <= set(WORDS)
    assert set(loaded.get_pipe("gpt_generator").cfg["label_counts"]) == {"positive", "negative"}  # label_bias
    # Greedy and unsteered (load-time settings), it is what the saved weights give by hand from [CLS] + the prompt.
    greedy = spacy.load(tmp_path / "out" / "model-last", config={"components": {"gpt_generator": {
        "do_sample": False, "temperature": 1.0, "top_k": 0, "label_bias": 0.0}}})
    tokenizer = greedy.get_pipe("gpt_generator").lm.attrs["tokenizer"]
    prompt_ids = [tokenizer.cls_token_id] + tokenizer("positive review: ",
                                                      add_special_tokens=False)["input_ids"]
    assert greedy.get_pipe("gpt_generator")(doc)._.generation == greedy_by_hand(
        lm, tokenizer, prompt_ids, 4, eos=tokenizer.sep_token_id)


@pytest.mark.slow
def test_packaged_minilm_as_decoder(minilm_dir):
    """The real all-MiniLM-L6-v2 (by its hub name, found in the package) loads
    as a BertLMHeadModel decoder and generates greedily, the same tokens every
    time and in every new pipeline (the fresh LM head is seeded)."""
    def generate():
        nlp = spacy.blank("en")
        nlp.add_pipe("gpt_generator", config={"model": {"@architectures": "spacy-gptbert.BertDecoder.v1"},
                                              "max_new_tokens": 4})
        nlp.initialize()
        return nlp, [d._.generation for d in nlp.pipe(["this film is", "a"])]

    nlp, first = generate()
    lm = lm_model.get_lm(nlp.get_pipe("gpt_generator").lm)
    assert type(lm).__name__ == "BertLMHeadModel" and lm.config.is_decoder
    assert lm.config.num_hidden_layers == 6
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    model_config = nlp.config["components"]["gpt_generator"]["model"]
    assert model_config["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert all(len(text.split()) >= 1 for text in first)
    assert [d._.generation for d in nlp.pipe(["this film is", "a"])] == first
    assert generate()[1] == first
