"""Raw torch / transformers / tokenizers helpers for the GPT generator.

No spaCy or thinc here: this module knows about token ids and tensors only.
The thinc crossing lives in generator_model.py, the pipeline logic in
pipeline/generator.py.
"""
import contextlib
import weakref
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch

from ..errors import Errors
from . import torch_threads  # noqa: F401  (fork-safe thread settings)
from .autocast import cpu_autocast
from .hf_loading import position_offset

EOS_TOKEN = "<|endoftext|>"  # GPT-2's document separator; also our BOS
PAD_TOKEN = "<|pad|>"  # a separate pad id keeps padding distinguishable from EOS
IGNORE_INDEX = -100  # torch cross-entropy's "no target here"


# ---------------------------------------------------------------------------
# From-scratch model and tokenizer
# ---------------------------------------------------------------------------


def check_gpt_sizes(n_layer: int, n_head: int, n_embd: int, n_positions: int, vocab_size: int) -> None:
    sizes = (n_layer, n_head, n_embd, n_positions, vocab_size)
    if any(int(s) <= 0 for s in sizes) or n_embd % n_head != 0:
        raise ValueError(Errors.E208.format(n_embd=n_embd, n_head=n_head))


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer (GPT-2 style) on `texts` and wrap it in
    a PreTrainedTokenizerFast with EOS (= BOS) and PAD tokens, so it saves and
    loads as a standard Hugging Face tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(Errors.E209)
    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: a prompt and its completion tokenize exactly as
    # the training text did (no invented leading space).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no UNK
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
        padding_side="left",
    )


def build_gpt2_lm(tokenizer, n_layer: int, n_head: int, n_embd: int, n_positions: int,
                  dropout: float = 0.0, seed: int = 0):
    """A freshly initialised GPT2LMHeadModel sized for `tokenizer`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
        n_head=n_head, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
        # GPT-2's tanh GELU, computed by torch's fused kernel rather than in Python ops (~10% faster steps)
        activation_function="gelu_pytorch_tanh",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # reproducible init without touching global RNG
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def context_size(lm) -> int:
    """Tokens one row may hold: the position table's size, less the rows a
    RoBERTa-style model reserves below its first position (position_offset)."""
    config = lm.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if value:
            return int(value) - position_offset(lm)
    return 1024


# ---------------------------------------------------------------------------
# BERT-family encoders warm-started as causal decoders
# ---------------------------------------------------------------------------


def _offset_given_positions(module, args, kwargs):
    position_ids = kwargs.get("position_ids")
    if position_ids is not None:
        kwargs["position_ids"] = position_ids + module.padding_idx + 1
    return args, kwargs


def align_generation_positions(lm) -> None:
    """Make `generate` number positions as training does.

    Training passes no position ids: a RoBERTa-style embedding numbers real
    tokens from padding_idx + 1 itself. Hugging Face `generate` passes
    position ids counted from 0 over the attention mask (so left padding is
    skipped); a pre-hook on the embeddings shifts those given ids by the same
    offset. BERT-style models count from 0 both ways and get no hook. Copies
    of the module (prepack.py's deepcopy) keep the hook; a saved model does
    not need it (it is added again at load)."""
    if position_offset(lm):
        lm.base_model.embeddings.register_forward_pre_hook(_offset_given_positions, with_kwargs=True)


def use_cls_sep_as_bos_eos(tokenizer) -> bool:
    """A BERT tokenizer has [CLS]/[SEP] (RoBERTa's <s>/</s> are already its
    bos/eos): give it bos = cls and eos = sep where it has none, so generation
    starts on [CLS] and ends on [SEP], and a saved tokenizer says so. False
    when it still has no end token (without a start token, generation starts
    on the end token, as GPT-2's does)."""
    if tokenizer.bos_token is None and tokenizer.cls_token is not None:
        tokenizer.bos_token = tokenizer.cls_token
    if tokenizer.eos_token is None and tokenizer.sep_token is not None:
        tokenizer.eos_token = tokenizer.sep_token
    return tokenizer.eos_token_id is not None


# ---------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood per row.

    logits: (B, T, V) scores for the token after each position.
    targets: (B, T) the token that follows each position, IGNORE_INDEX where
        there is nothing to predict (padding, masked prompt).
    Returns (B,) float32: sum over t of -log softmax(logits[b, t])[targets[b, t]].
    Targets are already aligned with positions (no shift here), so the same
    function serves packed LM blocks and prompt->completion rows.
    """
    B, T, V = logits.shape
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(B * T, V).float(), targets.reshape(B * T), ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B*T,), 0 at ignored positions
    return nll.view(B, T).sum(dim=1)  # (B,)


class CausalLMLoss(torch.nn.Module):
    """Wraps a Hugging Face causal LM so the PyTorchShim's forward returns the
    per-row NLL sums: only a (B,) vector crosses into thinc, not (B, T, V) logits."""

    def __init__(self, lm, mixed_precision: bool = False):
        super().__init__()
        self.lm = lm
        self.mixed_precision = mixed_precision  # bf16 autocast on CPU (GPU: thinc's shim autocasts)

    @property
    def hf_model(self) -> torch.nn.Module:
        return self.lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask, targets: (B, T); rows are right-padded.
        with cpu_autocast(self.mixed_precision, input_ids.device):
            logits = self.lm(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits  # (B, T, V)
        return token_nll(logits, targets)  # (B,), float32


# ---------------------------------------------------------------------------
# Training rows: token sequences -> fixed-size blocks
# ---------------------------------------------------------------------------


@dataclass
class Rows:
    """Right-padded rows for CausalLMLoss, plus which sequence each row came from."""

    input_ids: List[List[int]] = field(default_factory=list)
    targets: List[List[int]] = field(default_factory=list)
    source: List[int] = field(default_factory=list)

    def add(self, ids: Sequence[int], targets: Sequence[int], source: int) -> None:
        self.input_ids.append(list(ids))
        self.targets.append(list(targets))
        self.source.append(source)


def split_blocks(seq: Sequence[int], weights: Sequence[bool], block: int) -> Iterator:
    """Cut one sequence into (inputs, targets) blocks of at most `block` inputs.

    Position t predicts seq[t + 1]; `weights[t + 1]` False masks that target
    (prompt tokens). Blocks do not overlap, so every target is counted once.
    """
    for start in range(0, len(seq) - 1, block):
        inputs = seq[start : start + block]
        targets = [
            tok if keep else IGNORE_INDEX
            for tok, keep in zip(seq[start + 1 : start + block + 1], weights[start + 1 : start + block + 1])
        ]
        yield inputs[: len(targets)], targets


def pad_rows(rows: Rows, pad_id: int):
    """Rows -> (input_ids, attention_mask, targets) int64 tensors (B, T), right-padded."""
    T = max((len(r) for r in rows.input_ids), default=0)
    B = len(rows.input_ids)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    targets = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    for b, (inp, tgt) in enumerate(zip(rows.input_ids, rows.targets)):
        ids[b, : len(inp)] = torch.tensor(inp, dtype=torch.long)
        mask[b, : len(inp)] = 1
        targets[b, : len(tgt)] = torch.tensor(tgt, dtype=torch.long)
    return ids, mask, targets


# ---------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------


@dataclass
class GenerationSettings:
    max_new_tokens: int = 32
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    num_return_sequences: int = 1
    stop: List[str] = field(default_factory=list)
    seed: Optional[int] = None
    # Classifier-free guidance (ClassifierFreeGuidance): 1.0 is off; above 1,
    # each token moves away from what the guidance prompt would make likely.
    guidance_scale: float = 1.0
    # Label steering (LabelBias): the weight of the label's unigram log-odds; 0.0 is off.
    label_bias: float = 0.0


def left_pad(prompts: List[List[int]], pad_id: int):
    """Prompts -> (input_ids, attention_mask) (B, T), padded on the left so every
    prompt ends at the last column and new tokens line up for the whole batch."""
    T = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), T), dtype=torch.long)
    for b, p in enumerate(prompts):
        if p:
            ids[b, T - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[b, T - len(p) :] = 1
    return ids, mask


@contextlib.contextmanager
def seeded(seed: Optional[int], device: Optional[torch.device] = None):
    """Fix torch's RNG for one call without changing the caller's RNG state
    (the CPU generator, and the GPU's when generating there)."""
    if seed is None:
        yield
        return
    gpus = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.manual_seed(seed)
        yield


@torch.inference_mode()  # no autograd bookkeeping at all (no_grad still tracks versions)
def generate_ids(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, settings: GenerationSettings,
                 pad_id: int, eos_id: Optional[int], tokenizer=None,
                 row_seeds: Optional[Sequence[int]] = None, guided: bool = False,
                 bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One Hugging Face `generate` call for a left-padded batch.

    input_ids, attention_mask: (B, T). Returns new tokens only:
    (B * num_return_sequences, <= max_new_tokens), the n samples of prompt b at
    rows b*n .. b*n + n - 1, padded with pad_id after EOS or a stop string.
    With stop strings and a tokenizer, a row stops as soon as its text ends
    with one (the caller still cuts the text at it); the batch ends when every
    row has stopped, instead of always running max_new_tokens steps.
    row_seeds (with do_sample): one seed per prompt. Each row then draws from
    its own random stream (RowSampler), so a prompt's samples are the same in
    any batch; settings.seed seeds the batch's one stream otherwise.
    guided: the second half of the rows holds the guidance prompts of the
    first half's (ClassifierFreeGuidance, at settings.guidance_scale); each
    pair of rows then writes the same tokens, and only the first half's come
    back: (B / 2 * num_return_sequences, <= max_new_tokens).
    bias: (B, V) added to each row's log-probabilities every step (LabelBias),
    before guidance and sampling; guided, B counts the guidance rows too.
    """
    kwargs = dict(
        max_new_tokens=settings.max_new_tokens,
        do_sample=settings.do_sample,
        num_return_sequences=settings.num_return_sequences,
        repetition_penalty=settings.repetition_penalty,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        use_cache=True,  # KV cache: each step feeds one new token per row
    )
    early = early_stop_strings(tokenizer, settings.stop) if tokenizer is not None else []
    if early:
        kwargs.update(stop_strings=early, tokenizer=tokenizer)
    batch_seed = settings.seed
    processors: List[Any] = []
    if bias is not None:
        processors.append(LabelBias(bias))
        if settings.do_sample and row_seeds is None and not guided:
            # RowSampler warps after the bias; Hugging Face's own sampling would warp before it.
            with seeded(batch_seed, input_ids.device):
                row_seeds = torch.randint(0, 2**31 - 1, (input_ids.shape[0],)).tolist()
    if guided:
        processors.append(ClassifierFreeGuidance(settings.guidance_scale))
        if settings.do_sample and row_seeds is None:
            # A guided pair must draw the same token: one stream per pair.
            with seeded(batch_seed, input_ids.device):
                row_seeds = torch.randint(0, 2**31 - 1, (input_ids.shape[0] // 2,)).tolist()
        if row_seeds is not None:
            row_seeds = list(row_seeds) + list(row_seeds)
    if settings.do_sample and row_seeds is not None:
        n = settings.num_return_sequences
        input_ids, attention_mask = (t.repeat_interleave(n, dim=0) for t in (input_ids, attention_mask))
        # The greedy step takes the one token RowSampler leaves to each row.
        processors.append(RowSampler(settings, [(seed << 16) + k for seed in row_seeds for k in range(n)],
                                     input_ids.device))
        kwargs.update(do_sample=False, num_return_sequences=1)
        batch_seed = None
    if processors:
        from transformers import LogitsProcessorList

        kwargs.update(logits_processor=LogitsProcessorList(processors))
    if kwargs["do_sample"]:
        kwargs.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
    else:
        # Explicit neutral values: a model's generation_config may carry sampling defaults.
        kwargs.update(temperature=None, top_k=None, top_p=None)
    was_training = lm.training
    lm.eval()
    try:
        with seeded(batch_seed, input_ids.device):
            out = lm.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)  # (B*n, T + new)
    finally:
        lm.train(was_training)
    new = out[:, input_ids.shape[1] :]
    return new[: len(new) // 2] if guided else new


class ClassifierFreeGuidance:
    """A logits processor for classifier-free guidance with a negative prompt
    (Sanchez et al., 2023, "Stay on topic with Classifier-Free Guidance"):
    the batch's second half continues the guidance prompts of its first half.
    Each step, both halves get
        log p(x | guidance) + scale * (log p(x | prompt) - log p(x | guidance)),
    so a pair picks the same token, and scale > 1 pushes the text away from
    what the guidance prompt (e.g. the other label's) would write."""

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        half = scores.shape[0] // 2
        cond, neg = (x.float().log_softmax(dim=-1) for x in (scores[:half], scores[half:]))
        # A token the guidance branch rules out (-inf) keeps the prompt's own score, not NaN.
        guided = torch.where(torch.isfinite(neg), neg + self.scale * (cond - neg), cond)
        return torch.cat([guided, guided]).to(scores.dtype)


class LabelBias:
    """A logits processor that adds one bias row per prompt to the
    log-probabilities, before guidance and sampling: decoding-time steering
    toward a label (the generator's label_bias, label_steering.py). bias:
    (B, V), one row per input row; rows that Hugging Face repeats for
    num_return_sequences get their prompt's row."""

    def __init__(self, bias: torch.Tensor):
        self.bias = bias

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        bias = self.bias
        if bias.shape[0] != scores.shape[0]:  # HF's num_return_sequences copies are adjacent rows
            bias = bias.repeat_interleave(scores.shape[0] // bias.shape[0], dim=0)
        return (scores.float().log_softmax(dim=-1) + bias.to(scores.device)).to(scores.dtype)


class RowSampler:
    """A logits processor that samples each row from its own torch.Generator:
    the row's scores warped as sampling warps them (temperature, top-k,
    top-p, in Hugging Face's order), one token drawn, every other token set to
    -inf. Hugging Face's sampling draws a whole batch from one random stream,
    so a row's sample would depend on the rows beside it."""

    def __init__(self, settings: GenerationSettings, seeds: Sequence[int], device: torch.device):
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.warpers: List[Any] = []
        if settings.temperature != 1.0:
            self.warpers.append(TemperatureLogitsWarper(settings.temperature))
        if settings.top_k > 0:
            self.warpers.append(TopKLogitsWarper(settings.top_k))
        if settings.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(settings.top_p))
        self.generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        picks = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)])
        only = torch.full_like(scores, float("-inf"))
        only[torch.arange(len(picks), device=scores.device), picks] = 0.0
        return only


_EARLY_STOP: "weakref.WeakKeyDictionary[Any, Dict[Tuple[str, ...], List[str]]]" = weakref.WeakKeyDictionary()


def early_stop_strings(tokenizer, stop: Sequence[str]) -> List[str]:
    """The stop strings Hugging Face's StopStringCriteria can watch for with
    this tokenizer. It refuses some (e.g. "\\x80" with GPT-2's byte-level BPE:
    it matches token strings, and no token string holds that character).
    Those still work, only later: generation runs on to max_new_tokens (or
    EOS), and the text is cut at the stop string afterwards."""
    if not stop:
        return []
    try:
        cache = _EARLY_STOP.setdefault(tokenizer, {})
    except TypeError:  # not weak-referenceable: no cache
        cache = {}
    key = tuple(stop)
    if key not in cache:
        from transformers import StopStringCriteria

        usable = []
        for s in stop:
            try:
                StopStringCriteria(tokenizer=tokenizer, stop_strings=[s])
            except ValueError:
                continue
            usable.append(s)
        cache[key] = usable
    return list(cache[key])


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` before the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]
