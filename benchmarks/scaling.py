"""How cost grows with doc length and batch size: words/s and peak memory of
bert_encoder (and the raw Hugging Face forward, and optionally
spacy-transformers) for docs of 16 ... 4,096 words, in one process.

    python benchmarks/scaling.py [--lengths 16,64,256,1024,4096] [--batch-sizes 1,8,64] \
        [--words 16384] [--contenders "bert_encoder,raw HF"]

Each cell processes about --words whitespace words: max(2, words / length) docs
of exactly `length` words (SST-2 text, cut). Contenders as in
encoder_inference.py (raw HF covers long docs with windows of 256 wordpieces,
stride 192). Reported: best of --repeats words/s, and the peak RSS above the
RSS at the start of the run (sampled every 5 ms). Writes
benchmarks/results/scaling.json.
"""
import argparse

from benchlib import RESULTS, machine, print_table, texts_of_length, write_json
from encoder_inference import CONTENDERS, bench


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lengths", default="16,64,256,1024,4096")
    parser.add_argument("--batch-sizes", default="1,8,64")
    parser.add_argument("--words", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--contenders", default="bert_encoder,raw HF")
    parser.add_argument("--output", default=str(RESULTS / "scaling.json"))
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info}")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    runners = {name: CONTENDERS[name]() for name in names}
    rows = []
    for length in [int(x) for x in args.lengths.split(",") if x]:
        texts = texts_of_length(max(2, args.words // length), length)
        for batch_size in [int(x) for x in args.batch_sizes.split(",") if x]:
            cell = bench(runners, texts, batch_size, args.repeats)
            base = next((r for r in cell if r["contender"] == "raw HF"), None)
            for r in cell:
                r.update(doc_words=length, batch_size=batch_size, n_docs=len(texts))
                if base is not None:
                    r["vs_raw_hf"] = r["words_per_s"] / base["words_per_s"]
                rows.append(r)
                print(f"{length:>5} words x {len(texts):>4} docs, batch {batch_size:>3}: {r['contender']:20} "
                      f"{r['words_per_s']:8.0f} words/s  peak-start {r['peak_over_start_mb']:6.0f} MB", flush=True)
    print()
    print_table(rows, [("doc_words", "doc words", "{}"), ("batch_size", "batch", "{}"),
                       ("contender", "contender", "{}"), ("words_per_s", "words/s", "{:.0f}"),
                       ("vs_raw_hf", "vs raw HF", "{:.2f}x"), ("peak_over_start_mb", "peak-start MB", "{:.0f}"),
                       ("peak_rss_mb", "peak RSS MB", "{:.0f}")])
    write_json(args.output, {"machine": info, "args": vars(args), "word_unit": "whitespace words", "rows": rows})


if __name__ == "__main__":
    main()
