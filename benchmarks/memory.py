"""Memory over a long nlp.pipe stream: does the process grow with the number
of docs processed?

    python benchmarks/memory.py [--n-docs 100000] [--batch-size 64] [--every 5000] \
        [--component bert_encoder|bert_textcat|transformer|none]

Streams --n-docs short docs (SST-2 train sentences, repeated in order) through
nlp.pipe with one component (bert_encoder by default; bert_textcat with an
untrained head; spaCy-transformers' `transformer` for comparison). Docs are
dropped as they come out, as a streaming job would. Every --every docs it
records the current RSS (VmRSS) and the peak RSS so far (max of VmRSS samples
taken every 5 ms in a thread, and the kernel's VmHWM). Prints the table and
peak(end) / peak(first 5k docs); the target is <= 1.10.
Writes benchmarks/results/memory_<component>.json.
"""
import argparse
import itertools
import time

import spacy

from benchlib import MINILM, RESULTS, RSSSampler, machine, print_table, rss_mb, sst2_texts, status_mb, write_json


def hwm_mb() -> float:
    """The kernel's peak resident set size (VmHWM) of this process in MB."""
    return status_mb("VmHWM")


def build(component: str):
    nlp = spacy.blank("en")
    if component == "none":  # spaCy's tokenizer alone: what the vocabulary's growth costs
        return nlp
    if component == "transformer":
        import spacy_transformers  # noqa: F401

        from spacy_gptbert.models.hf_loading import resolve_model_dir

        nlp.add_pipe("transformer", config={"model": {
            "@architectures": "spacy-transformers.TransformerModel.v3", "name": str(resolve_model_dir(MINILM)),
            "tokenizer_config": {"use_fast": True}, "mixed_precision": False,
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 256, "stride": 192}}})
        nlp.initialize()
    elif component == "bert_textcat":
        from spacy.training import Example

        nlp.add_pipe("bert_textcat", config={"model": {"name": MINILM}})
        examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y), "NEG": float(not y)}})
                    for t, y in [("a great film", 1), ("a dull film", 0)]]
        nlp.initialize(lambda: examples)
    else:
        nlp.add_pipe(component, config={"model": {"name": MINILM}})
        nlp.initialize()
    return nlp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-docs", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--every", type=int, default=5000)
    parser.add_argument("--component", default="bert_encoder")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info}")
    nlp = build(args.component)
    texts = sst2_texts("train")
    stream = itertools.islice(itertools.cycle(texts), args.n_docs)
    rows = []
    start = time.perf_counter()
    rss_loaded = rss_mb()
    with RSSSampler() as mem:
        for i, doc in enumerate(nlp.pipe(stream, batch_size=args.batch_size), start=1):
            if i % args.every == 0 or i == args.n_docs:
                rows.append({"docs": i, "seconds": time.perf_counter() - start, "rss_mb": rss_mb(),
                             "peak_rss_mb": max(mem.peak, rss_mb()), "vm_hwm_mb": hwm_mb()})
                r = rows[-1]
                print(f"{r['docs']:>8} docs  {r['seconds']:7.1f} s  RSS {r['rss_mb']:7.1f} MB  "
                      f"peak {r['peak_rss_mb']:7.1f} MB  HWM {r['vm_hwm_mb']:7.1f} MB", flush=True)
    first = next((r for r in rows if r["docs"] >= min(5000, args.n_docs)), rows[0])
    for r in rows:
        r["peak_vs_first"] = r["peak_rss_mb"] / first["peak_rss_mb"]
    print(f"\n{args.component}: {args.n_docs} docs, batch {args.batch_size}; RSS after loading {rss_loaded:.0f} MB")
    print_table(rows, [("docs", "docs", "{}"), ("seconds", "s", "{:.0f}"), ("rss_mb", "RSS MB", "{:.0f}"),
                       ("peak_rss_mb", "peak RSS MB", "{:.0f}"), ("vm_hwm_mb", "VmHWM MB", "{:.0f}"),
                       ("peak_vs_first", f"peak / peak({first['docs']})", "{:.3f}")])
    ratio = rows[-1]["peak_rss_mb"] / first["peak_rss_mb"]
    print(f"peak RSS after {rows[-1]['docs']} docs / after {first['docs']}: {ratio:.3f} "
          f"({'within' if ratio <= 1.10 else 'OVER'} the 10% target)")
    output = args.output or str(RESULTS / f"memory_{args.component}.json")
    write_json(output, {"machine": info, "args": vars(args), "rss_after_loading_mb": rss_loaded,
                        "first_checkpoint": first["docs"], "ratio_end_vs_first": ratio, "rows": rows})


if __name__ == "__main__":
    main()
