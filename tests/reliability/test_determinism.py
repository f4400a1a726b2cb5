"""Processes, determinism and checkpoints: several processes give the same
output as one; the same seed gives bitwise the same weights; a pipeline saved
by `spacy train` (model-best, model-last) loads, evaluates and resumes."""
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.cli.evaluate import evaluate
from spacy.cli.train import train as train_cli
from spacy.tokens import DocBin
from thinc.api import Adam

from spacy_gptbert.models import generator_model as lm_model

from ..conftest import greedy_by_hand
from .conftest import TINY_GPT, WINDOWS, cats_examples

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "textcat_multilabel.cfg"

MULTIPROCESS_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[2])
from tests.reliability.conftest import full_nlp
from tests.reliability.test_odd_input import ODD_TEXTS
nlp = full_nlp(sys.argv[1])
items = [(t, {"i": i}) for i, t in enumerate(list(ODD_TEXTS.values()) + ["a good movie", "bad"] * 4)]

def run(**kwargs):
    return [{"ctx": c, "text": d.text, "tensor": d.tensor.tolist(), "cats": d.cats, "gen": d._.generations}
            for d, c in nlp.pipe(items, as_tuples=True, batch_size=3, **kwargs)]

print(json.dumps({"single": run(), "multi": run(n_process=2)}))
"""


@pytest.mark.slow
def test_two_processes_match_one(bert16):
    """Every component, odd texts included, as_tuples=True: the same docs,
    contexts, tensors, cats and (greedy) generations, in the same order."""
    out = subprocess.run([sys.executable, "-c", MULTIPROCESS_SCRIPT, bert16, str(REPO)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    single, multi = result["single"], result["multi"]
    assert len(single) == len(multi) == 27
    for a, b in zip(single, multi):
        assert a["ctx"] == b["ctx"] and a["text"] == b["text"] and a["gen"] == b["gen"]
        numpy.testing.assert_allclose(a["tensor"], b["tensor"], atol=1e-5)
        assert a["cats"].keys() == b["cats"].keys()
        numpy.testing.assert_allclose(list(a["cats"].values()), list(b["cats"].values()), atol=1e-5)


# -- same seed, same weights ---------------------------------------------------


def all_weights(nlp) -> dict:
    """Every torch parameter and thinc parameter of the pipeline, by name."""
    weights = {}
    for name, component in nlp.pipeline:
        for i, node in enumerate(component.model.walk()):  # walk order, not node.id (a global counter)
            for shim in node.shims:
                for key, tensor in shim._model.state_dict().items():
                    weights[f"{name}/{i}/{key}"] = tensor.detach().cpu().numpy().copy()
            for param in node.param_names:
                if node.has_param(param):
                    weights[f"{name}/{i}/{param}"] = numpy.asarray(node.get_param(param)).copy()
    return weights


def train_python(bert_dir: str, seed: int, steps: int = 3) -> dict:
    """initialize + nlp.update with dropout: textcat and an LM-mode GPT
    (random block offsets) both draw random numbers."""
    spacy.util.fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": bert_dir, **WINDOWS}})
    nlp.add_pipe("gpt_generator", config={"model": {**TINY_GPT, "dropout": 0.1}})
    egs = cats_examples(nlp)
    nlp.initialize(lambda: egs)
    optimizer = Adam(1e-3)
    for _ in range(steps):
        nlp.update(egs, sgd=optimizer, drop=0.1)
    return all_weights(nlp)


def test_same_seed_gives_bitwise_identical_weights(bert16):
    first, second = train_python(bert16, 0), train_python(bert16, 0)
    assert first.keys() == second.keys() and len(first) > 10
    assert all(numpy.array_equal(first[k], second[k]) for k in first)
    other = train_python(bert16, 1)
    assert not all(numpy.array_equal(first[k], other[k]) for k in first)  # the seed matters


# -- spacy train: determinism, checkpoints, resuming -----------------------------


def write_corpus(path: Path) -> Path:
    nlp = spacy.blank("en")
    db = DocBin()
    for i, text in enumerate(["a good movie", "a bad film", "i loved it", "boring and dull", "great fun"]):
        doc = nlp.make_doc(text)
        doc.cats = {"POS": float(i % 2 == 0), "NEG": float(i % 2 == 1)}
        db.add(doc)
    db.to_disk(path)
    return path


def cli_train(tmp_path: Path, bert_dir: str, out: str, config: Path = CONFIG, **overrides) -> Path:
    corpus = str(write_corpus(tmp_path / "data.spacy"))
    prefix = "components.bert_textcat.model"
    model = {} if config != CONFIG else {
        f"{prefix}.name": bert_dir, f"{prefix}.window": 32, f"{prefix}.stride": 16}
    train_cli(config, tmp_path / out, overrides={
        "paths.train": corpus, "paths.dev": corpus, **model,
        "training.max_steps": 4, "training.eval_frequency": 2,
        "training.optimizer.learn_rate.total_steps": 4, "training.optimizer.learn_rate.warmup_steps": 1,
        **overrides,
    })
    return tmp_path / out


def saved_weights(pipeline: Path) -> dict:
    component = pipeline / "bert_textcat"
    return {"hf": (component / "hf_0" / "model.safetensors").read_bytes(),
            "thinc": (component / "model").read_bytes()}


@pytest.mark.slow
def test_spacy_train_same_seed_same_weights(tmp_path, bert16):
    first = cli_train(tmp_path, bert16, "run1")
    second = cli_train(tmp_path, bert16, "run2")
    assert saved_weights(first / "model-last") == saved_weights(second / "model-last")
    third = cli_train(tmp_path, bert16, "run3", **{"system.seed": 7, "training.seed": 7})
    assert saved_weights(first / "model-last") != saved_weights(third / "model-last")


def macro_f_by_hand(pipeline: Path, corpus: Path) -> float:
    """The multi-label macro F that `spacy evaluate` should report, counted
    from the saved pipeline's own predictions: per label, F1 of "score >=
    threshold" against the 0/1 gold label; then the mean over the labels."""
    nlp = spacy.load(pipeline)
    textcat = nlp.get_pipe("bert_textcat")
    gold = list(DocBin().from_disk(corpus).get_docs(nlp.vocab))
    predicted = [nlp(doc.text).cats for doc in gold]
    f_scores = []
    for label in textcat.labels:
        pairs = [(cats[label] >= textcat.cfg["threshold"], doc.cats[label] >= 0.5)
                 for cats, doc in zip(predicted, gold)]
        tp = sum(p and g for p, g in pairs)
        fp = sum(p and not g for p, g in pairs)
        fn = sum(g and not p for p, g in pairs)
        f_scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f_scores) / len(f_scores)


@pytest.mark.slow
def test_checkpoints_load_evaluate_and_resume(tmp_path, bert16):
    out = cli_train(tmp_path, bert16, "run")
    corpus = tmp_path / "data.spacy"
    for checkpoint in ("model-best", "model-last"):
        nlp = spacy.load(out / checkpoint)
        assert set(nlp("a good movie").cats) == {"POS", "NEG"}
        scores = evaluate(out / checkpoint, corpus)
        assert scores["cats_macro_f"] == pytest.approx(macro_f_by_hand(out / checkpoint, corpus))
    # Resume with `spacy train`: a config whose component is sourced from the
    # checkpoint. With a zero learning rate the weights must stay the source's.
    config = spacy.util.load_config(CONFIG)
    config["components"]["bert_textcat"] = {"source": str(out / "model-last")}
    config["training"]["optimizer"]["learn_rate"]["initial_rate"] = 0.0
    config.to_disk(tmp_path / "resume.cfg")
    resumed = cli_train(tmp_path, bert16, "resumed", config=tmp_path / "resume.cfg")
    assert saved_weights(resumed / "model-last") == saved_weights(out / "model-last")
    # ... and with a learning rate it keeps training from there.
    config["training"]["optimizer"]["learn_rate"]["initial_rate"] = 1e-3
    config.to_disk(tmp_path / "resume.cfg")
    moved = cli_train(tmp_path, bert16, "moved", config=tmp_path / "resume.cfg")
    assert saved_weights(moved / "model-last") != saved_weights(out / "model-last")
    assert evaluate(moved / "model-last", corpus)["cats_macro_f"] == pytest.approx(
        macro_f_by_hand(moved / "model-last", corpus))


def test_resume_training_in_python(nlp_all, tmp_path):
    """spacy.load a saved pipeline, resume_training, update: no error, and
    the generator and classifier keep predicting."""
    nlp_all.to_disk(tmp_path / "checkpoint")
    nlp = spacy.load(tmp_path / "checkpoint")
    optimizer = nlp.resume_training()
    egs = cats_examples(nlp)
    before = lm_model.get_lm(nlp.get_pipe("gpt_generator").lm).transformer.wte.weight.detach().clone()
    losses = {}
    for _ in range(2):
        nlp.update(egs, sgd=optimizer, losses=losses)
    after = lm_model.get_lm(nlp.get_pipe("gpt_generator").lm).transformer.wte.weight
    assert all(numpy.isfinite(v) for v in losses.values()) and not bool((before == after).all())
    doc = nlp("a good \ud800 movie")  # the safe tokenizer came back with the pipeline
    assert doc.text == "a good \ufffd movie"
    assert set(doc.cats) == {"POS", "NEG"}
    # The updated weights generate: greedy_by_hand on them, from the prompt of the doc's label.
    generator = nlp.get_pipe("gpt_generator")
    lm, tokenizer = lm_model.get_hf_parts(generator.lm)
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    prompt_ids = [bos] + tokenizer(generator.prompt(doc), add_special_tokens=False)["input_ids"]
    assert doc._.generation == greedy_by_hand(lm, tokenizer, prompt_ids, 4)
