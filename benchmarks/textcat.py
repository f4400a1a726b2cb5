"""Text classification on SST-2: bert_textcat vs spaCy's own textcat, trained
on the same data in one process; then bert_textcat's dev accuracy and speed
under its CPU inference settings: fp32 on oneDNN's prepacked kernels (the
default), fp32 on torch's kernels, int8 dynamic quantization (quantize = true).

    python benchmarks/textcat.py [--bert-steps N] [--spacy-epochs 2] [--train-limit 0]
    python benchmarks/textcat.py --bert-model training/sst2/model-best   # evaluate a trained pipeline

Contenders (each trained with its own config's optimizer, batcher, dropout and
learning-rate schedule, through spaCy's own batching, shuffled each epoch):
  bert_textcat            configs/textcat_sst2.cfg (all-MiniLM-L6-v2), --bert-steps steps
                          (default: the config's max_steps; a shorter run scales the
                          warmup_linear schedule to it: 10% warm-up, then linear decay)
  spaCy textcat bow       `spacy init config -p textcat -o efficiency` (TextCatBOW.v3)
  spaCy textcat ensemble  `spacy init config -p textcat -o accuracy` (TextCatEnsemble.v2:
                          tok2vec CNN + BOW), with static vectors off (the config names
                          en_core_web_lg, which is not installed here)
  spaCy's textcats train --spacy-epochs epochs over the training set.

Training examples/s counts only nlp.update time. Accuracy = the top label
equals the gold label, on all 872 SST-2 dev sentences (parameter averages
used where the optimizer keeps them, as `spacy train` does). Dev words/s =
nlp.pipe over dev (batch 64), whitespace words.
Writes benchmarks/results/textcat.json.
"""
import argparse
import random
import tempfile
import time
from pathlib import Path

import spacy
from spacy.training.initialize import init_nlp
from spacy.training.loop import create_train_batches
from spacy.util import fix_random_seed, load_config, registry, resolve_dot_names
from spacy.schemas import ConfigSchemaTraining

from benchlib import RESULTS, ROOT, SST2, count_words, machine, print_table, write_json

NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}


def make_corpus(out: Path, limit: int) -> None:
    from spacy_gptbert.training.convert import read_tsv, to_docbin

    nlp = spacy.blank("en")
    for split in ("train", "dev"):
        records = list(read_tsv(SST2 / f"{split}.tsv", "sentence", "label", NAMES))
        if split == "train" and limit:
            records = records[:limit]
        to_docbin(nlp, records, list(NAMES.values())).to_disk(out / f"{split}.spacy")


def spacy_textcat_config(optimize: str):
    from spacy.cli.init_config import init_config

    config = init_config(lang="en", pipeline=["textcat"], optimize=optimize, gpu=False)
    config["paths"]["vectors"] = None
    if "tok2vec" in config["components"]:
        config["components"]["tok2vec"]["model"]["embed"]["include_static_vectors"] = False
    return config


def train(config, corpus: Path, max_steps: int, max_epochs: int, seed: int = 0):
    config = config.copy()
    config["paths"]["train"] = str(corpus / "train.spacy")
    config["paths"]["dev"] = str(corpus / "dev.spacy")
    config["system"]["seed"] = seed
    fix_random_seed(seed)
    random.seed(seed)
    nlp = init_nlp(config)
    config = nlp.config.interpolate()  # as spacy train does: init_config's ${system.seed} etc.
    T = registry.resolve(config["training"], schema=ConfigSchemaTraining)
    (train_corpus,) = resolve_dot_names(config, [T["train_corpus"]])
    optimizer, batcher, dropout = T["optimizer"], T["batcher"], T["dropout"]
    steps = examples = 0
    seconds = 0.0
    for _, batch in create_train_batches(nlp, train_corpus, batcher, max_epochs):
        start = time.perf_counter()
        nlp.update(batch, drop=dropout, sgd=optimizer)
        optimizer.step_schedules()
        seconds += time.perf_counter() - start
        steps += 1
        examples += len(batch)
        if max_steps and steps >= max_steps:
            break
    return nlp, optimizer, {"steps": steps, "train_examples": examples, "train_s": seconds,
                            "train_examples_per_s": examples / seconds if seconds else None}


def evaluate(nlp, dev, batch_size: int = 64):
    texts = [t for t, _ in dev]
    start = time.perf_counter()
    docs = list(nlp.pipe(texts, batch_size=batch_size))
    seconds = time.perf_counter() - start
    right = sum(max(doc.cats, key=doc.cats.get) == gold for doc, (_, gold) in zip(docs, dev))
    return {"dev_accuracy": right / len(dev), "dev_words_per_s": count_words(texts) / seconds, "dev_s": seconds}


def averaged(nlp, optimizer):
    return nlp.use_params(optimizer.averages) if getattr(optimizer, "averages", None) else _null()


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# Prediction settings of bert_textcat compared on the trained pipeline, the default first.
DEFAULT_SETTING = "fp32, onednn_prepack = true (default)"
INFERENCE_SETTINGS = {
    DEFAULT_SETTING: {"quantize": False, "onednn_prepack": True},
    "fp32, onednn_prepack = false (torch kernels)": {"quantize": False, "onednn_prepack": False},
    "quantize = true (int8)": {"quantize": True, "onednn_prepack": True},
}


def use_setting(textcat, setting: str) -> None:
    for attr, value in INFERENCE_SETTINGS[setting].items():
        setattr(textcat, attr, value)


def main() -> None:
    from spacy_gptbert.training.convert import read_tsv

    parser = argparse.ArgumentParser()
    parser.add_argument("--bert-config", default=str(ROOT / "configs" / "textcat_sst2.cfg"))
    parser.add_argument("--bert-steps", type=int, default=0, help="0: the config's max_steps")
    parser.add_argument("--bert-model", default=None, help="evaluate this trained pipeline instead of training")
    parser.add_argument("--spacy-epochs", type=int, default=2)
    parser.add_argument("--train-limit", type=int, default=0, help="first N training sentences (0: all 67,349)")
    parser.add_argument("--contenders", default="bert_textcat,spaCy textcat bow,spaCy textcat ensemble")
    parser.add_argument("--output", default=str(RESULTS / "textcat.json"))
    args = parser.parse_args()
    info = machine()
    print(f"machine: {info}")
    names = [n.strip() for n in args.contenders.split(",") if n.strip()]
    dev = [(t, labels[0]) for t, labels in read_tsv(SST2 / "dev.tsv", "sentence", "label", NAMES)]
    rows, setting_rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp)
        make_corpus(corpus, args.train_limit)
        for name in names:
            if name == "bert_textcat":
                if args.bert_model:
                    nlp, optimizer, stats = spacy.load(args.bert_model), None, {"steps": None}
                else:
                    config = load_config(args.bert_config, interpolate=False)
                    steps = args.bert_steps or int(config["training"]["max_steps"])
                    config["training"]["max_steps"] = steps
                    schedule = config["training"]["optimizer"].get("learn_rate")
                    if args.bert_steps and isinstance(schedule, dict) and "total_steps" in schedule:
                        # a shorter run keeps the config's schedule shape: 10% warm-up, then linear decay
                        schedule["total_steps"] = steps
                        schedule["warmup_steps"] = max(1, steps // 10)
                    nlp, optimizer, stats = train(config, corpus, steps, int(config["training"]["max_epochs"]))
            else:
                config = spacy_textcat_config("efficiency" if name.endswith("bow") else "accuracy")
                nlp, optimizer, stats = train(config, corpus, 0, args.spacy_epochs)
            with averaged(nlp, optimizer):
                result = evaluate(nlp, dev)
                row = {"contender": name, **stats, **result}
                rows.append(row)
                if name == "bert_textcat":
                    textcat = nlp.get_pipe("bert_textcat")
                    for _ in range(2):  # twice each, interleaved; best speed kept
                        for setting in INFERENCE_SETTINGS:
                            use_setting(textcat, setting)
                            setting_rows.append({"setting": setting, **evaluate(nlp, dev)})
                    use_setting(textcat, DEFAULT_SETTING)
            print(f"{name}: {row}")
    best_spacy = max((r for r in rows if r["contender"] != "bert_textcat"), key=lambda r: r["dev_accuracy"], default=None)
    for r in rows:
        if best_spacy is not None:
            r["accuracy_points_vs_best_spacy"] = 100 * (r["dev_accuracy"] - best_spacy["dev_accuracy"])
            r["dev_speed_vs_best_spacy"] = r["dev_words_per_s"] / best_spacy["dev_words_per_s"]
        r["dev_accuracy_pct"] = 100 * r["dev_accuracy"]
    print("\nSST-2: training and dev accuracy")
    print_table(rows, [("contender", "contender", "{}"), ("steps", "steps", "{}"),
                       ("train_examples", "train ex", "{}"), ("train_examples_per_s", "train ex/s", "{:.1f}"),
                       ("dev_accuracy_pct", "dev acc %", "{:.2f}"),
                       ("accuracy_points_vs_best_spacy", "vs best spaCy (points)", "{:+.2f}"),
                       ("dev_words_per_s", "dev words/s", "{:.0f}")])
    summary = []
    if setting_rows:
        for setting in INFERENCE_SETTINGS:
            runs = [q for q in setting_rows if q["setting"] == setting]
            summary.append({"setting": setting, "dev_accuracy_pct": 100 * runs[0]["dev_accuracy"],
                            "dev_words_per_s": max(q["dev_words_per_s"] for q in runs)})
        for s in summary:  # against the default: summary[0]
            s["accuracy_change_points"] = s["dev_accuracy_pct"] - summary[0]["dev_accuracy_pct"]
            s["speed_up"] = s["dev_words_per_s"] / summary[0]["dev_words_per_s"]
        print("\nbert_textcat on SST-2 dev: CPU inference settings (nlp.pipe batch 64; the model's own "
              "mixed_precision setting applies)")
        print_table(summary, [("setting", "setting", "{}"), ("dev_accuracy_pct", "dev acc %", "{:.2f}"),
                              ("accuracy_change_points", "change (points)", "{:+.2f}"),
                              ("dev_words_per_s", "words/s", "{:.0f}"), ("speed_up", "speed-up", "{:.2f}x")])
    write_json(args.output, {"machine": info, "args": vars(args), "rows": rows, "inference_settings": summary,
                             "inference_setting_runs": setting_rows})


if __name__ == "__main__":
    main()
