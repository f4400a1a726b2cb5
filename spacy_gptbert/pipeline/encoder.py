"""bert_encoder: a shared BERT-family encoder. Sets doc.tensor (one row per
token), pooled doc vectors and vector/similarity hooks; feeds downstream
components through EncoderListener layers."""
from itertools import islice
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, Ragged, set_dropout_rate

from ..errors import Errors
from ..extensions import register_extensions
from ..models.encoder import EncoderOutput, is_windowed_model
from ..models.listener import EncoderListener
from ..models.pooling import check_pooling
from . import hooks
from .base import WINDOW_DEFAULTS, InferenceSettings, begin_update, default_model
from .doc_checks import DocsOnly, check_docs
from .serialization import HFSerializationMixin

DEFAULT_CONFIG = Config({"model": default_model(
    "spacy-gptbert.Encoder.v1", name="sentence-transformers/all-MiniLM-L6-v2", **WINDOW_DEFAULTS)})
DEFAULT_ENCODER_MODEL = DEFAULT_CONFIG.to_str()

register_extensions()


@Language.factory(
    "bert_encoder",
    assigns=["doc.tensor", "doc._.bert_pooled"],
    default_config={
        "model": DEFAULT_CONFIG["model"],
        "doc_pooling": "mean",
        "store_wordpieces": False,
        "quantize": False,
        "onednn_prepack": True,
        "predict_precision": "fp32",
    },
)
def make_bert_encoder(
    nlp: Language, name: str, model: Model, doc_pooling: str, store_wordpieces: bool, quantize: bool = False,
    onednn_prepack: bool = True, predict_precision: str = "fp32",
):
    """doc_pooling: "mean" or "cls", what doc.vector / span similarity use.
    store_wordpieces: also keep the wordpiece outputs in doc._.bert_wordpieces
    (memory-heavy; off by default). quantize: predict on the CPU with an int8
    copy of the transformer's linear layers (those with outlier inputs stay
    float; training and saving use the float weights). onednn_prepack: fp32
    prediction on the CPU runs the linear layers with oneDNN's prepacked
    kernels (same arithmetic, faster; one extra copy of the linear weights).
    predict_precision: "fp32" (a doc's vectors do not depend on its batch) or
    "mixed" (the autocast of mixed_precision training, batch-dependent)."""
    return BertEncoder(nlp.vocab, model, name, doc_pooling=doc_pooling, store_wordpieces=store_wordpieces,
                       quantize=quantize, onednn_prepack=onednn_prepack, predict_precision=predict_precision)


class BertEncoder(DocsOnly, InferenceSettings, HFSerializationMixin, TrainablePipe):
    def __init__(
        self, vocab: Vocab, model: Model, name: str = "bert_encoder", *,
        doc_pooling: str = "mean", store_wordpieces: bool = False, quantize: bool = False,
        onednn_prepack: bool = True, predict_precision: str = "fp32",
    ) -> None:
        self.set_inference(model, quantize, onednn_prepack, predict_precision)
        self.vocab = vocab
        self.model = model
        self.name = name
        self.listener_map: Dict[str, List[EncoderListener]] = {}
        self.cfg = {"doc_pooling": check_pooling(doc_pooling), "store_wordpieces": store_wordpieces}
        for node in model.walk():
            if is_windowed_model(node):
                node.attrs["return_wordpieces"] = store_wordpieces

    # -- listeners (the same protocol as spaCy's Tok2Vec) --------------------
    @property
    def listeners(self) -> List[EncoderListener]:
        return [m for c in self.listening_components for m in self.listener_map[c]]

    @property
    def listening_components(self) -> List[str]:
        return list(self.listener_map.keys())

    def add_listener(self, listener: EncoderListener, component_name: str) -> None:
        listener.component_name, listener.upstream_component = component_name, self.name
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        if self.model.has_dim("nO") and self.model.get_dim("nO") is not None:
            listener.set_dim("nO", self.model.get_dim("nO"), force=True)

    def remove_listener(self, listener: EncoderListener, component_name: str) -> bool:
        if listener in self.listener_map.get(component_name, []):
            self.listener_map[component_name].remove(listener)
            if not self.listener_map[component_name]:
                del self.listener_map[component_name]
            return True
        return False

    def find_listeners(self, component) -> None:
        names = ("*", self.name)
        if isinstance(getattr(component, "model", None), Model):
            for node in component.model.walk():
                if isinstance(node, EncoderListener) and node.upstream_name in names:
                    self.add_listener(node, component.name)

    # -- prediction ------------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> EncoderOutput:
        docs = check_docs(docs)
        if not docs:
            if not self.model.has_dim("nO"):  # the width comes with the weights
                raise ValueError(Errors.E009.format(name=self.name))
            ops, width = self.model.ops, self.model.get_dim("nO")
            empty = ops.alloc2f(0, width)
            return EncoderOutput(Ragged(empty, ops.alloc1i(0)), empty, empty)
        return self.predict_model(docs)

    def set_annotations(self, docs: Sequence[Doc], outputs: EncoderOutput) -> None:
        pooled = self.cfg["doc_pooling"]
        wordpieces = outputs.doc_wordpieces()
        for i, (doc, tokvecs) in enumerate(zip(docs, outputs.doc_tokens())):
            # Copies, so one kept Doc does not pin the whole batch's arrays.
            doc.tensor = tokvecs.copy()
            doc._.bert_pooled = {"cls": outputs.cls[i].copy(), "mean": outputs.mean[i].copy(), "doc": pooled}
            if wordpieces:
                doc._.bert_wordpieces = wordpieces[i].copy()
            hooks.install(doc)

    # -- training ----------------------------------------------------------
    def update(
        self, examples: Iterable[Example], *, drop: float = 0.0,
        sgd: Optional[Optimizer] = None, losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        examples, losses = begin_update(self, examples, losses)
        docs = [eg.predicted for eg in examples]
        if not self.listeners:
            return losses  # nothing downstream to learn from
        set_dropout_rate(self.model, drop)
        outputs, backprop_encoder = self.model.begin_update(docs)
        ops = self.model.ops
        d_outputs = EncoderOutput(
            Ragged(ops.alloc2f(*outputs.tokens.dataXd.shape), outputs.tokens.lengths),
            ops.alloc2f(*outputs.cls.shape),
            ops.alloc2f(*outputs.mean.shape),
        )

        def accumulate_gradient(d_part: EncoderOutput) -> None:
            # Listeners send sparse gradients: only the field they used is set.
            for field in ("cls", "mean"):
                grad = getattr(d_part, field)
                if grad is not None:
                    getattr(d_outputs, field)[...] += grad
                    losses[self.name] += float((grad ** 2).sum())
            if d_part.tokens is not None:
                d_outputs.tokens.dataXd[...] += d_part.tokens.dataXd
                losses[self.name] += float((d_part.tokens.dataXd ** 2).sum())

        def backprop(d_part: EncoderOutput):
            accumulate_gradient(d_part)
            backprop_encoder(d_outputs)
            if sgd is not None:
                self.finish_update(sgd)
            return []

        batch_id = EncoderListener.get_batch_id(docs)
        for listener in self.listeners[:-1]:
            listener.receive(batch_id, outputs, accumulate_gradient)
        self.listeners[-1].receive(batch_id, outputs, backprop)
        return losses

    def get_loss(self, examples, scores) -> None:
        return None  # the encoder learns only from its listeners' losses

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None):
        sample = list(islice(get_examples(), 10))
        if not sample:
            raise ValueError(Errors.E109.format(name=self.name))
        validate_get_examples(lambda: sample, "BertEncoder.initialize")
        sample = [eg.x for eg in sample]
        self.model.initialize(X=sample)
        self._after_load()

    def _after_load(self) -> None:
        """Tell listeners the encoder's width, once it is known."""
        width = self.model.get_dim("nO")
        for listener in self.listeners:
            listener.set_dim("nO", width, force=True)

    def add_label(self, label):
        raise NotImplementedError
