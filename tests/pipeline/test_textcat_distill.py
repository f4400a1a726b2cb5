"""bert_textcat on a teacher's probabilities: soft targets, temperature and
gold labels mixed in, against losses and gradients computed by hand."""
import math

import numpy
import pytest
import spacy
from numpy.testing import assert_allclose
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_gptbert.pipeline.textcat import GOLD_CATS_KEY


def sig(x):
    return 1 / (1 + math.exp(-x))


def softmax2(a, b):
    return math.exp(a) / (math.exp(a) + math.exp(b))


def make_textcat(name, examples_of, **cfg):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": name, "window": 32, "stride": 16}, **cfg})
    egs = examples_of(nlp)
    nlp.initialize(lambda: egs)
    return nlp.get_pipe("bert_textcat"), egs


def soft_examples(nlp, gold=False):
    egs = [Example.from_dict(nlp.make_doc("good"), {"cats": {"POS": 0.7, "NEG": 0.3}}),
           Example.from_dict(nlp.make_doc("meh"), {"cats": {"POS": 0.2, "NEG": 0.8}})]
    if gold:
        egs[0].reference.user_data[GOLD_CATS_KEY] = {"POS": 1.0, "NEG": 0.0}
        egs[1].reference.user_data[GOLD_CATS_KEY] = {"POS": 1.0, "NEG": 0.0}
    return egs


LOGITS = numpy.asarray([[1.0, 0.0], [0.5, 1.5]], dtype="float32")


def test_soft_targets_exclusive(tiny_bert):
    """Cross-entropy to the teacher's distribution; gradient probs - targets."""
    textcat, egs = make_textcat(tiny_bert, soft_examples)
    assert textcat.labels == ("POS", "NEG")
    loss, d = textcat.get_loss(egs, LOGITS)
    p0, p1 = softmax2(1.0, 0.0), softmax2(0.5, 1.5)  # P(POS) of each doc
    expected = (-0.7 * math.log(p0) - 0.3 * math.log(1 - p0) - 0.2 * math.log(p1) - 0.8 * math.log(1 - p1)) / 2
    assert loss == pytest.approx(expected, rel=1e-5)
    assert_allclose(d, [[(p0 - 0.7) / 2, (0.7 - p0) / 2], [(p1 - 0.2) / 2, (0.2 - p1) / 2]], rtol=1e-5)


def test_soft_targets_exclusive_with_temperature(tiny_bert):
    """T = 2: targets softmax(log p / 2), predictions softmax(z / 2), loss
    times T^2, gradient T * (q_T - t_T)."""
    textcat, egs = make_textcat(tiny_bert, soft_examples, distill_temperature=2.0)
    loss, d = textcat.get_loss(egs, LOGITS)
    t0 = math.sqrt(0.7) / (math.sqrt(0.7) + math.sqrt(0.3))
    t1 = math.sqrt(0.2) / (math.sqrt(0.2) + math.sqrt(0.8))
    q0, q1 = softmax2(0.5, 0.0), softmax2(0.25, 0.75)
    ce = -t0 * math.log(q0) - (1 - t0) * math.log(1 - q0) - t1 * math.log(q1) - (1 - t1) * math.log(1 - q1)
    assert loss == pytest.approx(4 * ce / 2, rel=1e-5)
    assert_allclose(d, [[2 * (q0 - t0) / 2, 2 * (t0 - q0) / 2], [2 * (q1 - t1) / 2, 2 * (t1 - q1) / 2]], rtol=1e-5)


def test_gold_weight_mixes_in_the_kept_gold_labels(tiny_bert):
    """gold_weight 0.25, T = 1: 0.75 x the teacher's loss + 0.25 x the gold
    loss; the gold labels (both POS) come from doc.user_data, not doc.cats."""
    textcat, egs = make_textcat(tiny_bert, lambda nlp: soft_examples(nlp, gold=True), gold_weight=0.25)
    loss, d = textcat.get_loss(egs, LOGITS)
    p0, p1 = softmax2(1.0, 0.0), softmax2(0.5, 1.5)
    soft = (-0.7 * math.log(p0) - 0.3 * math.log(1 - p0) - 0.2 * math.log(p1) - 0.8 * math.log(1 - p1)) / 2
    hard = (-math.log(p0) - math.log(p1)) / 2
    assert loss == pytest.approx(0.75 * soft + 0.25 * hard, rel=1e-5)
    g0 = 0.75 * (p0 - 0.7) + 0.25 * (p0 - 1)
    g1 = 0.75 * (p1 - 0.2) + 0.25 * (p1 - 1)
    assert_allclose(d, [[g0 / 2, -g0 / 2], [g1 / 2, -g1 / 2]], rtol=1e-5)


def test_gold_weight_without_kept_gold_uses_the_cats(tiny_bert):
    textcat, egs = make_textcat(tiny_bert, soft_examples, gold_weight=0.5)
    loss, d = textcat.get_loss(egs, LOGITS)
    plain, egs_plain = make_textcat(tiny_bert, soft_examples)
    loss_plain, d_plain = plain.get_loss(egs_plain, LOGITS)
    assert loss == pytest.approx(loss_plain, rel=1e-6)
    assert_allclose(d, d_plain, rtol=1e-6)


def test_soft_targets_multilabel_with_temperature(tiny_bert):
    """Per-label binary cross-entropy to sigmoid(logit(p) / T) with
    predictions sigmoid(z / T), times T^2; a label the doc leaves out is
    left out of the loss."""
    def data(nlp):
        return [Example.from_dict(nlp.make_doc("good"), {"cats": {"A": 0.8, "B": 0.1}}),
                Example.from_dict(nlp.make_doc("bad"), {"cats": {"A": 1.0}})]
    textcat, egs = make_textcat(tiny_bert, data, exclusive_classes=False, distill_temperature=2.0)
    logits = numpy.asarray([[1.0, -1.0], [2.0, 3.0]], dtype="float32")
    loss, d = textcat.get_loss(egs, logits)
    ta = math.sqrt(0.8) / (math.sqrt(0.8) + math.sqrt(0.2))
    tb = math.sqrt(0.1) / (math.sqrt(0.1) + math.sqrt(0.9))

    def bce(t, z):
        return -t * math.log(sig(z)) - (1 - t) * math.log(1 - sig(z))
    expected = 4 * (bce(ta, 0.5) + bce(tb, -0.5) + bce(1.0, 1.0)) / 2
    assert loss == pytest.approx(expected, rel=1e-5)
    assert_allclose(d, [[2 * (sig(0.5) - ta) / 2, 2 * (sig(-0.5) - tb) / 2], [2 * (sig(1.0) - 1) / 2, 0.0]],
                    rtol=1e-5)


@pytest.mark.parametrize("exclusive", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_gradient_matches_finite_differences(tiny_bert, exclusive, temperature):
    def data(nlp):
        egs = soft_examples(nlp, gold=True)
        egs.append(Example.from_dict(nlp.make_doc("none"), {}))  # no cats: no loss, no gradient
        return egs
    textcat, egs = make_textcat(tiny_bert, data, exclusive_classes=exclusive,
                                distill_temperature=temperature, gold_weight=0.3)
    logits = numpy.asarray([[1.0, -0.5], [0.3, 1.2], [2.0, 2.0]], dtype="float64")
    _, d = textcat.get_loss(egs, logits.astype("float32"))
    assert numpy.isfinite(d).all() and not d[2].any()
    eps = 1e-3
    for i in range(2):
        for j in range(2):
            up, down = logits.copy(), logits.copy()
            up[i, j] += eps
            down[i, j] -= eps
            numeric = (textcat.get_loss(egs, up.astype("float32"))[0]
                       - textcat.get_loss(egs, down.astype("float32"))[0]) / (2 * eps)
            assert d[i, j] == pytest.approx(numeric, abs=2e-3)


@pytest.mark.parametrize("cats", [{"POS": 1.0, "NEG": 1.0}, {"POS": 0.4, "NEG": 0.4}, {"POS": 0.3}])
def test_exclusive_targets_must_be_one_label_or_a_distribution(tiny_bert, cats):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_bert}, "labels": ["POS", "NEG"]})
    eg = Example.from_dict(nlp.make_doc("good"), {"cats": cats})
    with pytest.raises(ValueError, match="E107"):
        nlp.initialize(lambda: [eg])


@pytest.mark.parametrize("setting,value,code", [("distill_temperature", 0.0, "E141"),
                                                ("distill_temperature", -1.0, "E141"),
                                                ("gold_weight", 1.5, "E142"), ("gold_weight", -0.1, "E142")])
def test_bad_distillation_settings(setting, value, code):
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match=code):
        nlp.add_pipe("bert_textcat", config={setting: value})


def test_trains_towards_the_teacher(tiny_bert):
    """Updates on soft targets bring the predictions to them (0.7 and 0.2),
    not to the gold-like extremes (an error of 0.3 and 0.2 there). The head's
    initial weights come from thinc's global seed, which other tests move."""
    fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_bert, "window": 32, "stride": 16}})
    egs = soft_examples(nlp)
    opt = nlp.initialize(lambda: egs)
    before = [abs(nlp(eg.text).cats["POS"] - eg.reference.cats["POS"]) for eg in egs]
    for _ in range(60):
        nlp.update(egs, sgd=opt, drop=0.0)
    after = [abs(nlp(eg.text).cats["POS"] - eg.reference.cats["POS"]) for eg in egs]
    assert max(after) < 0.1 and sum(after) < 0.5 * sum(before)
