"""Continued masked-LM pretraining of an encoder on in-domain text, before
fine-tuning a bert_textcat on it ("task-adaptive pretraining").

    python -m spacy_gptbert pretrain-mlm corpus/sst2/train.spacy training/minilm-sst2-mlm \
        --model sentence-transformers/all-MiniLM-L6-v2 --steps 500

The encoder is loaded into the Hugging Face masked-LM class of its family
(BertForMaskedLM for BERT). A model that ships without MLM head weights, such
as all-MiniLM-L6-v2, gets a fresh head whose output matrix is tied to the word
embeddings; the head trains at its own, higher rate. The output is a standard
Hugging Face encoder directory (config, tokenizer, model.safetensors) that
bert_textcat's / bert_encoder's `name` can point at.
"""
import json
import math
import random
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from ..errors import Errors


def read_texts(path: Union[str, Path], limit: int = 0) -> List[str]:
    """Texts from a .spacy file (doc texts), a TSV with a `sentence` header
    column (SST-2/GLUE) or a plain text file (one text per non-empty line)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(Errors.E304.format(path=path))
    if path.suffix == ".spacy":
        import spacy
        from spacy.tokens import DocBin

        texts = [doc.text for doc in DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab)]
    else:
        try:
            lines = path.read_text(encoding="utf8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise ValueError(Errors.E301.format(path=path, err=err)) from None
        if path.suffix == ".tsv" and lines and "sentence" in lines[0].split("\t"):
            column = lines[0].split("\t").index("sentence")
            lines = [line.split("\t")[column] for line in lines[1:] if line.strip()]
        texts = [line.strip() for line in lines if line.strip()]
    texts = [t for t in texts if t.strip()]
    if limit:
        texts = texts[:limit]
    if not texts:
        raise ValueError(Errors.E320.format(path=path))
    return texts


def load_mlm(name: Union[str, Path], seed: int = 0):
    """(masked-LM model, tokenizer, model directory) for an encoder name or
    directory. Missing head weights are built fresh (tied output embeddings,
    initialized from `seed`); missing encoder weights are an error (E321)."""
    from ..models.hf_loading import load_pretrained

    model, tokenizer, path = load_pretrained(name, "AutoModelForMaskedLM", expect="mlm", seed=seed)
    model.tie_weights()
    return model, tokenizer, path


def _mask_batch(tokenizer, texts: Sequence[str], max_length: int, mlm_probability: float, generator):
    """BERT masking: 15% of the (non-special) wordpieces are targets; of those
    80% become [MASK], 10% a random token, 10% stay."""
    import torch

    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True,
                    return_tensors="pt", return_special_tokens_mask=True)
    input_ids = enc["input_ids"].clone()
    labels = enc["input_ids"].clone()
    special = enc.pop("special_tokens_mask").bool() | (enc["attention_mask"] == 0)
    prob = torch.full(labels.shape, mlm_probability)
    prob.masked_fill_(special, 0.0)
    targets = torch.bernoulli(prob, generator=generator).bool()
    # At least one target per batch so the loss is always defined.
    if not targets.any():
        candidates = (~special).nonzero()
        if len(candidates):
            i, j = candidates[torch.randint(len(candidates), (1,), generator=generator)][0]
            targets[i, j] = True
    labels[~targets] = -100
    replace = torch.bernoulli(torch.full(labels.shape, 0.8), generator=generator).bool() & targets
    input_ids[replace] = tokenizer.mask_token_id
    randomize = torch.bernoulli(torch.full(labels.shape, 0.5), generator=generator).bool() & targets & ~replace
    input_ids[randomize] = torch.randint(len(tokenizer), labels.shape, generator=generator)[randomize]
    return input_ids, enc["attention_mask"], enc.get("token_type_ids"), labels


def _forward(model, batch, device, mixed_precision: bool):
    """(mean loss over the targets, logits at the targets, target ids). The
    vocabulary projection runs only at the ~15% target positions (BERT's `cls`
    head; other families go through their full *ForMaskedLM forward)."""
    import torch

    from ..models.autocast import autocast

    input_ids, attention_mask, token_type_ids, labels = batch
    kwargs = {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids.to(device)
    labels = labels.to(device)
    targets = labels != -100
    with autocast(device, mixed_precision):
        if hasattr(model, "cls") and hasattr(model, "bert"):
            hidden = model.bert(**kwargs).last_hidden_state[targets]
            logits = model.cls(hidden)
        else:
            logits = model(**kwargs).logits[targets]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[targets])
    return loss, logits, labels[targets]


def mlm_eval(model, tokenizer, texts: Sequence[str], *, batch_size: int = 64, max_length: int = 128,
             mlm_probability: float = 0.15, seed: int = 1, mixed_precision: bool = False) -> Dict[str, float]:
    """Masked-LM loss and accuracy on texts with a fixed (seeded) masking."""
    import torch

    from ..models.autocast import use_mixed_precision

    device = next(model.parameters()).device
    mixed_precision = use_mixed_precision(device, mixed_precision)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    nll, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = _mask_batch(tokenizer, texts[start : start + batch_size], max_length, mlm_probability, generator)
            loss, logits, labels = _forward(model, batch, device, mixed_precision)
            count = len(labels)
            nll += float(loss) * count
            correct += int((logits.argmax(-1) == labels).sum())
            n += count
    model.train(was_training)
    return {"mlm_loss": nll / max(n, 1), "mlm_acc": correct / max(n, 1), "masked_tokens": n}


def pretrain_mlm(
    model, tokenizer, texts: Sequence[str], *, steps: int, batch_size: int = 32, learn_rate: float = 5e-5,
    head_learn_rate: float = 1e-3, warmup: float = 0.06, weight_decay: float = 0.01, max_length: int = 128,
    mlm_probability: float = 0.15, seed: int = 0, mixed_precision: bool = False, device=None,
    progress: bool = True, log_every: int = 50,
) -> List[Tuple[int, float]]:
    """Train `model` (a *ForMaskedLM) in place for `steps` batches sampled from
    texts. Device: `device`, else thinc's current one (spacy.require_gpu moves
    it). Mixed precision: fp16 autocast with gradient scaling on GPU, bf16
    autocast on a CPU with bf16 instructions (float32 on others, with W003).
    Returns (step, mean loss since the last entry) pairs."""
    import torch
    from thinc.api import get_torch_default_device
    from tqdm import tqdm

    from ..models.autocast import use_mixed_precision

    if steps < 1 or batch_size < 1:
        raise ValueError(Errors.E323.format(steps=steps, batch_size=batch_size))
    device = torch.device(device) if device is not None else get_torch_default_device()
    model.to(device)
    mixed_precision = use_mixed_precision(device, mixed_precision)
    model.train()
    torch.manual_seed(seed)
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    base = model.base_model
    encoder_ids = {id(p) for p in base.parameters()}  # includes the tied output matrix
    head = [p for p in model.parameters() if id(p) not in encoder_ids]
    optimizer = torch.optim.AdamW(
        [{"params": list(base.parameters()), "lr": learn_rate},
         {"params": head, "lr": head_learn_rate}], weight_decay=weight_decay)
    n_warmup = max(1, int(steps * warmup))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / n_warmup, max(0.0, (steps - s) / max(1, steps - n_warmup))))
    scaler = torch.amp.GradScaler("cuda", enabled=mixed_precision and device.type == "cuda")
    order: List[int] = []
    log: List[Tuple[int, float]] = []
    running, count = 0.0, 0
    bar = tqdm(range(1, steps + 1), desc="MLM pretraining", unit="step", disable=None if progress else True)
    for step in bar:
        if len(order) < batch_size:
            fresh = list(range(len(texts)))
            rng.shuffle(fresh)
            order.extend(fresh)
        batch_texts = [texts[i] for i in order[:batch_size]]
        del order[:batch_size]
        batch = _mask_batch(tokenizer, batch_texts, max_length, mlm_probability, generator)
        loss, _, _ = _forward(model, batch, device, mixed_precision)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        running += float(loss.detach())
        count += 1
        bar.set_postfix(loss=f"{running / count:.3f}", refresh=False)
        if step % log_every == 0 or step == steps:
            log.append((step, running / count))
            running, count = 0.0, 0
    bar.close()
    model.eval()
    return log


def save_encoder(model, tokenizer, source_dir: Path, output_dir: Union[str, Path]) -> Path:
    """Write the trained encoder as a standard Hugging Face encoder directory.
    The encoder goes back into the source's own base class (e.g. BertModel), so
    weights the masked-LM class does not carry (BERT's pooler) keep their
    pretrained values and the directory loads with AutoModel without warnings."""
    from ..models.hf_loading import load_pretrained, save_pretrained

    encoder, _, _ = load_pretrained(source_dir, "AutoModel", expect="encoder")
    missing, unexpected = encoder.load_state_dict(model.base_model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):
        raise ValueError(Errors.E321.format(path=source_dir, missing=", ".join((unexpected + missing)[:5])))
    save_pretrained(encoder, tokenizer, output_dir)
    return Path(output_dir)


def run(input_path: Union[str, Path], output_dir: Union[str, Path], *, model_name: str, steps: int,
        dev_path: Optional[Union[str, Path]] = None, limit: int = 0, gpu_id: int = -1, **settings) -> Dict:
    """The CLI command: read texts, pretrain, save, write mlm_log.json beside the model."""
    if gpu_id >= 0:
        import spacy

        spacy.require_gpu(gpu_id)
    texts = read_texts(input_path, limit)
    dev = read_texts(dev_path) if dev_path else None
    model, tokenizer, source = load_mlm(model_name, seed=settings.get("seed", 0))
    from thinc.api import get_torch_default_device

    model.to(get_torch_default_device())
    mixed = settings.get("mixed_precision", False)
    report: Dict = {"model": model_name, "input": str(input_path), "texts": len(texts), "steps": steps,
                    "settings": dict(settings)}
    if dev:
        report["dev_before"] = mlm_eval(model, tokenizer, dev, mixed_precision=mixed)
    start = time.time()
    report["loss_log"] = pretrain_mlm(model, tokenizer, texts, steps=steps, **settings)
    report["train_seconds"] = round(time.time() - start, 1)
    if dev:
        report["dev_after"] = mlm_eval(model, tokenizer, dev, mixed_precision=mixed)
    out = save_encoder(model, tokenizer, source, output_dir)
    (out / "mlm_log.json").write_text(json.dumps(report, indent=2), encoding="utf8")
    return report


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))
