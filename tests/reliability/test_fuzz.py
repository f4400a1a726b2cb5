"""Property-based tests (hypothesis) over texts, templates, labels, windows
and generation settings. For every generated case: no exception beyond the
catalogued ones, and the invariants hold (doc.tensor rows = tokens; cats in
[0, 1] and summing to 1 for exclusive classes; generations respect
max_new_tokens and stop strings; no doc dropped, order kept).

The fast suite runs FAST_EXAMPLES cases per property; the slow suite
(`-m slow`) runs SLOW_EXAMPLES, >= 10,000 in all: each test counts the cases
it ran to the end and checks that it ran them all, whatever ran before it.
derandomize=True: the same cases on every run.
"""
import functools
import math
import re
import warnings

import numpy
import pytest
import spacy
from hypothesis import HealthCheck, given, settings, strategies as st
from spacy.training import Example

from spacy_gptbert.errors import Errors
from spacy_gptbert.models import gpt
from spacy_gptbert.models.encoder import window_starts, windowed_model
from spacy_gptbert.models.gpt import GenerationSettings
from spacy_gptbert.pipeline.generator import GPTGenerator
from spacy_gptbert.pipeline.prompts import as_prompt
from spacy_gptbert.pipeline.textcat import BertTextCategorizer
from spacy_gptbert.text_checks import clean_text

FAST_EXAMPLES = 15
SLOW_EXAMPLES = {  # property -> generated cases in the slow suite
    "clean_text": 2500, "templates": 1600, "cats": 1600, "windows": 1600, "texts": 1400, "generation": 1400,
}
CODES = {name for name in dir(Errors) if re.fullmatch(r"E\d{3}", name)}


def catalogued(err: Exception, *allowed: str) -> None:
    """The error is one of ours, with one of the allowed codes."""
    match = re.match(r"\[(E\d{3})\]", str(err))
    assert match and match.group(1) in CODES, f"uncatalogued error: {err!r}"
    assert not allowed or match.group(1) in allowed, f"unexpected {match.group(1)}: {err}"


def fuzz(prop_name: str, strategies: dict):
    """A fast and a slow pytest test for one property function. Hypothesis
    draws the arguments named in `strategies`; pytest passes the others (the
    fixtures) by name, read from the property's own signature. Each test
    checks that all its cases ran to the end."""

    def build(kind: str, n: int):
        finished = []  # this test's own count, reset by each run

        @functools.wraps(PROPERTIES[prop_name])  # its signature: the fixtures pytest passes
        def case(*args, **kwargs):
            PROPERTIES[prop_name](*args, **kwargs)
            finished.append(True)

        cases = settings(max_examples=n, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck))(given(**strategies)(case))

        @functools.wraps(cases)
        def test(*args, **kwargs):
            finished.clear()
            cases(*args, **kwargs)
            assert len(finished) == n, f"{prop_name}[{kind}]: {len(finished)} of {n} cases ran"

        return pytest.mark.slow(test) if kind == "slow" else test

    return build("fast", FAST_EXAMPLES), build("slow", SLOW_EXAMPLES[prop_name])


PROPERTIES = {}


def prop(func):
    PROPERTIES[func.__name__.replace("prop_", "")] = func
    return func


# -- strategies ----------------------------------------------------------------

ODD_CHARS = list(" \t\n\r\x00\x07\x1b\x7f\u00a0\u200b\u200c\u200d\u200e\u200f\u202e\u2028\ufeff\ufffd"
                 "\u0301\u0351😀👍🏽🏳️‍🌈日本語中文한국مرحباשלוםéß.,!?'\"-")
CHAR = st.one_of(
    st.characters(),  # any code point but surrogates
    st.sampled_from(ODD_CHARS),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates (st.characters never makes them)
    st.sampled_from(list("abcdefghij klmnop")),
)
TEXT = st.lists(CHAR, max_size=40).map("".join)
WORDY = st.lists(st.one_of(TEXT, st.sampled_from(["good", "bad film", "a" * 300, "https://x.y/" + "z" * 80])),
                 max_size=4).map(" ".join)


# -- 1. text cleaning and the safe tokenizer -----------------------------------


@prop
def prop_clean_text(text, nlp_all):
    cleaned = clean_text(text)
    assert len(cleaned) == len(text)
    cleaned.encode("utf-8")  # no UnicodeEncodeError, ever
    assert clean_text(cleaned) == cleaned
    if not any("\ud800" <= c <= "\udfff" for c in text):
        assert cleaned == text
    assert nlp_all.tokenizer(text).text == cleaned  # same length: offsets still point into the input


test_clean_text, test_clean_text_slow = fuzz("clean_text", {"text": TEXT})


# -- 2. texts through bert_encoder and bert_textcat (single- and multi-label) ---


@prop
def prop_texts(texts, batch_size, nlp_all, nlp_multi):
    with nlp_all.select_pipes(disable=["gpt_generator"]):  # the generator has its own property
        docs = list(nlp_all.pipe(texts, batch_size=batch_size))
    assert [d.text for d in docs] == [clean_text(t) for t in texts]  # none dropped, order kept
    for doc in docs:
        assert doc.tensor.shape == (len(doc), 16) and numpy.isfinite(doc.tensor).all()
        assert set(doc.cats) == {"POS", "NEG"}
        assert all(0.0 <= v <= 1.0 for v in doc.cats.values())
        assert math.isclose(sum(doc.cats.values()), 1.0, rel_tol=1e-5)
    multi = list(nlp_multi.pipe(texts, batch_size=batch_size))
    assert len(multi) == len(texts)
    for doc in multi:
        assert set(doc.cats) == {"FUN", "SPORTS"} and all(0.0 <= v <= 1.0 for v in doc.cats.values())


test_texts, test_texts_slow = fuzz("texts", {
    "texts": st.lists(st.one_of(TEXT, WORDY), min_size=1, max_size=4), "batch_size": st.integers(1, 4)})


# -- 3. generation settings ----------------------------------------------------


@pytest.fixture(scope="module")
def generate_spy():
    """Records how many new tokens each generate call returned."""
    real = gpt.generate_ids
    lengths = []

    def spy(lm, input_ids, *args, **kwargs):
        out = real(lm, input_ids, *args, **kwargs)
        lengths.append(out.shape[1])
        return out

    gpt.generate_ids = spy
    yield lengths
    gpt.generate_ids = real


def _maybe(default, strategy):
    return st.one_of(st.just(default), strategy)


SETTINGS = st.fixed_dictionaries({
    "max_new_tokens": st.one_of(st.integers(1, 6), st.integers(-2, 80)),
    "do_sample": st.booleans(),
    "temperature": _maybe(1.0, st.floats(-1.0, 3.0)),
    "top_k": _maybe(0, st.integers(-2, 40)),
    "top_p": _maybe(1.0, st.floats(-0.5, 1.5)),
    "repetition_penalty": _maybe(1.0, st.floats(-1.0, 3.0)),
    "num_return_sequences": st.integers(0, 3),
    "stop": st.lists(st.one_of(st.sampled_from(["", ".", " ", "e", "the"]), TEXT.filter(bool)), max_size=3),
    "seed": st.one_of(st.none(), st.integers(-3, 2**31)),
})


@prop
def prop_generation(config, on_long_prompt, texts, nlp_all, generate_spy):
    lm = nlp_all.get_pipe("gpt_generator").model
    try:
        generator = GPTGenerator(nlp_all.vocab, lm, prompt="{label}: {text}", settings=GenerationSettings(**config),
                                 on_long_prompt=on_long_prompt)
        generator.initialize(lambda: [Example(nlp_all.make_doc("x"), nlp_all.make_doc("x"))])
    except ValueError as err:  # contradicting or impossible settings: caught before any generation
        catalogued(err, "E201", "E204")
        return
    docs = [nlp_all.make_doc(t) for t in texts]
    for doc in docs[::2]:
        doc.cats = {"POS": 0.7, "NEG": 0.3}
    generate_spy.clear()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # W001 for long prompts
            out = list(generator.pipe(docs, batch_size=2))
    except ValueError as err:
        assert on_long_prompt == "error"
        catalogued(err, "E203")
        return
    assert out == docs
    assert generate_spy and max(generate_spy) <= config["max_new_tokens"]
    for doc in docs:
        assert len(doc._.generations) == config["num_return_sequences"]
        assert doc._.generation == doc._.generations[0]
        for text in doc._.generations:
            assert isinstance(text, str) and not any(s in text for s in config["stop"])


test_generation, test_generation_slow = fuzz("generation", {
    "config": SETTINGS, "on_long_prompt": st.sampled_from(["truncate", "error", "drop"]),
    "texts": st.lists(st.one_of(TEXT, WORDY), min_size=1, max_size=3)})


# -- 4. prompt templates -------------------------------------------------------

PIECES = ["{text}", "{label}", "{cats}", "{", "}", "{{", "}}", "{txt}", "{text!r}", "{text:>5}", "{0}", "{}",
          "{label.x}", "{cats[0]}", "abc", " ", ": ", "é", "\ud800", "\n"]


@prop
def prop_templates(template, text, cats, nlp_all):
    try:
        prompt = as_prompt(template)
    except ValueError as err:
        catalogued(err, "E202", "E204")
        return
    doc = nlp_all.make_doc(text)
    doc.cats = cats
    result = prompt(doc)
    assert isinstance(result, str)
    if "{" not in template and "}" not in template:
        assert result == template


test_templates, test_templates_slow = fuzz("templates", {
    "template": st.lists(st.sampled_from(PIECES), max_size=6).map("".join), "text": TEXT,
    "cats": st.dictionaries(st.sampled_from(["POS", "NEG", "", "日本"]), st.floats(0, 1), max_size=3)})


# -- 5. category values and the loss -------------------------------------------

VALUE = st.one_of(st.sampled_from([0.0, 1.0, 0.5]), st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(-2, 3), st.booleans(), st.text(max_size=2), st.none())


@prop
def prop_cats(cats, exclusive, logits):
    textcat = BertTextCategorizer(_VOCAB, _DUMMY_MODEL, exclusive_classes=exclusive, labels=["POS", "NEG", "X"])
    reference = _NLP.make_doc("text")
    reference.cats = cats
    example = Example(_NLP.make_doc("text"), reference)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # W002: a label the component does not know
            loss, grad = textcat.get_loss([example], numpy.asarray([logits], dtype="float32"))
    except ValueError as err:
        catalogued(err, "E107", "E108")
        values = list(cats.values())
        bad_value = any(isinstance(v, str) or v is None or not 0 <= v <= 1 for v in values)
        assert bad_value or exclusive  # E107 only for exclusive classes
        return
    assert math.isfinite(loss) and loss >= 0 and numpy.isfinite(grad).all() and grad.shape == (1, 3)


_NLP = spacy.blank("en")
_VOCAB = _NLP.vocab
_DUMMY_MODEL = windowed_model("encoder", "unused")  # get_loss never runs the model

test_cats, test_cats_slow = fuzz("cats", {
    "cats": st.dictionaries(st.sampled_from(["POS", "NEG", "X", "OTHER"]), VALUE, max_size=4),
    "exclusive": st.booleans(), "logits": st.lists(st.floats(-30, 30), min_size=3, max_size=3)})


# -- 6. strided windows --------------------------------------------------------


@prop
def prop_windows(n, window, stride):
    if not 0 < stride <= window:
        with pytest.raises(ValueError, match="E102"):
            windowed_model("encoder", "unused", window=window, stride=stride)
        return
    starts = window_starts(n, window, stride)
    assert starts[0] == 0 and starts == sorted(set(starts))
    covered = numpy.zeros(max(n, 1), dtype=bool)
    for s in starts:
        assert 0 <= s and (s + window <= n or len(starts) == 1)
        covered[s:s + window] = True
    assert covered.all()  # nothing truncated
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


test_windows, test_windows_slow = fuzz("windows", {
    "n": st.integers(0, 3000), "window": st.integers(-2, 300), "stride": st.integers(-2, 300)})


# -- the count -------------------------------------------------------------------


def test_the_slow_suite_runs_10000_cases():
    assert sum(SLOW_EXAMPLES.values()) >= 10_000  # each slow test checks it ran all of its share
