"""Which shape and batch of the from-scratch GPT learn TinyShakespeare best in
a fixed wall-clock budget? A plain torch loop, so that many recipes can be
screened at equal time, each for --budget seconds; the winner is then checked
with `spacy train configs/generator_scratch.cfg` and its overrides.

    python benchmarks/experiments/gpt_budget_screen.py assets/tinyshakespeare/input.txt \
        --budget 400 [--layers 4 --embd 256 --heads 4 --vocab 2048 --ctx 128 --batch 32 --lr 2e-3]

It uses the package's own tokenizer and model builders (train_bpe_tokenizer,
build_gpt2_lm) and the project's split (dev = the last 10% of the text); the
tokenizer learns from 400-character slices of the training text (the project's
block size, though its blocks are cut at line breaks). Training rows are random
--ctx-token windows of the training text. The learning rate warms up over
--warmup steps and then decays linearly to 0 at the end of the *time* budget, so
every recipe ends its schedule whatever its step time. Printed: one JSON line
with the steps taken and the dev loss in nats per character: the token
cross-entropies within non-overlapping --ctx windows of the dev text, summed
and divided by its characters. The first token of each window is not scored,
so the figure reads lower than the generator scorer's gen_loss_per_char; it
ranks recipes against each other, it is not that metric.
"""
import argparse
import json
import time

import torch

from spacy_gptbert.models.gpt import build_gpt2_lm, train_bpe_tokenizer


def dev_nats_per_char(model, dev_ids: torch.Tensor, n_chars: int, ctx: int) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(dev_ids) - 1, ctx):
            row = dev_ids[start : start + ctx]
            if len(row) < 2:
                continue
            logits = model(input_ids=row[None]).logits[0, :-1].float()
            total += torch.nn.functional.cross_entropy(logits, row[1:], reduction="sum").item()
    model.train()
    return total / n_chars


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("text")
    parser.add_argument("--budget", type=float, default=400, help="seconds of training")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--embd", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--ctx", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="rows of --ctx tokens per step")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with open(args.text, encoding="utf8") as f:
        text = f.read()
    split = int(len(text) * 0.9)
    train, dev = text[:split], text[split:]
    tokenizer = train_bpe_tokenizer((train[i : i + 400] for i in range(0, len(train), 400)), args.vocab)
    train_ids = torch.tensor(tokenizer(train)["input_ids"])
    dev_ids = torch.tensor(tokenizer(dev)["input_ids"])
    model = build_gpt2_lm(tokenizer, args.layers, args.heads, args.embd, args.ctx, args.dropout, args.seed)
    matrices = [p for p in model.parameters() if p.dim() >= 2]
    others = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": args.weight_decay}, {"params": others, "weight_decay": 0.0}],
        lr=args.lr, betas=(0.9, 0.99),
    )
    start, step = time.time(), 0
    while (elapsed := time.time() - start) < args.budget:
        rate = args.lr * min(1.0, (step + 1) / args.warmup) * (1 - elapsed / args.budget)
        for group in optimizer.param_groups:
            group["lr"] = rate
        offsets = torch.randint(0, len(train_ids) - args.ctx, (args.batch,))
        rows = torch.stack([train_ids[i : i + args.ctx] for i in offsets.tolist()])
        model(input_ids=rows, labels=rows).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
    result = {
        "name": args.name, "steps": step, "train_chars_per_token": round(len(train) / len(train_ids), 2),
        "dev_nats_per_char": round(dev_nats_per_char(model, dev_ids, len(dev), args.ctx), 4),
        **{k: v for k, v in vars(args).items() if k not in ("text", "name")},
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
