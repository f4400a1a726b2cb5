"""Can a label-conditioned generator that never learned its label be steered by
per-label word statistics at decoding time? A trained gpt_generator pipeline
(by default the 5-minute warm start of generator_routes.py, which writes
English-like text but at chance label agreement) generates for SST-2 dev
sentences, each prompted with its gold label, while each step's
log-probabilities get `alpha * bias[label]` added:

    bias[label][w] = log P(w | label) - log P(w | other labels)

the add-one-smoothed WordPiece unigram log-odds of the label's training texts
(each with its end token) against the other labels' texts, as gpt_generator's
label_bias setting computes them (spacy_gptbert/pipeline/label_steering.py).

    python benchmarks/experiments/label_unigram_bias.py \
        [--generator training/generator_routes/warmstart_minilm/model-last] \
        [--alphas 0,0.5,1,2] [--start 0] [--n 200] [--guidance 1.0] \
        [--classifier training/sst2-student-s0/model-best] [--seed 0] [--output OUT.json]

Per alpha: nats/char of the dev sentences under the biased distribution
(log_softmax(logits + alpha * bias); the sentence and its end token, over its
characters + 1, as the generator's scorer counts it), gen_agreement as judged
by --classifier, distinct-2 and the repeat-4gram share (the scorer's
functions), and a sample per label. Sampling as the generator's config says
(temperature, top-k, one seed per row); the bias is added before them.
"""
import argparse
import json
from typing import Dict, List

import spacy
import torch
from spacy.tokens import DocBin
from transformers import LogitsProcessorList

from spacy_gptbert.models.generator_model import find_causal_lm, get_hf_parts
from spacy_gptbert.models.gpt import ClassifierFreeGuidance, RowSampler
from spacy_gptbert.pipeline import label_steering
from spacy_gptbert.pipeline.generator_scoring import generation_quality
from spacy_gptbert.pipeline.prompts import top_label


def unigram_bias(tokenizer, docs, keys: List[str], vocab_size: int) -> Dict[str, torch.Tensor]:
    """(V,) log-odds per label (the generator's label_bias: label_steering.py). keys: each doc's label."""
    texts = tokenizer([d.text for d in docs], add_special_tokens=False)["input_ids"]
    ids = [t + [tokenizer.sep_token_id] for t in texts]
    table = label_steering.log_odds(label_steering.count_label_tokens(keys, ids), vocab_size)
    return {label: torch.from_numpy(row) for label, row in table.items()}


class AddBias:
    """Adds one (V,) bias row per generated row to the log-probabilities."""

    def __init__(self, rows: torch.Tensor):
        self.rows = rows  # (B, V)

    def __call__(self, input_ids, scores):
        return scores.float().log_softmax(dim=-1) + self.rows


@torch.no_grad()
def nats_per_char(lm, tokenizer, prompts: Dict[str, List[int]], dev, keys, bias, alpha: float) -> float:
    nats, chars = 0.0, 0
    for doc, label in zip(dev, keys):
        prompt = prompts[label]
        body = tokenizer(doc.text, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
        ids = torch.tensor([prompt + body])
        logits = lm(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
        logp = (logits.log_softmax(-1) + alpha * bias[label]).log_softmax(-1)
        nats -= logp[torch.arange(len(body)), torch.tensor(body)].sum().item()
        chars += len(doc.text) + 1
    return nats / chars


@torch.no_grad()
def generate(lm, tokenizer, prompts, labels: List[str], bias, alpha: float, settings, guidance: float,
             seed: int, max_new: int) -> List[str]:
    out = [""] * len(labels)
    for label in sorted(set(labels)):
        rows = [i for i, x in enumerate(labels) if x == label]
        other = next(o for o in prompts if o != label)
        ids = [prompts[label]] * len(rows)
        bias_rows = [alpha * bias[label]] * len(rows)
        processors: list = [AddBias(torch.stack(bias_rows))]
        if guidance != 1.0:  # the guidance rows get the same bias: both branches are steered alike
            ids = ids + [prompts[other]] * len(rows)
            processors = [AddBias(torch.stack(bias_rows * 2)), ClassifierFreeGuidance(guidance)]
        width = max(len(x) for x in ids)
        padded = torch.tensor([[tokenizer.pad_token_id] * (width - len(x)) + x for x in ids])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
        seeds = [seed + i for i in rows] * (2 if guidance != 1.0 else 1)
        processors.append(RowSampler(settings, seeds, torch.device("cpu")))
        result = lm.generate(input_ids=padded, attention_mask=mask, do_sample=False, max_new_tokens=max_new,
                             logits_processor=LogitsProcessorList(processors),
                             eos_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id)
        for i, new in zip(rows, result[: len(rows), width:]):
            out[i] = tokenizer.decode(new, skip_special_tokens=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generator", default="training/generator_routes/warmstart_minilm/model-last")
    parser.add_argument("--classifier", default="training/sst2-student-s0/model-best")
    parser.add_argument("--train", default="corpus/sst2_gen/train.spacy")
    parser.add_argument("--dev", default="corpus/sst2/dev.spacy")
    parser.add_argument("--alphas", default="0,0.5,1,2")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    nlp = spacy.load(args.generator)
    generator = nlp.get_pipe("gpt_generator")
    lm, tokenizer = get_hf_parts(find_causal_lm(generator.model))
    lm.eval()
    vocab = nlp.vocab
    train = list(DocBin().from_disk(args.train).get_docs(vocab))
    dev = list(DocBin().from_disk(args.dev).get_docs(vocab))[args.start : args.start + args.n]
    # a doc's label, in the form the generator's prompt gives it ("negative review: ")
    train_keys = [generator.prompt(d) for d in train]
    gold = [generator.prompt(d) for d in dev]
    labels = sorted(set(train_keys))
    bias = unigram_bias(tokenizer, train, train_keys, lm.config.vocab_size)
    prompts = {label: [tokenizer.cls_token_id] + tokenizer(label, add_special_tokens=False)["input_ids"]
               for label in labels}
    settings = generator.settings
    judge = spacy.load(args.classifier)
    judge_label = {generator.prompt(d): top_label(d.cats) for d in dev}  # prompt -> the judge's label name
    results = []
    for alpha in (float(a) for a in args.alphas.split(",")):
        texts = generate(lm, tokenizer, prompts, gold, bias, alpha, settings, args.guidance, args.seed,
                         settings.max_new_tokens)
        judged = [top_label(d.cats) for d in judge.pipe(texts, batch_size=64)]
        gold_names = [judge_label[g] for g in gold]
        quality = generation_quality(texts)
        result = {"alpha": alpha, "guidance": args.guidance,
                  "nats_per_char": round(nats_per_char(lm, tokenizer, prompts, dev, gold, bias, alpha), 4),
                  "agreement": round(sum(j == g for j, g in zip(judged, gold_names)) / len(gold), 4),
                  "distinct_2": round(quality["gen_distinct_2"], 4),
                  "repeat_4gram": round(quality["gen_repeat_4gram"], 4),
                  "samples": {label: next(t for t, g in zip(texts, gold) if g == label) for label in labels}}
        results.append(result)
        print(json.dumps(result), flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump({"generator": args.generator, "start": args.start, "n": len(dev), "results": results}, f,
                      indent=2)


if __name__ == "__main__":
    main()
