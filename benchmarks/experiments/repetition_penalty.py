"""Does a repetition penalty make a briefly trained generator's text read
better without losing the label? One assembled pipeline (a bert_textcat, then a
gpt_generator: the main job's `training/sst2-quick-pipeline`) runs on the first
--n SST-2 dev sentences at each penalty; the generator is prompted with the
label the textcat predicts, as in `spacy evaluate`.

    python benchmarks/experiments/repetition_penalty.py training/sst2-quick-pipeline \
        corpus/sst2/dev.spacy [--penalties 1.0,1.1,1.2,1.3] [--n 200] [--output OUT.json]

Per penalty: gen_agreement, distinct-1/2 and the repeat-4gram share (the
generator scorer's functions), the time, and the generations for the demo's
eight texts (the `demo` command's DEMO_TEXTS).
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin

from spacy_gptbert.cli.app import DEMO_TEXTS
from spacy_gptbert.pipeline.generator_scoring import generation_agreement, generation_quality


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("pipeline")
    parser.add_argument("dev")
    parser.add_argument("--penalties", default="1.0,1.1,1.2,1.3")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--generator", default="gpt_generator")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    nlp = spacy.load(args.pipeline)
    generator = nlp.get_pipe(args.generator)
    texts = [doc.text for doc in DocBin().from_disk(args.dev).get_docs(nlp.vocab)][: args.n]
    results = []
    for penalty in (float(p) for p in args.penalties.split(",")):
        generator.settings = dataclasses.replace(generator.settings, repetition_penalty=penalty)
        start = time.perf_counter()
        docs = list(nlp.pipe(texts, batch_size=32))
        seconds = time.perf_counter() - start
        quality = generation_quality([g for doc in docs for g in (doc._.generations or [])])
        row = {"repetition_penalty": penalty, "gen_agreement": generation_agreement(nlp, docs),
               **quality, "seconds": round(seconds, 1),
               "demo": [[max(d.cats, key=d.cats.get), d._.generations[0]] for d in nlp.pipe(DEMO_TEXTS)]}
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "demo"}))
        for label, text in row["demo"]:
            print(f"    {label}: {text}")
    if args.output:
        Path(args.output).write_text(json.dumps({"pipeline": args.pipeline, "n": len(texts), "runs": results},
                                                indent=1) + "\n")


if __name__ == "__main__":
    main()
