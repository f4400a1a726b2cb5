"""bert_textcat: a transformer text classifier that sets doc.cats.

The model outputs logits; this component applies softmax (exclusive classes,
cross-entropy loss) or sigmoid (multi-label, binary cross-entropy, threshold).
"""
from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import dot_to_object, registry
from spacy.vocab import Vocab
from thinc.api import Config, ConfigValidationError, Model
from thinc.types import Floats2d

from ..errors import Errors, Warnings, warn
from ..models.encoder import is_windowed_model
from .base import WINDOW_DEFAULTS, InferenceSettings, LossUpdate, default_model
from .doc_checks import DocsOnly, check_docs
from .serialization import HFSerializationMixin

DEFAULT_CONFIG = Config({"model": default_model(
    "spacy-gptbert.BertTextCat.v1", name="sentence-transformers/all-MiniLM-L6-v2", pooling="mean",
    dropout=0.1, **WINDOW_DEFAULTS)})
DEFAULT_TEXTCAT_MODEL = DEFAULT_CONFIG.to_str()
# Where a distillation corpus keeps each doc's gold cats (doc.user_data), its
# doc.cats holding the teacher's probabilities: written by the `label` command.
GOLD_CATS_KEY = "gold_cats"
# How far from 1 the probabilities of exclusive classes may sum (float32 rounding).
DISTRIBUTION_TOLERANCE = 1e-3
# initialize: the model's layers initialize on this many docs (as spaCy's
# textcat), and the dev corpus is checked on this many examples (evaluation
# checks them all).
INIT_SAMPLE = 10
DEV_CHECK_SAMPLE = 1000


@Language.factory(
    "bert_textcat",
    assigns=["doc.cats"],
    default_config={
        "model": DEFAULT_CONFIG["model"],
        "exclusive_classes": True,
        "threshold": 0.5,
        "labels": [],
        "scorer": {"@scorers": "spacy-gptbert.textcat_scorer.v1"},
        "quantize": False,
        "onednn_prepack": True,
        "predict_precision": "fp32",
        "label_smoothing": 0.0,
        "distill_temperature": 1.0,
        "gold_weight": 0.0,
    },
    default_score_weights={
        "cats_score": 1.0, "cats_acc": None, "cats_exact_match": None, "cats_score_desc": None,
        "cats_micro_p": None, "cats_micro_r": None, "cats_micro_f": None, "cats_macro_p": None,
        "cats_macro_r": None, "cats_macro_f": None, "cats_macro_auc": None, "cats_f_per_type": None,
    },
)
def make_bert_textcat(
    nlp: Language, name: str, model: Model, exclusive_classes: bool, threshold: float,
    labels: List[str], scorer: Optional[Callable], quantize: bool = False, label_smoothing: float = 0.0,
    onednn_prepack: bool = True, distill_temperature: float = 1.0, gold_weight: float = 0.0,
    predict_precision: str = "fp32",
):
    """exclusive_classes: one label per doc (softmax + cross-entropy) or any
    number (sigmoid + binary cross-entropy). threshold: a multi-label class is
    positive at or above it (scoring). labels: fixed label order; empty = take
    them from the training data (or from a fine-tuned model's id2label).
    quantize: predict on the CPU with an int8 copy of the transformer's linear
    layers (those with outlier inputs stay float; training and saving use the
    float weights). onednn_prepack: fp32
    prediction on the CPU runs the linear layers with oneDNN's prepacked
    kernels (same arithmetic, faster; one extra copy of the linear weights).
    predict_precision: "fp32" (a doc's scores do not depend on its batch) or
    "mixed" (the autocast of mixed_precision training, batch-dependent).
    label_smoothing: train on gold labels moved this far towards uniform
    (exclusive: towards 1/K for each of K classes; multi-label: towards 0.5 for
    each label).
    Distillation (training on a teacher's probabilities in doc.cats, as the
    `label` command writes them): distill_temperature T softens the targets
    and the predictions alike in the loss (scaled by T * T, as in Hinton et
    al.); 1.0 trains on the probabilities as they are. gold_weight mixes in
    cross-entropy to the gold labels the `label` command kept (see
    GOLD_CATS_KEY) with this weight, the teacher's term getting 1 - gold_weight."""
    return BertTextCategorizer(
        nlp.vocab, model, name, exclusive_classes=exclusive_classes, threshold=threshold,
        labels=labels, scorer=scorer, quantize=quantize, label_smoothing=label_smoothing,
        onednn_prepack=onednn_prepack, distill_temperature=distill_temperature, gold_weight=gold_weight,
        predict_precision=predict_precision,
    )


@registry.scorers("spacy-gptbert.textcat_scorer.v1")
def make_textcat_scorer():
    return textcat_score


def textcat_score(examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
    """spaCy's cats scores (cats_score, cats_macro_f, per-label P/R/F,
    cats_macro_auc, ...) plus cats_acc: accuracy of the top label for exclusive
    classes, label-wise (Hamming) accuracy at the threshold for multi-label; and
    cats_exact_match: the share of docs whose predicted label set (top label, or
    the labels at or above the threshold) is exactly the gold one."""
    examples = list(examples)
    labels = kwargs.get("labels", [])
    multi_label = kwargs.get("multi_label", False)
    threshold = kwargs.get("threshold", 0.5)
    scores = Scorer.score_cats(
        examples, "cats", labels=labels, multi_label=multi_label, threshold=threshold,
        positive_label=kwargs.get("positive_label"),
    )
    scores["cats_acc"] = _accuracy(examples, labels, multi_label, threshold)
    scores["cats_exact_match"] = _exact_match(examples, labels, multi_label, threshold)
    return scores


def _scored_pairs(examples: List[Example]):
    """(gold cats, predicted cats) of the examples that have both."""
    pairs = [(eg.reference.cats, eg.predicted.cats) for eg in examples]
    return [(gold, pred) for gold, pred in pairs if gold and pred]


def _accuracy(examples: List[Example], labels, multi_label: bool, threshold: float) -> Optional[float]:
    right = total = 0
    for gold, pred in _scored_pairs(examples):
        if multi_label:
            for label in labels:
                if label in gold:
                    right += (pred.get(label, 0.0) >= threshold) == (gold[label] >= 0.5)
                    total += 1
        else:
            right += max(gold, key=gold.get) == max(pred, key=pred.get)
            total += 1
    return right / total if total else None


def _exact_match(examples: List[Example], labels, multi_label: bool, threshold: float) -> Optional[float]:
    if not multi_label:
        return _accuracy(examples, labels, multi_label, threshold)
    pairs = _scored_pairs(examples)
    # labels the gold doc leaves out are unknown, not negative, as in _accuracy
    right = sum(
        all((pred.get(label, 0.0) >= threshold) == (gold[label] >= 0.5) for label in labels if label in gold)
        for gold, pred in pairs
    )
    return right / len(pairs) if pairs else None


class BertTextCategorizer(DocsOnly, LossUpdate, InferenceSettings, HFSerializationMixin, TrainablePipe):
    state_cfg_keys = ("labels",)  # threshold and exclusive_classes come from the config

    def __init__(
        self, vocab: Vocab, model: Model, name: str = "bert_textcat", *,
        exclusive_classes: bool = True, threshold: float = 0.5, labels: Sequence[str] = (),
        scorer: Optional[Callable] = textcat_score, quantize: bool = False, label_smoothing: float = 0.0,
        onednn_prepack: bool = True, distill_temperature: float = 1.0, gold_weight: float = 0.0,
        predict_precision: str = "fp32",
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(Errors.E111.format(threshold=threshold))
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(Errors.E116.format(value=label_smoothing))
        if not distill_temperature > 0.0:
            raise ValueError(Errors.E141.format(value=distill_temperature))
        if not 0.0 <= gold_weight <= 1.0:
            raise ValueError(Errors.E142.format(value=gold_weight))
        for label in labels:
            _check_label(label)
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self._warned: set = set()
        self.set_inference(model, quantize, onednn_prepack, predict_precision)
        # Training settings, from the config.
        self.label_smoothing = label_smoothing
        self.distill_temperature = distill_temperature
        self.gold_weight = gold_weight
        _pool_only(model)
        self.cfg: Dict[str, Any] = {
            "labels": list(labels), "exclusive_classes": exclusive_classes, "threshold": threshold,
        }

    @property
    def labels(self) -> Tuple[str, ...]:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    def add_label(self, label: str) -> int:
        _check_label(label)
        if label in self.labels:
            return 0
        self.cfg["labels"].append(label)
        return 1

    # -- prediction ------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        docs = check_docs(docs)
        if not docs:
            return self.model.ops.alloc2f(0, len(self.labels))
        return self._activate(self.predict_model(docs))

    def _activate(self, logits: Floats2d) -> Floats2d:
        ops = self.model.ops
        return ops.softmax(logits) if self.cfg["exclusive_classes"] else ops.sigmoid(logits)

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        scores = self.model.ops.to_numpy(scores)
        for i, doc in enumerate(docs):
            for j, label in enumerate(self.labels):
                doc.cats[label] = float(scores[i, j])

    # -- training ----------------------------------------------------------
    def update_input(self, examples: List[Example]) -> Optional[List[Doc]]:
        """update (base.LossUpdate): the model reads the predicted docs."""
        return [eg.predicted for eg in examples] or None

    def get_loss(self, examples: Iterable[Example], logits: Floats2d) -> Tuple[float, Floats2d]:
        """Mean cross-entropy (exclusive) or summed-over-labels binary
        cross-entropy (multi-label) per annotated example, and its gradient
        with respect to the logits. Labels missing from an example's cats are
        left out of the loss.

        The targets are the example's cats: 0/1 gold labels or any
        probabilities (a teacher's, for distillation; for exclusive classes a
        distribution over the labels). With distill_temperature T the targets
        and the predictions are both softened by T and the loss is scaled by
        T * T, so its gradient keeps its size as T changes. With gold_weight
        w > 0 the loss is (1 - w) times that plus w times the plain loss
        (T = 1) on the gold labels kept under GOLD_CATS_KEY (or the cats)."""
        examples = list(examples)
        truths, mask = self._truths([eg.reference.cats for eg in examples])
        loss, d_logits = self._loss(logits, truths, mask, self.distill_temperature)
        if self.gold_weight:
            gold = [eg.reference.user_data.get(GOLD_CATS_KEY) or eg.reference.cats for eg in examples]
            gold_truths, gold_mask = self._truths(gold)
            gold_loss, d_gold = self._loss(logits, gold_truths, gold_mask, 1.0)
            w = self.gold_weight
            loss, d_logits = (1 - w) * loss + w * gold_loss, d_logits * (1 - w) + d_gold * w
        return loss, d_logits

    def _loss(self, logits: Floats2d, truths: numpy.ndarray, mask: numpy.ndarray,
              temperature: float) -> Tuple[float, Floats2d]:
        ops = self.model.ops
        xp = ops.xp
        exclusive = self.cfg["exclusive_classes"]
        if self.label_smoothing:
            # Both losses below and their gradient are written for targets in
            # [0, 1] (summing to 1 if exclusive), so smoothed targets need nothing else.
            n_classes = truths.shape[1] if exclusive else 2
            truths = truths * (1.0 - self.label_smoothing) + self.label_smoothing / n_classes
        truths, mask = ops.asarray2f(truths), ops.asarray2f(mask)
        logits = ops.asarray2f(logits)
        if temperature != 1.0:
            truths = _soften(xp, truths, temperature, exclusive)
            logits = logits / temperature
        n_annotated = max(float((mask.sum(axis=1) > 0).sum()), 1.0)
        # Log-probabilities from the logits, not log(probs): exact for confident
        # predictions, and every term is >= 0 (log(p + eps) could round below 0).
        # The loss is cross-entropy (it includes the targets' entropy); its
        # gradient is the same as KL divergence's.
        if exclusive:
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
            # Rows without annotation have an all-zero mask and contribute nothing.
            loss = -float((truths * log_probs * mask).sum())
        else:
            loss = float((mask * (truths * _softplus(xp, -logits) + (1 - truths) * _softplus(xp, logits))).sum())
        probs = self._activate(logits)
        # d(T^2 * loss(logits / T)) / d logits = T * (probs_T - truths_T)
        d_logits = (probs - truths) * mask * (temperature / n_annotated)
        return loss * temperature ** 2 / n_annotated, d_logits

    def _truths(self, all_cats: List[Dict[str, float]]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        labels = self.labels
        truths = numpy.zeros((len(all_cats), len(labels)), dtype="float32")
        mask = numpy.zeros((len(all_cats), len(labels)), dtype="float32")
        for i, cats in enumerate(all_cats):
            self._check_cats(cats)
            for label in cats:
                if label not in labels and label not in self._warned:
                    self._warned.add(label)
                    warn(Warnings.W002.format(label=label, name=self.name, labels=list(labels)))
            if not cats:
                continue
            for j, label in enumerate(labels):
                if label in cats:
                    truths[i, j] = cats[label]
                    mask[i, j] = 1.0
            if self.cfg["exclusive_classes"]:
                mask[i, :] = 1.0  # exclusive: every unlisted label is a negative
        return truths, mask

    def _check_cats(self, cats: Dict[str, float]) -> None:
        for label, value in cats.items():
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(Errors.E108.format(value=value, label=label))
        if self.cfg["exclusive_classes"] and cats:
            # One true label (gold), or a distribution over the labels (a teacher's).
            n_true = sum(1 for v in cats.values() if v > 0.5)
            if n_true != 1 and abs(sum(cats.values()) - 1.0) > DISTRIBUTION_TOLERANCE:
                raise ValueError(Errors.E107.format(name=self.name, n_true=n_true, cats=cats,
                                                    total=sum(cats.values())))

    def initialize(
        self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """One streamed pass over the training data, as spaCy's textcat makes
        (the corpus is never held in memory): every example is checked before
        any training step and gives its labels; the model initializes on the
        first INIT_SAMPLE docs."""
        if not callable(get_examples):
            validate_get_examples(get_examples, "BertTextCategorizer.initialize")  # spaCy's E930
        model_labels = self._fine_tuned_labels()
        if labels is not None:
            for label in labels:
                self.add_label(label)
        if model_labels is not None:
            if self.labels and list(self.labels) != model_labels:
                raise ValueError(Errors.E112.format(name=self.name, given=list(self.labels),
                                                    model_labels=model_labels))
            self.cfg["labels"] = list(model_labels)
        collect = model_labels is None and not self.labels  # else the label set is fixed
        sample: List[Doc] = []
        seen = set()
        for eg in get_examples():
            validate_examples([eg], "BertTextCategorizer.initialize")
            self._check_cats(eg.reference.cats)
            seen.update(eg.reference.cats)
            if collect:
                for label in eg.reference.cats:
                    self.add_label(label)
            if len(sample) < INIT_SAMPLE:
                sample.append(eg.x)
        if not sample:
            raise ValueError(Errors.E109.format(name=self.name))
        if model_labels is not None:  # the head cannot learn a label it has no output for
            self._check_model_knows(seen, model_labels, "training data")
        if not self.labels:
            raise ValueError(Errors.E106.format(name=self.name))
        if self.cfg["exclusive_classes"] and len(self.labels) == 1:
            raise ValueError(Errors.E120.format(name=self.name, label=self.labels[0]))
        self._check_dev_data(nlp, model_labels)
        self.model.initialize(X=sample, Y=self.model.ops.alloc2f(len(sample), len(self.labels)))

    def _check_model_knows(self, labels: Iterable[str], model_labels: List[str], where: str) -> None:
        unknown = sorted(set(labels) - set(model_labels))
        if unknown:
            raise ValueError(Errors.E117.format(where=where, unknown=unknown, name=self.name, model_labels=model_labels))

    def _check_dev_data(self, nlp: Optional[Language], model_labels: Optional[List[str]]) -> None:
        """The first DEV_CHECK_SAMPLE examples of the dev corpus `spacy train`
        will evaluate on, checked now (E117, E110, E107, E108) rather than at
        the first evaluation, hours into training (which checks them all)."""
        self._check_evaluation_data(islice(_dev_examples(nlp), DEV_CHECK_SAMPLE), model_labels)

    def _check_evaluation_data(self, examples: Iterable[Example], model_labels: Optional[List[str]] = None) -> None:
        seen = set()
        for eg in examples:
            self._check_cats(eg.reference.cats)
            seen.update(eg.reference.cats)
        if model_labels is not None:
            self._check_model_knows(seen, model_labels, "evaluation data")
        unknown = sorted(seen - set(self.labels))
        if unknown:
            raise ValueError(Errors.E110.format(label=unknown[0], labels=list(self.labels)))

    def _fine_tuned_labels(self) -> Optional[List[str]]:
        """Labels of an HFSequenceClassifier model (loads it), else None."""
        for node in self.model.walk():
            if is_windowed_model(node) and node.attrs["kind"] == "seq_cls":
                node.initialize()
                return list(node.attrs["labels"])
        return None

    # -- scoring -----------------------------------------------------------
    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        examples = list(examples)
        validate_examples(examples, "BertTextCategorizer.score")
        self._check_evaluation_data(examples)
        kwargs.setdefault("labels", self.labels)
        kwargs.setdefault("multi_label", not self.cfg["exclusive_classes"])
        kwargs.setdefault("threshold", self.cfg["threshold"])
        return self.scorer(examples, **kwargs)


def _dev_examples(nlp: Optional[Language]) -> Iterable[Example]:
    """The examples of [training] dev_corpus in nlp.config; none when the
    config names no readable corpus (e.g. a pipeline built in Python)."""
    if nlp is None:
        return []
    try:
        config = nlp.config.interpolate()
        reader = dot_to_object(config, config["training"]["dev_corpus"])
        corpus = registry.resolve({"corpus": reader})["corpus"]
    except (KeyError, TypeError, ValueError, ConfigValidationError):  # no path (E913), no such section
        return []
    return corpus(nlp)


def _pool_only(model: Model) -> None:
    """When the classifier's own encoder feeds only pooled (cls/mean) layers,
    skip pooling its outputs onto spaCy tokens (saves memory on long docs)."""
    names = [node.name for node in model.walk()]
    if not any(name.startswith("select_") for name in names) or "select_tokens" in names:
        return
    for node in model.walk():
        if is_windowed_model(node) and node.attrs["kind"] == "encoder":
            node.attrs["return_tokens"] = False


def _soften(xp, truths, temperature: float, exclusive: bool):
    """Targets at temperature T: softmax(log(p) / T) over the labels
    (exclusive), or sigmoid(logit(p) / T) per label. 0/1 targets stay 0/1."""
    with numpy.errstate(divide="ignore", invalid="ignore"):
        if exclusive:
            scaled = xp.log(truths) / temperature
            scaled = xp.exp(scaled - scaled.max(axis=1, keepdims=True))
            soft = scaled / scaled.sum(axis=1, keepdims=True)
        else:
            odds = (truths / (1 - truths)) ** (1.0 / temperature)
            soft = xp.where(truths >= 1.0, 1.0, odds / (1 + odds))
    # Rows without annotation (all zeros) come out as NaN; their mask is 0.
    return xp.nan_to_num(soft, nan=0.0).astype(truths.dtype)


def _softplus(xp, x):
    """log(1 + exp(x)) without overflow: -log(sigmoid(-x))."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _check_label(label) -> None:
    if not isinstance(label, str) or not label:
        raise ValueError(Errors.E113.format(label=label))
