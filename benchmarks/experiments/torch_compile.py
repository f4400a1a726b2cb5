"""Would torch.compile speed up MiniLM fine-tuning on a 2-core CPU? A plain
torch training step (all-MiniLM-L6-v2 forward with mean pooling, a linear
head, cross-entropy, backward, AdamW) on random batches of 32 with SST-2-like
lengths, eager against torch.compile(dynamic=True), each in its own process:

    python benchmarks/experiments/torch_compile.py eager
    python benchmarks/experiments/torch_compile.py compile

Prints the warm-up time (the first six steps, one per length, where inductor
compiles) and seconds per step over the next 40 steps. Needs a C++ compiler
for inductor. Not part of the package: the README says what it showed.
"""
import random
import sys
import time

import torch
from transformers import AutoModel

from spacy_gptbert.models.hf_loading import resolve_model_dir

LENGTHS = [8, 12, 16, 24, 32, 48]  # wordpieces; SST-2 phrases are mostly 5-50


def main(mode: str, steps: int = 40) -> None:
    torch.manual_seed(0)
    random.seed(0)
    model = AutoModel.from_pretrained(resolve_model_dir("sentence-transformers/all-MiniLM-L6-v2"))
    model.train()
    head = torch.nn.Linear(model.config.hidden_size, 2)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(head.parameters()), lr=1e-5)

    def loss_of(ids, mask, gold):
        hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (32, length, 384)
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.cross_entropy(head(pooled), gold)

    step = torch.compile(loss_of, dynamic=True) if mode == "compile" else loss_of

    def run(lengths):
        start = time.perf_counter()
        for length in lengths:
            ids = torch.randint(1000, 20000, (32, length))
            loss = step(ids, torch.ones(32, length, dtype=torch.long), torch.randint(0, 2, (32,)))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return time.perf_counter() - start

    print(f"{mode}: warm-up {run(LENGTHS):.1f} s", flush=True)
    print(f"{mode}: {run([random.choice(LENGTHS) for _ in range(steps)]) / steps:.4f} s/step", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in ("eager", "compile"):
        sys.exit(__doc__)
    main(sys.argv[1])
