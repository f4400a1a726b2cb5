"""Scale-out benchmark: `apply` on Ray with 1 worker vs 2 workers, one torch
thread each, on the same corpus; prints docs/s of both and their ratio, and
checks that both outputs (and the local backend's, with --check-local) are
the same bytes. Writes benchmarks/results/apply_scaling.json.

    nice -n 0 python benchmarks/apply_scaling.py             # the measurement (quiet machine)
    python benchmarks/apply_scaling.py --docs 400 --quick    # a smoke run

The model is bert_textcat on all-MiniLM-L6-v2 (the packaged copy, offline),
or a random BERT of the same shape with --model random. Texts are SST-2 train
sentences from ../shared/data/sst2 when present, else generated sentences.
Wall time covers the whole apply call: starting the actors (import, load the
pipeline) and processing; Ray itself is started once, before both runs.
"""
import argparse
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SST2_TRAIN = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def texts(n: int, seed: int = 0):
    if SST2_TRAIN.exists():
        lines = [line.split("\t")[0] for line in SST2_TRAIN.read_text(encoding="utf8").splitlines()[1:]]
        source = "sst2-train"
    else:
        rng = random.Random(seed)
        words = "the a film movie plot actor great bad dull moving story ending scene music funny long".split()
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(5, 30))) for _ in range(5000)]
        source = "generated"
    return [lines[i % len(lines)] for i in range(n)], source


def random_bert(path: Path) -> str:
    """A random BERT with all-MiniLM-L6-v2's shape (6 layers, 384 wide)."""
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(texts(5000)[0], vocab_size=8000, min_frequency=1)
    trainer.save_model(str(path))
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True, model_max_length=512)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(path), safe_serialization=True)
    tok.save_pretrained(str(path))
    return str(path)


def build_pipeline(model: str, target: Path) -> None:
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": model, "window": 128, "stride": 96}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(i % 2), "NEG": float(1 - i % 2)}})
                for i, t in enumerate(["good", "bad", "great film", "dull film"])]
    nlp.initialize(lambda: examples)
    nlp.to_disk(target)


def write_corpus(root: Path, docs, shards: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // shards)
    for s in range(shards):
        with open(root / f"shard-{s:03d}.jsonl", "w", encoding="utf8") as f:
            for i in range(s * per, min(len(docs), (s + 1) * per)):
                f.write(json.dumps({"id": f"doc-{i}", "text": docs[i]}) + "\n")


def part_files(out: Path):
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl"))}


def timed_apply(corpus, out, settings, **kw):
    from spacy_gptbert.scaleout import apply

    start = time.perf_counter()
    first = []  # (seconds, docs) when the first part came back: start-up is over

    def on_part(part, n):
        if not first:
            first.append((time.perf_counter() - start, n))

    result = apply(corpus, out, settings, progress=False, log=lambda *_: None, on_part=on_part, **kw)
    wall = time.perf_counter() - start
    first_s, first_docs = first[0]
    return {"wall_s": round(wall, 2), "docs": result.processed_records,
            "docs_per_s": round(result.processed_records / wall, 2),  # end to end: what the acceptance uses
            "first_part_s": round(first_s, 2),
            # after the first part: start-up left out, a rough steady-state rate
            "docs_per_s_after_first_part": round((result.processed_records - first_docs) / (wall - first_s), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=12000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--part-size", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default=MINILM, help=f"{MINILM} (default), a directory, or 'random'")
    parser.add_argument("--check-local", action="store_true", help="also run the local backend and compare bytes")
    parser.add_argument("--quick", action="store_true", help="smoke run: no JSON written")
    parser.add_argument("--output", type=Path, default=RESULTS / "apply_scaling.json")
    args = parser.parse_args()

    import ray
    import torch

    import spacy_gptbert
    from spacy_gptbert.scaleout import ApplySettings

    work = Path(tempfile.mkdtemp(prefix="apply_scaling_"))
    try:
        model = random_bert(work / "bert") if args.model == "random" else args.model
        build_pipeline(model, work / "nlp")
        docs, source = texts(args.docs)
        write_corpus(work / "corpus", docs, args.shards)
        settings = ApplySettings(str(work / "nlp"), part_size=args.part_size, batch_size=args.batch_size, threads=1)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        runs = {}
        for workers in (1, 2):
            runs[f"ray_{workers}_worker"] = timed_apply(work / "corpus", work / f"out{workers}", settings,
                                                        backend="ray", workers=workers)
            print(f"ray, {workers} worker(s) x 1 torch thread: {runs[f'ray_{workers}_worker']}", flush=True)
        ray.shutdown()
        identical = part_files(work / "out1") == part_files(work / "out2")
        if args.check_local:
            runs["local_1_process"] = timed_apply(work / "corpus", work / "out_local", settings)
            identical = identical and part_files(work / "out_local") == part_files(work / "out1")
        ratio = runs["ray_2_worker"]["docs_per_s"] / runs["ray_1_worker"]["docs_per_s"]
        print(f"1 worker: {runs['ray_1_worker']['docs_per_s']:.1f} docs/s   "
              f"2 workers: {runs['ray_2_worker']['docs_per_s']:.1f} docs/s   ratio: {ratio:.2f}x   "
              f"outputs identical: {identical}")
        report = {
            "benchmark": "apply_scaling", "command": " ".join([Path(sys.executable).name] + sys.argv),
            "machine": {"cpus": os.cpu_count(), "processor": _cpu_name(), "platform": platform.platform(),
                        "load_avg_at_start": os.getloadavg()},
            "versions": {"ray": ray.__version__, "torch": torch.__version__, "spacy_gptbert": spacy_gptbert.__version__},
            "settings": {"docs": args.docs, "shards": args.shards, "part_size": args.part_size,
                         "batch_size": args.batch_size, "model": args.model, "texts": source, "torch_threads": 1},
            "runs": runs, "ratio_2_vs_1": round(ratio, 3), "outputs_identical": identical,
        }
        if not args.quick:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2) + "\n")
            print(f"wrote {args.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
