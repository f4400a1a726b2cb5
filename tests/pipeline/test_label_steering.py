"""gpt_generator's label_bias (pipeline/label_steering.py): per-label token
counts from the training docs' doc.cats at initialize, their log-odds added to
each step's log-probabilities, saved with the pipeline.

The tiny word-level BERT decoder of test_generator_decoder.py, untrained: the
tests check the steering itself, against greedy decoding written out.
"""
import math

import numpy
import pytest
import spacy
import torch
from spacy.training import Example

from spacy_gptbert.models import generator_model as lm_model
from spacy_gptbert.pipeline import label_steering

from ..conftest import greedy_by_hand
from .test_generator_decoder import SENTENCES, make_nlp, word_bert  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py

POSITIVE = {0, 2, 3}  # SENTENCES' indices: the good movie, the great fun, loved every minute
PROMPT = {"@misc": "spacy-gptbert.template_prompt.v1", "template": "{label} review :",
          "label_names": {"POSITIVE": "pos", "NEGATIVE": "neg", "1": "pos", "0": "neg"}}


def labelled_examples(nlp, numeric=False):
    egs = []
    for i, text in enumerate(SENTENCES):
        ref = nlp.make_doc(text)
        names = ("0", "1") if numeric else ("NEGATIVE", "POSITIVE")
        ref.cats = {names[0]: float(i not in POSITIVE), names[1]: float(i in POSITIVE)}
        egs.append(Example(nlp.make_doc(text), ref))
    return egs


def steered_nlp(word_bert, label_bias, **config):  # noqa: F811
    nlp = make_nlp(word_bert, mode="prompt", prompt=PROMPT, max_new_tokens=6, label_bias=label_bias, **config)
    nlp.initialize(lambda: labelled_examples(nlp, numeric=True))  # gold labels "0"/"1", as in sst2_gen
    return nlp


def doc_with_label(nlp, label):
    doc = nlp.make_doc("")
    doc.cats = {"POSITIVE": float(label == "POSITIVE"), "NEGATIVE": float(label == "NEGATIVE")}
    return doc


def test_log_odds_by_hand():
    counts = {"pos": {"5": 3, "6": 1}, "neg": {"6": 2}}
    table = label_steering.log_odds(counts, 8)
    # pos: 8 + 4 = 12 smoothed tokens, of which 4 are token 5; the rest (neg): 8 + 2 = 10, 1 of them token 5
    assert table["pos"][5] == pytest.approx(math.log(4 / 12) - math.log(1 / 10))
    assert table["pos"][6] == pytest.approx(math.log(2 / 12) - math.log(3 / 10))
    assert table["pos"][0] == pytest.approx(math.log(1 / 12) - math.log(1 / 10))
    assert table["neg"][6] == pytest.approx(math.log(3 / 10) - math.log(2 / 12))
    assert label_steering.log_odds({"pos": {"5": 3}}, 8) == {}  # one label: nothing to contrast
    rows = label_steering.bias_rows(table, ["neg", "", "other"], 0.5, 8)
    assert rows[0] == pytest.approx(0.5 * table["neg"])
    assert not rows[1:].any()  # no doc.cats, or a label the counts do not know: no steering


def test_count_label_tokens_skips_docs_without_a_label():
    counts = label_steering.count_label_tokens(["a", "", "a", "b"], [[1, 2], [7], [2], [3]])
    assert counts == {"a": {"1": 1, "2": 2}, "b": {"3": 1}}


def test_initialize_counts_targets_per_prompt_label(word_bert):  # noqa: F811
    nlp = steered_nlp(word_bert, 0.0)
    gen = nlp.get_pipe("gpt_generator")
    tokenizer = gen.lm.attrs["tokenizer"]
    counts = gen.cfg["label_counts"]
    assert set(counts) == {"pos", "neg"}  # the prompt's names, not the data's "1"/"0"
    great, sep = tokenizer.convert_tokens_to_ids("great"), tokenizer.sep_token_id
    assert counts["pos"][str(great)] == 2 and str(great) not in counts["neg"]
    assert (counts["pos"][str(sep)], counts["neg"][str(sep)]) == (3, 2)  # one end token per text
    assert sum(counts["pos"].values()) == sum(len(SENTENCES[i].split()) + 1 for i in POSITIVE)


def test_greedy_generation_equals_steering_by_hand(word_bert):  # noqa: F811
    nlp = steered_nlp(word_bert, 2.0)
    gen = nlp.get_pipe("gpt_generator")
    lm, tokenizer = lm_model.get_lm(gen.lm), gen.lm.attrs["tokenizer"]
    table = label_steering.log_odds(gen.cfg["label_counts"], lm.config.vocab_size)
    docs = [doc_with_label(nlp, label) for label in ("POSITIVE", "NEGATIVE")] + [nlp.make_doc("")]
    expected = []
    for doc, name in zip(docs, ("pos", "neg", None)):
        bias = None if name is None else 2.0 * torch.from_numpy(table[name])
        expected.append(greedy_by_hand(lm, tokenizer, gen.prompt_ids([doc])[0], 6, tokenizer.sep_token_id, bias))
    assert [d._.generation for d in nlp.pipe(docs, batch_size=3)] == expected
    assert [nlp(d)._.generation for d in docs] == expected
    assert expected[0] != expected[1]


def test_strong_steering_writes_the_labels_own_words(word_bert):  # noqa: F811
    nlp = steered_nlp(word_bert, 50.0)
    positive = nlp(doc_with_label(nlp, "POSITIVE"))._.generation.split()
    negative = nlp(doc_with_label(nlp, "NEGATIVE"))._.generation.split()
    # "great" is the only word in two positive sentences and no negative one: the top log-odds
    assert positive[0] == "great"
    only_negative = {"bad", "film", "awful", "jokes", "hated", "ending"}
    assert negative and set(negative) <= only_negative


def test_sampling_with_steering_is_seeded_and_returns_n(word_bert):  # noqa: F811
    nlp = steered_nlp(word_bert, 1.0, do_sample=True, temperature=0.7, seed=1, num_return_sequences=2)
    docs = [doc_with_label(nlp, "POSITIVE"), doc_with_label(nlp, "NEGATIVE")]
    first = [d._.generations for d in nlp.pipe(docs)]
    assert [len(g) for g in first] == [2, 2]
    assert [d._.generations for d in nlp.pipe(docs)] == first
    guided = steered_nlp(word_bert, 1.0, do_sample=True, temperature=0.7, seed=1,
                         guidance_prompt="neg review :", guidance_scale=2.0)
    assert [d._.generations for d in guided.pipe(docs)] == [d._.generations for d in guided.pipe(docs)]


def test_counts_survive_spacy_load_and_the_setting_comes_from_the_config(word_bert, tmp_path):  # noqa: F811
    nlp = steered_nlp(word_bert, 2.0)
    docs = [doc_with_label(nlp, "POSITIVE"), doc_with_label(nlp, "NEGATIVE")]
    steered = [d._.generation for d in nlp.pipe(docs)]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("gpt_generator").cfg["label_counts"] == nlp.get_pipe("gpt_generator").cfg["label_counts"]
    assert [d._.generation for d in loaded.pipe(docs)] == steered
    off = spacy.load(tmp_path / "p", config={"components": {"gpt_generator": {"label_bias": 0.0}}})
    gen = off.get_pipe("gpt_generator")
    lm, tokenizer = lm_model.get_lm(gen.lm), gen.lm.attrs["tokenizer"]
    assert [d._.generation for d in off.pipe(docs)] == [
        greedy_by_hand(lm, tokenizer, gen.prompt_ids([d])[0], 6, tokenizer.sep_token_id) for d in docs]


def test_steering_without_counts_fails_with_advice_that_works(word_bert, tmp_path):  # noqa: F811
    nlp = make_nlp(word_bert, mode="prompt", prompt=PROMPT, max_new_tokens=6, label_bias=1.0)
    unlabelled = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in SENTENCES]
    with pytest.raises(ValueError, match="E210"):
        nlp.initialize(lambda: unlabelled)
    plain = make_nlp(word_bert, mode="prompt", prompt=PROMPT, max_new_tokens=6)
    plain.initialize(lambda: labelled_examples(plain))
    plain.get_pipe("gpt_generator").cfg["label_counts"] = {}  # as saved before label_bias existed
    plain.to_disk(tmp_path / "old")
    steered = spacy.load(tmp_path / "old", config={"components": {"gpt_generator": {"label_bias": 1.0}}})
    doc = doc_with_label(steered, "POSITIVE")
    with pytest.raises(ValueError, match="E210"):
        steered(doc)
    steered.get_pipe("gpt_generator").count_label_tokens(labelled_examples(steered))  # E210's advice
    assert isinstance(steered(doc)._.generation, str)
    assert set(steered.get_pipe("gpt_generator").cfg["label_counts"]) == {"pos", "neg"}


@pytest.mark.parametrize("value", [-0.5, 101.0])
def test_label_bias_out_of_range_fails_at_construction(word_bert, value):  # noqa: F811
    with pytest.raises(ValueError, match="E204"):
        make_nlp(word_bert, label_bias=value)


def test_bias_rows_follow_the_doc_order_of_a_sorted_batch(word_bert):  # noqa: F811
    nlp = steered_nlp(word_bert, 2.0)
    gen = nlp.get_pipe("gpt_generator")
    docs = [doc_with_label(nlp, "NEGATIVE"), nlp.make_doc("a good"), doc_with_label(nlp, "POSITIVE")]
    rows = gen._bias_rows(docs)
    table = label_steering.log_odds(gen.cfg["label_counts"], rows.shape[1])
    assert numpy.allclose(rows[0], 2.0 * table["neg"]) and numpy.allclose(rows[2], 2.0 * table["pos"])
    assert not rows[1].any()
