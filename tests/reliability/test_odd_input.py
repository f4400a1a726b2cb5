"""Odd and hostile input through every component, alone and in nlp.pipe:
nothing crashes, no doc is dropped, order is kept, outputs stay valid."""
import math
import resource
import subprocess
import sys
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc

from spacy_gptbert.models import generator_model as lm_model
from spacy_gptbert.pipeline.prompts import TemplatePrompt
from spacy_gptbert.text_checks import REPLACEMENT, clean_text

from ..conftest import greedy_by_hand
from .conftest import TINY_GPT, full_nlp

ODD_TEXTS = {
    "empty": "",
    "spaces": "   ",
    "newlines_tabs": "\n\n\t \r\n",
    "nbsp_and_separators": "a\u00a0b\u2028c\u2029d",
    "emoji": "😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 great 🎉🎉🎉",
    "cjk": "日本語のテキストと中文文本和한국어",
    "rtl": "مرحبا بالعالم שלום עולם",
    "rtl_override": "\u202eevil\u202c text \u200f",
    "combining": "e\u0301\u0301\u0301 Z\u0351\u0352\u0353\u0354a\u0300l\u0316g\u0317o",
    "control": "a\x00b\x07c\x1b[31m d\x7f e\x08",
    "zero_width": "zero\u200bwidth\u200c join\u200d \ufeffbom",
    "lone_high_surrogate": "lone \ud800 surrogate",
    "lone_low_surrogate": "\udfff at the start",
    "reversed_pair": "x\udc00\ud800y",
    "long_token": "a" * 20_000,
    "long_url": "https://example.com/" + "x/" * 3000,
    "mixed_languages": "Das ist great, 非常好, très bien, очень хорошо, ممتاز!",
    "punctuation_only": "?!... ,;: ---",
    "private_use_and_noncharacters": "\ue000\uffff\U0010ffff",
}
SURROGATE_CASES = {"lone_high_surrogate", "lone_low_surrogate", "reversed_pair"}
PLAIN_CASES = sorted(set(ODD_TEXTS) - SURROGATE_CASES)


def check_doc(doc: Doc) -> None:
    """Every component's output is there and valid for this doc."""
    assert doc.tensor.shape == (len(doc), 16)
    assert numpy.isfinite(doc.tensor).all()
    assert set(doc.cats) == {"POS", "NEG"}
    assert all(0.0 <= v <= 1.0 for v in doc.cats.values())
    assert math.isclose(sum(doc.cats.values()), 1.0, rel_tol=1e-5)
    assert len(doc._.generations) == 1 and doc._.generation == doc._.generations[0]


@pytest.mark.parametrize("case", sorted(ODD_TEXTS))
def test_odd_text_through_every_component(nlp_all, case):
    text = ODD_TEXTS[case]
    doc = nlp_all(text)
    check_doc(doc)
    assert doc.text == clean_text(text)  # same length: offsets into the input still hold


@pytest.mark.parametrize("case", PLAIN_CASES)
def test_odd_text_with_spacys_own_tokenizer(bert16, case):
    """Without the safe tokenizer everything but lone surrogates works too."""
    nlp = _default_tokenizer_nlp(bert16)
    check_doc(nlp(ODD_TEXTS[case]))


def test_lone_surrogates_need_the_safe_tokenizer(bert16):
    """spaCy's own tokenizer raises on a lone surrogate before any component
    runs (its string store encodes UTF-8); SafeTokenizer replaces it instead."""
    with pytest.raises(UnicodeEncodeError):
        _default_tokenizer_nlp(bert16)("lone \ud800 surrogate")


_DEFAULT_NLP = {}


def _default_tokenizer_nlp(bert_dir):
    if bert_dir not in _DEFAULT_NLP:
        _DEFAULT_NLP[bert_dir] = full_nlp(bert_dir, safe=False)
    return _DEFAULT_NLP[bert_dir]


def test_clean_text_keeps_length_and_valid_text():
    assert clean_text("a\ud800b\udfff") == f"a{REPLACEMENT}b{REPLACEMENT}"
    for text in ODD_TEXTS.values():
        cleaned = clean_text(text)
        assert len(cleaned) == len(text)
        cleaned.encode("utf-8")  # never raises
        if not any("\ud800" <= c <= "\udfff" for c in text):
            assert cleaned == text


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_pipe_keeps_every_doc_in_order(nlp_all, batch_size):
    texts = list(ODD_TEXTS.values()) * 2
    docs = list(nlp_all.pipe(texts, batch_size=batch_size))
    assert len(docs) == len(texts)
    assert [d.text for d in docs] == [clean_text(t) for t in texts]
    for doc in docs:
        check_doc(doc)


def test_pipe_as_tuples_keeps_contexts(nlp_all):
    items = [(text, {"id": i}) for i, text in enumerate(ODD_TEXTS.values())]
    out = list(nlp_all.pipe(items, as_tuples=True, batch_size=4))
    assert [ctx["id"] for _, ctx in out] == list(range(len(items)))
    assert [doc.text for doc, _ in out] == [clean_text(t) for t, _ in items]


def test_each_component_alone_on_a_batch_of_odd_docs(nlp_all):
    """Components called directly (component.pipe, component(doc)), as a user
    of an existing pipeline might; empty batches too."""
    docs = [nlp_all.make_doc(t) for t in ODD_TEXTS.values()]
    for name, component in nlp_all.pipeline:
        out = list(component.pipe(docs, batch_size=5))
        assert out == docs  # same Doc objects, same order
        assert list(component.pipe([])) == []
        assert component(nlp_all.make_doc("")) is not None
    for doc in docs:
        check_doc(doc)


def test_generator_cleans_what_it_encodes(bert16):
    """Prompts are built from templates, labels and extensions, which can hold
    lone surrogates even though a Doc cannot: they must not reach the tokenizer."""
    from spacy.training import Example

    nlp = full_nlp(bert16)
    generator = nlp.get_pipe("gpt_generator")
    generator.prompt = TemplatePrompt("{label} \ud800: {text}")  # a config file cannot hold this; Python can
    doc = nlp.make_doc("fine")
    doc.cats = {"\udfffLABEL": 1.0}
    generation = generator(doc)._.generation
    # The same as a prompt with U+FFFD where the surrogates were.
    generator.prompt = TemplatePrompt(f"{{label}} {REPLACEMENT}: {{text}}")
    clean = nlp.make_doc("fine")
    clean.cats = {f"{REPLACEMENT}LABEL": 1.0}
    assert generation == generator(clean)._.generation
    # prompt-mode training: the completion comes from an extension
    generator.mode = "prompt"
    reference = nlp.make_doc("fine")
    reference._.completion = " and \udc00 more"
    losses = generator.update([Example(nlp.make_doc("fine"), reference)])
    assert math.isfinite(losses["gpt_generator"])
    assert all(math.isfinite(v) for s in generator.lm_stats([Example(doc, reference)]) for v in s)


# -- non-text input ------------------------------------------------------------


@pytest.mark.parametrize("bad", [123, None, 4.5, ["a list"], {"a": "dict"}])
def test_non_text_input_is_refused_by_spacy(nlp_all, bad):
    """spaCy itself checks nlp(...) / nlp.pipe input (its E1041) before any
    component runs."""
    with pytest.raises(ValueError, match="E1041"):
        nlp_all(bad)
    with pytest.raises(ValueError, match="E1041"):
        list(nlp_all.pipe(["fine", bad]))


@pytest.mark.parametrize("name", ["bert_encoder", "bert_textcat", "gpt_generator"])
@pytest.mark.parametrize("bad", ["a string", b"bytes", 42, None])
def test_non_doc_input_to_a_component(nlp_all, name, bad):
    component = nlp_all.get_pipe(name)
    with pytest.raises(TypeError, match="E101"):
        component(bad)
    with pytest.raises(TypeError, match="E101"):
        component.predict([bad])
    with pytest.raises(TypeError, match="E101"):
        list(component.pipe([nlp_all.make_doc("fine"), bad]))


def test_prompt_function_returning_a_non_string(bert16):
    nlp = full_nlp(bert16)
    nlp.get_pipe("gpt_generator").prompt = lambda doc: None
    with pytest.raises(TypeError, match="E220"):
        nlp("fine")


# -- very long documents -------------------------------------------------------

LONG_WORDS = "the quick brown fox jumps over a lazy dog while ünïcödé 日本 text flows".split()


def long_text(n_tokens: int) -> str:
    return " ".join(LONG_WORDS[i % len(LONG_WORDS)] for i in range(n_tokens))


def test_huge_prompt_follows_on_long_prompt(bert16):
    """A 100,000-token prompt (64-token context): "truncate" keeps its end with
    W001, "error" raises E203; neither crashes."""
    nlp = full_nlp(bert16)
    generator = nlp.get_pipe("gpt_generator")
    doc = nlp.make_doc(long_text(100_000))
    doc.cats = {"POS": 1.0, "NEG": 0.0}
    lm, tokenizer = lm_model.get_hf_parts(generator.lm)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    room = TINY_GPT["n_positions"] - 4  # the context less max_new_tokens
    kept = ([bos] + tokenizer(generator.prompt(doc), add_special_tokens=False)["input_ids"])[-room:]
    with pytest.warns(UserWarning, match="W001"):
        assert generator(doc)._.generation == greedy_by_hand(lm, tokenizer, kept, 4)
    generator.on_long_prompt = "error"
    with pytest.raises(ValueError, match="E203"):
        generator(doc)


LONG_DOC_SCRIPT = """
import json, resource, sys, time
import numpy, spacy, torch
torch.set_num_threads(1)
from spacy.training import Example
name, n = sys.argv[1], int(sys.argv[2])
words = {words!r}
text = " ".join(words[i % len(words)] for i in range(n))
nlp = spacy.blank("en")
nlp.add_pipe("bert_encoder", config={{"model": {{"name": name, "window": 32, "stride": 16}}}})
nlp.add_pipe("bert_textcat", config={{"model": {{"name": name, "window": 32, "stride": 16}}}})
egs = [Example.from_dict(nlp.make_doc(t), {{"cats": {{"POS": float(y), "NEG": float(not y)}}}})
       for t, y in [("a good movie", 1), ("a bad film", 0)]]
nlp.initialize(lambda: egs)
start = time.time()
doc = nlp(text)
seconds = time.time() - start
rows = doc.tensor.shape[0]
# every token's wordpieces were encoded: no zero rows anywhere, the end included
zero_rows = int((numpy.abs(doc.tensor).sum(axis=1) == 0).sum())
peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"tokens": len(doc), "rows": rows, "zero_rows": zero_rows, "cats": doc.cats,
                  "seconds": seconds, "peak_mib": peak_mib}}))
"""


@pytest.mark.slow
def test_100k_token_doc_through_encoder_and_textcat(bert16):
    """Strided windows cover all 100,000 tokens (no truncation), in bounded
    memory. Run in a subprocess to measure its peak memory on its own."""
    import json

    script = LONG_DOC_SCRIPT.format(words=LONG_WORDS)
    out = subprocess.run([sys.executable, "-c", script, bert16, "100000"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(result)
    assert result["tokens"] == result["rows"] == 100_000
    assert result["zero_rows"] == 0
    assert math.isclose(sum(result["cats"].values()), 1.0, rel_tol=1e-5)
    assert result["peak_mib"] < 4096
