"""Encoder inference: bert_encoder in nlp.pipe vs the raw Hugging Face forward
vs spacy-transformers' `transformer` component, same model (all-MiniLM-L6-v2,
the packaged copy), same texts, one process.

    python benchmarks/encoder_inference.py [--n-short 512] [--n-long 16] \
        [--short-batch-sizes 8,64,256] [--long-batch-sizes 1,4,16] [--repeats 3]

Inputs: short = SST-2 train sentences; long = documents of >= 2,000 words
(SST-2 train sentences joined). Words = whitespace-separated words of each
input text, the same count for every contender (spaCy tokens are also in the
JSON). Timed: texts in, outputs out (spaCy contenders: nlp.pipe including
spaCy's tokenizer; raw HF: fast tokenizer + forward + masked mean pooling).

Contenders:
  bert_encoder          default settings (fp32, window 256 / stride 192 wordpieces;
                        linear layers on oneDNN's prepacked kernels, onednn_prepack = true)
  bert_encoder torch kernels  onednn_prepack = false (fp32 nn.Linear, torch's BLAS)
  bert_encoder bf16     mixed_precision = true, bf16 autocast on CPU forced on
                        (emulated, and slower, on CPUs without AVX512-BF16/AMX)
  bert_encoder int8     quantize = true (dynamic int8 nn.Linear, CPU)
  raw HF                AutoTokenizer(fast, padding=True per batch) + AutoModel under
                        torch.inference_mode; long docs: windows of 256 wordpieces,
                        stride 192 (return_overflowing_tokens), at most batch-size
                        windows per forward call
  spacy-transformers    TransformerModel.v3, strided_spans window 256 / stride 192
                        spaCy tokens (its windows are in tokens, not wordpieces)

Each contender runs `--repeats` times, interleaved; the table shows the best
run (words/s) and the peak RSS sampled during its runs. Ratios are
bert_encoder / raw HF and bert_encoder / spacy-transformers.
Writes benchmarks/results/encoder_inference.json.
"""
import argparse
import gc
import time
from typing import Callable, Dict, List

import spacy
import torch

from benchlib import (
    MINILM, RESULTS, RSSSampler, count_words, forced_bf16, long_texts, machine, print_table, short_texts,
    write_json,
)

WINDOW, STRIDE = 256, 192


def build_ours(**model_cfg) -> Callable[[List[str], int], None]:
    nlp = spacy.blank("en")
    factory_cfg = {k: model_cfg.pop(k) for k in ("quantize", "onednn_prepack") if k in model_cfg}
    nlp.add_pipe("bert_encoder", config={"model": {"name": MINILM, "window": WINDOW, "stride": STRIDE, **model_cfg},
                                         **factory_cfg})
    nlp.initialize()

    def run(texts, batch_size):
        for doc in nlp.pipe(texts, batch_size=batch_size):
            assert doc.tensor.shape[0] == len(doc)
    run.nlp = nlp
    return run


def build_bf16() -> Callable[[List[str], int], None]:
    with forced_bf16():  # bf16 even where the CPU emulates it (the plugin would run float32 there)
        return build_ours(mixed_precision=True)


def build_raw_hf() -> Callable[[List[str], int], None]:
    from transformers import AutoModel, AutoTokenizer

    from spacy_gptbert.models.hf_loading import resolve_model_dir

    path = str(resolve_model_dir(MINILM))
    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    model = AutoModel.from_pretrained(path).eval()

    @torch.inference_mode()
    def run(texts, batch_size):
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=WINDOW + 2,
                            stride=WINDOW - STRIDE, return_overflowing_tokens=True, return_tensors="pt")
            doc_of = enc["overflow_to_sample_mapping"]
            pooled = []
            for j in range(0, doc_of.shape[0], batch_size):
                ids, mask = enc["input_ids"][j : j + batch_size], enc["attention_mask"][j : j + batch_size]
                hidden = model(input_ids=ids, attention_mask=mask)[0]
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled.append((hidden * m).sum(1) / m.sum(1))
            pooled = torch.cat(pooled)
            docs = torch.zeros((int(doc_of.max()) + 1, pooled.shape[1])).index_add_(0, doc_of, pooled)
            docs /= torch.bincount(doc_of).unsqueeze(1)
    return run


def build_spacy_transformers() -> Callable[[List[str], int], None]:
    import spacy_transformers  # noqa: F401

    from spacy_gptbert.models.hf_loading import resolve_model_dir

    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": {
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "name": str(resolve_model_dir(MINILM)),
        "tokenizer_config": {"use_fast": True},
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": WINDOW, "stride": STRIDE},
        "mixed_precision": False,
    }})
    nlp.initialize()

    def run(texts, batch_size):
        for doc in nlp.pipe(texts, batch_size=batch_size):
            assert doc._.trf_data is not None
    return run


CONTENDERS: Dict[str, Callable[[], Callable]] = {
    "bert_encoder": lambda: build_ours(),
    "bert_encoder torch kernels": lambda: build_ours(onednn_prepack=False),
    "bert_encoder bf16": lambda: build_bf16(),
    "bert_encoder int8": lambda: build_ours(quantize=True),
    "raw HF": build_raw_hf,
    "spacy-transformers": build_spacy_transformers,
}


def bench(runners, texts, batch_size, repeats):
    words = count_words(texts)
    results = {name: {"seconds": [], "peak_rss_mb": 0.0, "start_rss_mb": None} for name in runners}
    for name, run in runners.items():  # warm-up: first call pays one-off costs
        run(texts[: min(len(texts), batch_size)], batch_size)
    for _ in range(repeats):
        for name, run in runners.items():
            gc.collect()
            with RSSSampler() as mem:
                start = time.perf_counter()
                run(texts, batch_size)
                seconds = time.perf_counter() - start
            r = results[name]
            r["seconds"].append(seconds)
            r["peak_rss_mb"] = max(r["peak_rss_mb"], mem.peak)
            r["start_rss_mb"] = mem.start_rss if r["start_rss_mb"] is None else min(r["start_rss_mb"], mem.start_rss)
    rows = []
    for name, r in results.items():
        best = min(r["seconds"])
        rows.append({"contender": name, "words": words, "best_s": best, "words_per_s": words / best,
                     "all_s": r["seconds"], "peak_rss_mb": r["peak_rss_mb"],
                     "peak_over_start_mb": r["peak_rss_mb"] - r["start_rss_mb"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-short", type=int, default=512)
    parser.add_argument("--n-long", type=int, default=16)
    parser.add_argument("--long-words", type=int, default=2000)
    parser.add_argument("--short-batch-sizes", default="8,64,256")
    parser.add_argument("--long-batch-sizes", default="1,4,16")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--output", default=str(RESULTS / "encoder_inference.json"))
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info}")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    runners = {name: CONTENDERS[name]() for name in names}
    inputs = {"short": short_texts(args.n_short), "long": long_texts(args.n_long, args.long_words)}
    tokenizer = spacy.blank("en").tokenizer
    sizes = {"short": [int(b) for b in args.short_batch_sizes.split(",") if b],
             "long": [int(b) for b in args.long_batch_sizes.split(",") if b]}
    all_rows = []
    for kind, texts in inputs.items():
        n_tokens = sum(len(tokenizer(t)) for t in texts)
        for batch_size in sizes[kind]:
            rows = bench(runners, texts, batch_size, args.repeats)
            by_name = {r["contender"]: r for r in rows}
            for r in rows:
                r.update(inputs=kind, batch_size=batch_size, n_docs=len(texts), spacy_tokens=n_tokens)
                for base, key in (("raw HF", "vs_raw_hf"), ("spacy-transformers", "vs_spacy_transformers")):
                    if base in by_name:
                        r[key] = r["words_per_s"] / by_name[base]["words_per_s"]
            print(f"\n{kind} texts: {len(texts)} docs, {rows[0]['words']} words ({n_tokens} spaCy tokens), "
                  f"batch {batch_size}, best of {args.repeats}")
            print_table(rows, [("contender", "contender", "{}"), ("words_per_s", "words/s", "{:.0f}"),
                               ("vs_raw_hf", "vs raw HF", "{:.2f}x"),
                               ("vs_spacy_transformers", "vs spacy-trf", "{:.2f}x"),
                               ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
                               ("peak_over_start_mb", "peak-start MB", "{:.0f}")])
            all_rows.extend(rows)
    agreement = output_agreement(runners, inputs["short"][:64] + inputs["long"][:2])
    write_json(args.output, {"machine": info, "args": vars(args), "word_unit": "whitespace words", "rows": all_rows,
                             "agreement_with_fp32": agreement})


def output_agreement(runners, texts):
    """Cosine of each bert_encoder variant's doc vectors (mean pooling) and token
    vectors to the fp32 ones: the equality cost of bf16 / int8."""
    import numpy

    if "bert_encoder" not in runners:
        return {}
    def vectors(nlp):
        docs = list(nlp.pipe(texts, batch_size=16))
        return [d.vector for d in docs], numpy.concatenate([d.tensor for d in docs])
    base_docs, base_tokens = vectors(runners["bert_encoder"].nlp)
    cos = lambda a, b: float((a * b).sum() / (numpy.linalg.norm(a) * numpy.linalg.norm(b)))  # noqa: E731
    result = {}
    for name, run in runners.items():
        if name.startswith("bert_encoder ") and hasattr(run, "nlp"):
            docs, tokens = vectors(run.nlp)
            token_cos = (tokens * base_tokens).sum(1) / (
                numpy.linalg.norm(tokens, axis=1) * numpy.linalg.norm(base_tokens, axis=1) + 1e-12)
            nonzero = numpy.linalg.norm(base_tokens, axis=1) > 0
            result[name] = {"min_doc_cosine": min(cos(a, b) for a, b in zip(docs, base_docs)),
                            "mean_token_cosine": float(token_cos[nonzero].mean()),
                            "min_token_cosine": float(token_cos[nonzero].min())}
            print(f"{name} vs fp32: min doc-vector cosine {result[name]['min_doc_cosine']:.5f}, "
                  f"token-vector cosine mean {result[name]['mean_token_cosine']:.5f} "
                  f"min {result[name]['min_token_cosine']:.5f}")
    return result


if __name__ == "__main__":
    main()
