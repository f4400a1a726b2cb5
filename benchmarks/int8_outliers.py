"""Why `quantize = true` keeps some linear layers float, measured on a trained
bert_textcat: per layer, the largest input value over its RMS (on the fixed
calibration batch of random token ids that quantize.py uses, and on SST-2 dev
sentences), then SST-2 dev accuracy of fp32 against three int8 variants.

    python benchmarks/int8_outliers.py --model DIR [--output F]

DIR: a pipeline with a bert_textcat trained on SST-2 (e.g. model-best of
configs/textcat_sst2.cfg). The int8 variants: the default (layers whose inputs
exceed quantize.OUTLIER_RATIO stay float), every linear layer int8, and every
linear layer int8 with per-channel weight scales. Speed is not measured
here: benchmarks/textcat.py does that.
"""
import argparse
import contextlib
import warnings
from typing import Dict, List

import spacy
import torch
from torch import nn

from benchlib import RESULTS, SST2, machine, print_table, write_json
from spacy_gptbert.models import inference_copy
from spacy_gptbert.models import quantize as q
from spacy_gptbert.models.encoder import is_windowed_model
from spacy_gptbert.training.convert import read_tsv

NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}


def windowed_module(textcat) -> nn.Module:
    return next(n for n in textcat.model.walk() if is_windowed_model(n)).shims[0]._model


def text_ratios(nlp, textcat, texts: List[str]) -> Dict[str, float]:
    """max |x| / RMS(x) of each linear layer's input over all of `texts`
    (fp32, torch's kernels, so the hooks see the float module)."""
    module = windowed_module(textcat)
    peak: Dict[str, float] = {}
    sum_sq: Dict[str, float] = {}
    count: Dict[str, int] = {}

    def record(name):
        def hook(_layer, inputs, _output):
            x = inputs[0].detach().float()
            peak[name] = max(peak.get(name, 0.0), float(x.abs().max()))
            sum_sq[name] = sum_sq.get(name, 0.0) + float(x.pow(2).sum())
            count[name] = count.get(name, 0) + x.numel()
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in module.named_modules() if type(m) is nn.Linear]
    textcat.quantize, textcat.onednn_prepack = False, False
    try:
        list(nlp.pipe(texts, batch_size=64))
    finally:
        for h in hooks:
            h.remove()
        textcat.onednn_prepack = True
    return {n: peak[n] / (sum_sq[n] / count[n]) ** 0.5 for n in peak}


@contextlib.contextmanager
def int8_variant(name: str):
    """Build the int8 copy the way `name` says; the copy cache is cleared on
    entry and exit so every variant builds its own."""
    saved_ratio, saved_quantize = q.OUTLIER_RATIO, torch.ao.quantization.quantize_dynamic
    if name != "default":
        q.OUTLIER_RATIO = float("inf")  # every linear layer int8
    if name == "all int8, per-channel weights":
        def per_channel(model, spec, dtype, inplace):
            qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            return saved_quantize(model, {n: qconfig for n in spec}, dtype=dtype, inplace=inplace)
        torch.ao.quantization.quantize_dynamic = per_channel
    inference_copy._CACHE.clear()
    try:
        yield
    finally:
        q.OUTLIER_RATIO, torch.ao.quantization.quantize_dynamic = saved_ratio, saved_quantize
        inference_copy._CACHE.clear()


def accuracy(nlp, texts, gold) -> float:
    docs = nlp.pipe(texts, batch_size=64)
    return 100 * sum(max(d.cats, key=d.cats.get) == g for d, g in zip(docs, gold)) / len(gold)


def main() -> None:
    # torch >= 2.10 announces torch.ao's move to torchao on every quantize call
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="torch")
    warnings.filterwarnings("ignore", message=".*torch.ao.quantization.*")
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True, help="pipeline with a trained bert_textcat")
    parser.add_argument("--output", default=str(RESULTS / "int8_outliers.json"))
    args = parser.parse_args()
    print(f"machine: {machine()}")
    nlp = spacy.load(args.model)
    textcat = nlp.get_pipe("bert_textcat")
    dev = list(read_tsv(SST2 / "dev.tsv", "sentence", "label", NAMES))
    texts, gold = [t for t, _ in dev], [labels[0] for _, labels in dev]

    calibration = q.input_outlier_ratios(windowed_module(textcat))
    on_text = text_ratios(nlp, textcat, texts)
    layers = [{"layer": n.replace("transformer.encoder.", ""), "random_ids": calibration.get(n),
               "sst2_dev": on_text.get(n), "int8": calibration.get(n, 0.0) <= q.OUTLIER_RATIO}
              for n in on_text]
    print(f"\nlinear layers: input max / RMS (threshold {q.OUTLIER_RATIO:g}; above it the layer stays float)")
    print_table(layers, [("layer", "layer", "{}"), ("random_ids", "random ids", "{:.1f}"),
                         ("sst2_dev", "SST-2 dev", "{:.1f}"), ("int8", "int8", "{}")])

    rows = []
    textcat.quantize = False
    rows.append({"setting": "fp32", "dev_accuracy_pct": accuracy(nlp, texts, gold)})
    textcat.quantize = True
    for variant in ("default", "all int8", "all int8, per-channel weights"):
        with int8_variant(variant):
            rows.append({"setting": f"int8, {variant}", "dev_accuracy_pct": accuracy(nlp, texts, gold)})
    textcat.quantize = False
    for r in rows:
        r["change_points"] = r["dev_accuracy_pct"] - rows[0]["dev_accuracy_pct"]
    print("\nSST-2 dev accuracy")
    print_table(rows, [("setting", "setting", "{}"), ("dev_accuracy_pct", "dev acc %", "{:.2f}"),
                       ("change_points", "change (points)", "{:+.2f}")])
    write_json(args.output, {"machine": machine(), "args": vars(args), "layers": layers, "accuracy": rows})


if __name__ == "__main__":
    main()
