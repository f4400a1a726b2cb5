"""gpt_generator: a trainable GPT text generator in the spaCy pipeline.

Prediction builds one prompt per Doc (template or registered function), and
generates for a whole batch with one left-padded Hugging Face `generate` call.
Training uses the causal-LM loss in two modes:
    "lm"      the Doc text is the target (continued pretraining / from scratch);
    "prompt"  the prompt comes from the reference Doc (text and/or gold cats),
              the loss covers the completion only (prompt targets masked).
Scoring (GPTGenerator.lm_stats here, the scores in generator_scoring.py)
reports perplexity, bits and nats per character on the dev Docs, the
diversity of the generated texts (distinct n-grams, repeated 4-grams) and,
with a bert_textcat in the pipeline, how often the generated text is
classified as the label that was asked for.
"""
import random
import weakref
import zlib
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model

from ..errors import Errors, Warnings, warn
from ..extensions import register_extensions
from ..models import generator_model as lm_model
from ..models.gpt import IGNORE_INDEX, GenerationSettings, Rows
from ..text_checks import clean_texts
from .base import LossUpdate, default_model
from .doc_checks import DocsOnly, check_docs
from .generator_scoring import (  # noqa: F401  (their old home: re-exported)
    QUALITY_KEYS, SCORE_KEYS, find_textcat, generated_texts, generation_agreement, generation_quality,
    generator_score, make_generator_scorer, ngrams,
)
from . import label_steering
from .prompts import PromptFunc, as_prompt, prompt_label, uses_text
from .serialization import HFSerializationMixin

__all__ = ["GPTGenerator", "make_gpt_generator", "generator_score", "generation_agreement"]

register_extensions()

DEFAULT_CONFIG = Config({"model": default_model("spacy-gptbert.CausalLM.v1", name="gpt2")})
DEFAULT_CONFIG_STR = DEFAULT_CONFIG.to_str()
MODES = ("lm", "prompt")
EVAL_BATCH_ROWS = 16  # rows per no-grad forward when scoring


@Language.factory(
    "gpt_generator",
    assigns=["doc._.generation", "doc._.generations"],
    default_config={
        "model": DEFAULT_CONFIG["model"],
        "prompt": "{text}",
        "mode": "lm",
        "max_new_tokens": 32,
        "do_sample": False,
        "temperature": 1.0,
        "top_k": 0,
        "top_p": 1.0,
        "repetition_penalty": 1.0,
        "num_return_sequences": 1,
        "stop": [],
        "seed": None,
        "on_long_prompt": "truncate",
        "completion_attr": "completion",
        "onednn_prepack": True,
        "guidance_prompt": None,
        "guidance_scale": 1.0,
        "label_bias": 0.0,
        "scorer": {"@scorers": "spacy-gptbert.generator_scorer.v1"},
    },
    # gen_score = exp(-nats per char): higher is better, so spaCy can select on it.
    # Weight 0.0 shows a score in the training table without weighting it.
    default_score_weights={
        "gen_score": 1.0, "gen_loss_per_char": 0.0, "gen_ppl": 0.0, "gen_bpc": None, "gen_agreement": None,
        "gen_distinct_1": None, "gen_distinct_2": None, "gen_repeat_4gram": None,
    },
)
def make_gpt_generator(
    nlp: Language, name: str, model: Model, prompt: Union[str, Callable[[Doc], str]], mode: str,
    max_new_tokens: int, do_sample: bool, temperature: float, top_k: int, top_p: float,
    repetition_penalty: float, num_return_sequences: int, stop: List[str], seed: Optional[int],
    on_long_prompt: str, completion_attr: str, scorer: Optional[Callable], onednn_prepack: bool = True,
    guidance_prompt: Optional[Union[str, Callable[[Doc], str]]] = None, guidance_scale: float = 1.0,
    label_bias: float = 0.0,
):
    """prompt: template with {text}, {label}, {cats}, or a registered prompt
    function. mode: "lm" or "prompt" (training). on_long_prompt: "truncate"
    (keep the end, warn) or "error". completion_attr: Doc extension holding the
    completion in prompt mode when the prompt uses the Doc text.
    onednn_prepack: generation on the CPU runs the linear layers with oneDNN's
    prepacked kernels (same fp32 arithmetic, faster; one extra copy of the
    linear weights). guidance_prompt, guidance_scale: classifier-free
    guidance at generation: with guidance_scale > 1, each token moves away
    from what guidance_prompt (a template or prompt function, e.g. the other
    label's prompt) would make likely; 1.0 is off. label_bias: steer each
    token toward the doc's label by this weight times the label's word
    log-odds in the training texts (label_steering.py); 0.0 is off."""
    return GPTGenerator(
        nlp.vocab, model, name, nlp=nlp, prompt=prompt, mode=mode,
        settings=GenerationSettings(
            max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_k=top_k,
            top_p=top_p, repetition_penalty=repetition_penalty, num_return_sequences=num_return_sequences,
            stop=list(stop), seed=seed, guidance_scale=guidance_scale, label_bias=label_bias,
        ),
        on_long_prompt=on_long_prompt, completion_attr=completion_attr, scorer=scorer,
        onednn_prepack=onednn_prepack, guidance_prompt=guidance_prompt,
    )


# ---------------------------------------------------------------------------
# Settings checks (construction time, so errors never surface mid-pipe)
# ---------------------------------------------------------------------------


MIN_TEMPERATURE = 0.01
REPETITION_PENALTY_RANGE = (0.01, 100.0)
GUIDANCE_SCALE_RANGE = (1.0, 100.0)
LABEL_BIAS_RANGE = (0.0, 100.0)


def check_settings(s: GenerationSettings, on_long_prompt: str, mode: str, guided: bool = False) -> None:
    def bad(setting, value, why):
        raise ValueError(Errors.E204.format(setting=setting, value=value, why=why))

    if mode not in MODES:
        raise ValueError(Errors.E206.format(mode=mode))
    if s.num_return_sequences < 1:
        bad("num_return_sequences", s.num_return_sequences, "it must be at least 1.")
    if s.num_return_sequences > 1 and not s.do_sample:
        raise ValueError(Errors.E201.format(n=s.num_return_sequences))
    if s.max_new_tokens < 1:
        bad("max_new_tokens", s.max_new_tokens, "it must be at least 1.")
    # Below these bounds the logits are divided into inf and sampling fails (NaN probabilities).
    if not s.temperature >= MIN_TEMPERATURE:
        bad("temperature", s.temperature, f"it must be >= {MIN_TEMPERATURE}; use do_sample = false for greedy "
                                          "decoding.")
    if s.top_k < 0:
        bad("top_k", s.top_k, "it must be >= 0 (0 turns top-k filtering off).")
    if not 0.0 < s.top_p <= 1.0:
        bad("top_p", s.top_p, "it must lie in (0, 1] (1.0 turns nucleus sampling off).")
    if not REPETITION_PENALTY_RANGE[0] <= s.repetition_penalty <= REPETITION_PENALTY_RANGE[1]:
        bad("repetition_penalty", s.repetition_penalty, "it must lie in [{}, {}] (1.0 means no penalty, "
            "above 1 discourages repeats).".format(*REPETITION_PENALTY_RANGE))
    if not s.do_sample:
        for name, value, neutral in (("temperature", s.temperature, 1.0), ("top_k", s.top_k, 0),
                                     ("top_p", s.top_p, 1.0)):
            if value != neutral:
                bad(name, value, f"it only affects sampling, but do_sample = false. Set do_sample = "
                                 f"true, or leave {name} at {neutral}.")
    if s.seed is not None and (not isinstance(s.seed, int) or s.seed < 0):
        bad("seed", s.seed, "give a non-negative integer, or null for unseeded sampling.")
    if any(not isinstance(x, str) or not x for x in s.stop):
        bad("stop", s.stop, "stop strings must be non-empty strings.")
    if on_long_prompt not in ("truncate", "error"):
        bad("on_long_prompt", on_long_prompt, 'use "truncate" or "error".')
    if not GUIDANCE_SCALE_RANGE[0] <= s.guidance_scale <= GUIDANCE_SCALE_RANGE[1]:
        bad("guidance_scale", s.guidance_scale, "it must lie in [{}, {}] (1.0 turns guidance off; 1.5 to 3 "
            "are common).".format(*GUIDANCE_SCALE_RANGE))
    if s.guidance_scale != 1.0 and not guided:
        bad("guidance_scale", s.guidance_scale, "guidance needs a guidance_prompt: the text to steer away "
            "from, e.g. the prompt template with the other label (see docs/generation.md).")
    if not LABEL_BIAS_RANGE[0] <= s.label_bias <= LABEL_BIAS_RANGE[1]:
        bad("label_bias", s.label_bias, "it must lie in [{}, {}] (0.0 turns label steering off; 0.5 to 1 "
            "are common).".format(*LABEL_BIAS_RANGE))


def encode(lm: Model, texts: Sequence[str], what: str = "text") -> List[List[int]]:
    """Token ids of texts made safe for the Rust tokenizer (text_checks): a
    lone surrogate in one document must not stop a pipe or a training run."""
    return lm_model.encode(lm, clean_texts(texts, what))


# ---------------------------------------------------------------------------
# The component
# ---------------------------------------------------------------------------


class GPTGenerator(DocsOnly, LossUpdate, HFSerializationMixin, TrainablePipe):
    # learned at initialize (count_label_tokens), restored by spacy.load
    state_cfg_keys = ("label_counts",)

    def __init__(
        self, vocab: Vocab, model: Model, name: str = "gpt_generator", *, nlp: Optional[Language] = None,
        prompt: Union[str, PromptFunc] = "{text}", mode: str = "lm",
        settings: Optional[GenerationSettings] = None, on_long_prompt: str = "truncate",
        completion_attr: str = "completion", scorer: Optional[Callable] = generator_score,
        onednn_prepack: bool = True, guidance_prompt: Optional[Union[str, PromptFunc]] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.settings = settings or GenerationSettings()
        check_settings(self.settings, on_long_prompt, mode, guided=guidance_prompt is not None)
        self.prompt = as_prompt(prompt)  # E202 for unknown template fields
        self.guidance_prompt = None if guidance_prompt is None else as_prompt(guidance_prompt)
        self.mode = mode
        self.on_long_prompt = on_long_prompt
        self.completion_attr = completion_attr
        # Unregistered, a DocBin's stored values for it could not be read and
        # training would silently learn the doc's text instead.
        register_extensions([completion_attr])
        self.onednn_prepack = onednn_prepack
        self._nlp = weakref.ref(nlp) if nlp is not None else (lambda: None)
        # Settings come from the config, so cfg holds no setting (a saved cfg
        # never overrides one given at spacy.load), only what initialize learned.
        self.cfg: Dict[str, Any] = {"label_counts": {}}
        self._warned_long = False
        self._label_table: Tuple[Any, int, Dict[str, numpy.ndarray]] = (None, 0, {})

    @property
    def lm(self) -> Model:
        return lm_model.find_causal_lm(self.model)

    # -- prediction --------------------------------------------------------
    def predict(self, docs: Iterable[Doc]) -> List[List[str]]:
        """One padded generate call for the batch -> generations per doc."""
        docs = check_docs(docs)
        if not docs:
            return []
        self._check_ready()
        prompts = self.prompt_ids(docs)
        guided = self.guidance_prompt is not None and self.settings.guidance_scale != 1.0  # 1.0: nothing to mix
        guidance = self.prompt_ids(docs, self.guidance_prompt) if guided else None
        # Longest first: a caller's slice of sorted prompts pads little, and the
        # order is undone below.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        seeds = self._doc_seeds(docs)
        bias = self._bias_rows(docs)
        generated = lm_model.generate_texts(self.lm, [prompts[i] for i in order], self.settings,
                                            onednn_prepack=self.onednn_prepack,
                                            row_seeds=None if seeds is None else [seeds[i] for i in order],
                                            guidance=None if guidance is None else [guidance[i] for i in order],
                                            bias=None if bias is None else bias[order])
        result: List[List[str]] = [[] for _ in docs]
        for j, i in enumerate(order):
            result[i] = generated[j]
        return result

    def _bias_rows(self, docs: Sequence[Doc]) -> Optional[numpy.ndarray]:
        """(len(docs), V) label steering per doc, or None when label_bias is 0."""
        if not self.settings.label_bias:
            return None
        vocab_size = lm_model.vocab_size(self.lm)
        counts = self.cfg.get("label_counts") or {}
        cached_counts, cached_size, table = self._label_table
        if cached_counts is not counts or cached_size != vocab_size:
            table = label_steering.log_odds(counts, vocab_size)
            self._label_table = (counts, vocab_size, table)
        if not table:
            raise ValueError(Errors.E210.format(value=self.settings.label_bias, name=self.name))
        labels = [prompt_label(self.prompt, doc) for doc in docs]
        return label_steering.bias_rows(table, labels, self.settings.label_bias, vocab_size)

    def _doc_seeds(self, docs: Sequence[Doc]) -> Optional[List[int]]:
        """With a seed, each doc samples from its own random stream, seeded
        from the seed and the doc's text: a doc gets the same generations on
        every run, alone or in a batch of any size or company (`apply
        --batch-size` may change between runs), and docs with the same prompt
        (a template that only reads the label) do not repeat each other."""
        seed = self.settings.seed
        if seed is None or not self.settings.do_sample:
            return None
        return [(seed + zlib.crc32(doc.text.encode("utf8", "surrogatepass"))) % 2**31 for doc in docs]

    def prompt_ids(self, docs: Sequence[Doc], prompt: Optional[PromptFunc] = None) -> List[List[int]]:
        """[BOS] + prompt tokens per doc, fitted into the context (see
        on_long_prompt); `prompt` instead of the component's (the guidance prompt)."""
        bos, _, _ = lm_model.special_ids(self.lm)
        prompts = [self._prompt_text(doc, i, prompt) for i, doc in enumerate(docs)]
        ids = [[bos] + p for p in encode(self.lm, prompts, "prompt")]
        room = self._prompt_room()
        for i, p in enumerate(ids):
            if len(p) <= room:
                continue
            info = dict(index=i, n_tokens=len(p), max_tokens=room + self.settings.max_new_tokens,
                        max_new_tokens=self.settings.max_new_tokens)
            if self.on_long_prompt == "error":
                raise ValueError(Errors.E203.format(**info))
            if not self._warned_long:  # once per component: long prompts are a setting, not an event
                warn(Warnings.W001.format(kept=room, **info))
                self._warned_long = True
            ids[i] = p[-room:]  # keep the end: it is what the continuation follows
        return ids

    def _prompt_text(self, doc: Doc, index: int, prompt: Optional[PromptFunc] = None) -> str:
        """The prompt for one doc; a registered prompt function that returns
        something other than a string fails here with E220, not in the tokenizer."""
        text = (prompt or self.prompt)(doc)
        if not isinstance(text, str):
            raise TypeError(Errors.E220.format(what="prompt", index=index, type=type(text).__name__))
        return text

    def _prompt_room(self) -> int:
        room = lm_model.context_size(self.lm) - self.settings.max_new_tokens
        if room < 1:
            raise ValueError(Errors.E204.format(
                setting="max_new_tokens", value=self.settings.max_new_tokens,
                why=f"it must be smaller than the model's context of {lm_model.context_size(self.lm)} tokens."))
        return room

    def set_annotations(self, docs: Iterable[Doc], generations: List[List[str]]) -> None:
        for doc, texts in zip(docs, generations):
            doc._.generations = list(texts)
            doc._.generation = texts[0] if texts else ""

    def _check_ready(self) -> None:
        if not lm_model.is_ready(self.lm):
            raise ValueError(Errors.E009.format(name=self.name))

    # -- training ----------------------------------------------------------
    def update_input(self, examples: List[Example]) -> Optional[Rows]:
        """update (base.LossUpdate): the training rows, shuffled (see training_rows)."""
        self._check_ready()
        rows = self.training_rows(examples, shuffle=True)
        return rows if rows.input_ids else None

    def loss_input(self, nll, rows: Rows) -> Tuple[Any, Rows]:
        """get_loss needs the rows too: it counts their target tokens."""
        return nll, rows

    def get_loss(self, examples: Iterable[Example], scores: Tuple[Any, Rows]) -> Tuple[float, Any]:
        """Mean NLL per target token and its gradient w.r.t. the per-row NLL sums
        (the model's output): d(sum / N) / d(row sum) = 1 / N for every row."""
        nll, rows = scores
        n_targets = max(sum(sum(t != IGNORE_INDEX for t in row) for row in rows.targets), 1)
        d_nll = self.model.ops.alloc1f(len(rows.input_ids)) + 1.0 / n_targets
        return float(nll.sum()) / n_targets, d_nll

    def training_rows(self, examples: List[Example], shuffle: bool) -> Rows:
        """LM mode: docs packed into full context blocks (a random offset when
        shuffling, so block boundaries change between epochs). Prompt mode: one
        [BOS] prompt completion [EOS] sequence per example, prompt masked."""
        lm = self.lm
        if self.mode == "lm":
            ids = encode(lm, [eg.reference.text for eg in examples])
            shift = random.randrange(lm_model.context_size(lm)) if shuffle else 0
            return lm_model.packed_rows(lm, ids, shift)
        prompts, completions = self._prompt_pairs(examples)
        return lm_model.sequence_rows(lm, encode(lm, prompts, "prompt"), encode(lm, completions), True)

    def _prompt_pairs(self, examples: List[Example]) -> Tuple[List[str], List[str]]:
        prompts, completions = [], []
        for i, eg in enumerate(examples):
            prompts.append(self._prompt_text(eg.reference, i))
            completions.append(self._completion(eg.reference, i))
        return prompts, completions

    def _completion(self, doc: Doc, index: int) -> str:
        """doc._.<completion_attr> if set, else the Doc text when the prompt does not use it."""
        value = doc._.get(self.completion_attr)
        if value:
            return str(value)
        if uses_text(self.prompt):
            raise ValueError(Errors.E207.format(attr=self.completion_attr, index=index))
        return doc.text

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None) -> None:
        """Load (pretrained) or build (scratch: tokenizer trained on the
        training texts) the model, and check settings against its context."""
        if not callable(get_examples):
            validate_get_examples(get_examples, "GPTGenerator.initialize")  # spaCy's E930
        examples = list(get_examples())
        # No examples is fine for a pretrained model; a scratch model fails
        # below with E209 (nothing to train its tokenizer on), not spaCy's E930.
        if examples:
            validate_examples(examples, "GPTGenerator.initialize")
        if nlp is not None:
            self._nlp = weakref.ref(nlp)
        if self.mode == "prompt":
            prompts, completions = self._prompt_pairs(examples)  # E207 now rather than mid-training
            texts = [p + c for p, c in zip(prompts, completions)]
        else:
            texts = [eg.reference.text for eg in examples]
        self.model.initialize(X=clean_texts(texts))  # the scratch tokenizer trains on them
        self._prompt_room()
        self.count_label_tokens(examples)
        if self.settings.label_bias and not self.cfg["label_counts"]:
            raise ValueError(Errors.E210.format(value=self.settings.label_bias, name=self.name))

    def count_label_tokens(self, examples: Iterable[Example]) -> None:
        """Count the target tokens (the completion, or the text in LM mode, and
        its end token) of each label of the reference docs' doc.cats, for
        label_bias. initialize calls it; call it to add label steering to a
        generator trained without it. Fewer than two labels count as none."""
        examples = list(examples)
        self._check_ready()
        if self.mode == "prompt":
            _, targets = self._prompt_pairs(examples)
        else:
            targets = [eg.reference.text for eg in examples]
        _, eos, _ = lm_model.special_ids(self.lm)
        labels = [prompt_label(self.prompt, eg.reference) for eg in examples]
        ids = [t + [eos] for t in encode(self.lm, targets)]
        counts = label_steering.count_label_tokens(labels, ids)
        self.cfg["label_counts"] = counts if len(counts) >= 2 else {}

    # -- scoring -----------------------------------------------------------
    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        examples = list(examples)
        validate_examples(examples, "GPTGenerator.score")
        kwargs.setdefault("lm_stats", self.lm_stats(examples))
        kwargs.setdefault("nlp", self._nlp())
        return self.scorer(examples, **kwargs)

    def lm_stats(self, examples: List[Example]) -> List[Tuple[float, int, int]]:
        """(NLL in nats, predicted tokens, characters) per example, no gradient.
        LM mode: [BOS] text, every text token predicted, per char of the text.
        Prompt mode: the completion and its EOS given the prompt, per char of
        the completion + 1: the EOS marks the end of the text, as a newline
        does in a text file, and its cost is in the NLL. The same for every
        architecture (GPT, CausalLM, BertDecoder), so their nats/char compare."""
        self._check_ready()
        lm = self.lm
        if self.mode == "lm":
            targets = [eg.reference.text for eg in examples]
            prompts_ids = [[] for _ in examples]
            rows = lm_model.sequence_rows(lm, prompts_ids, encode(lm, targets), add_eos=False)
        else:
            prompts, targets = self._prompt_pairs(examples)
            rows = lm_model.sequence_rows(lm, encode(lm, prompts, "prompt"), encode(lm, targets), True)
        nll = numpy.zeros((len(examples),), dtype="float64")
        n_tokens = numpy.zeros((len(examples),), dtype="int64")
        # Similar lengths together: less padding per forward.
        order = sorted(range(len(rows.input_ids)), key=lambda k: len(rows.input_ids[k]))
        for start in range(0, len(order), EVAL_BATCH_ROWS):
            chunk = Rows()
            for k in order[start : start + EVAL_BATCH_ROWS]:
                chunk.add(rows.input_ids[k], rows.targets[k], rows.source[k])
            row_nll = self.model.ops.to_numpy(self.model.predict(chunk))
            for src, value, tgt in zip(chunk.source, row_nll, chunk.targets):
                nll[src] += float(value)
                n_tokens[src] += sum(t != IGNORE_INDEX for t in tgt)
        end_chars = 1 if self.mode == "prompt" else 0
        return [(float(nll[i]), int(n_tokens[i]), len(targets[i]) + end_chars) for i in range(len(examples))]
