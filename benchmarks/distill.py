"""Teacher, student and a MiniLM trained on gold labels, side by side:
SST-2 dev accuracy and nlp.pipe words/s, measured in one run, interleaved
(these machines are noisy, so each pipeline is timed in alternation).

    python benchmarks/distill.py teacher=training/sst2-base/model-best \
        student=training/sst2-student/model-best minilm=training/sst2/model-best \
        --output benchmarks/results/distill.json
"""
import argparse
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from benchlib import ROOT, count_words, machine, print_table, sst2_texts, write_json


def dev_examples(nlp, path: Path):
    return [Example(nlp.make_doc(doc.text), doc) for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pipelines", nargs="+", help="name=path of each trained pipeline")
    parser.add_argument("--dev", default=str(ROOT / "corpus" / "sst2" / "dev.spacy"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "distill.json"))
    args = parser.parse_args()
    pipelines = dict(item.split("=", 1) for item in args.pipelines)
    nlps = {name: spacy.load(path) for name, path in pipelines.items()}
    texts = sst2_texts("dev")
    n_words = count_words(texts)
    rows = []
    for name, nlp in nlps.items():
        scores = nlp.evaluate(dev_examples(nlp, Path(args.dev)))
        rows.append({"pipeline": name, "path": pipelines[name], "cats_acc": scores["cats_acc"],
                     "seconds": []})
    for _ in range(args.repeats):  # interleaved: each pipeline sees the same machine state
        for row, nlp in zip(rows, nlps.values()):
            start = time.perf_counter()
            for _doc in nlp.pipe(texts, batch_size=args.batch_size):
                pass
            row["seconds"].append(time.perf_counter() - start)
    for row in rows:
        row["words_per_second"] = n_words / min(row["seconds"])
    print_table(rows, [("pipeline", "pipeline", "{}"), ("cats_acc", "SST-2 dev acc", "{:.4f}"),
                       ("words_per_second", "words/s", "{:,.0f}")])
    write_json(args.output, {"machine": machine(), "dev_texts": len(texts), "dev_words": n_words,
                             "batch_size": args.batch_size, "rows": rows})


if __name__ == "__main__":
    main()
