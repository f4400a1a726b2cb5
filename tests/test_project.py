"""The spaCy project (project.yml) and its scripts: the workflows are complete
(every step's inputs exist or come from an earlier step), GPU and budget
variants are vars and configs rather than copied commands, the scripts work on
tiny pipelines, and, on a GPU machine, all three components follow thinc's GPU."""
import importlib.util
import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
import srsly
from spacy.tokens import DocBin
from spacy.training import Example

ROOT = Path(__file__).resolve().parents[1]
PROJECT = srsly.read_yaml(ROOT / "project.yml")
COMMANDS = {c["name"]: c for c in PROJECT["commands"]}

torch = pytest.importorskip("torch")
has_gpu = torch.cuda.is_available()


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKFLOWS = ["quick", "all", "all_gpu", "distill"]
# Steps that take --gpu-id: spacy train/evaluate and the package's commands that run a model.
DEVICE_STEP = re.compile(r"-m spacy (train|evaluate) |-m spacy_gptbert (pretrain-mlm|label|demo) ")
SST2_TRAIN_SENTENCES = 67_349
# The configs that are another config with other settings, and exactly which settings.
CONFIG_VARIANTS = {
    "textcat_sst2_quick.cfg": ("textcat_sst2.cfg", {
        "training.max_steps", "training.eval_frequency", "training.optimizer.learn_rate.warmup_steps"}),
    "textcat_trec.cfg": ("textcat_sst2.cfg", {
        "training.max_epochs", "training.max_steps", "training.optimizer.learn_rate.warmup_steps",
        "training.optimizer.learn_rate.initial_rate"}),
    "generator_conditional_quick.cfg": ("generator_conditional.cfg", {
        "components.gpt_generator.model.n_layer", "components.gpt_generator.model.n_embd",
        "components.gpt_generator.model.vocab_size", "training.batcher.size", "training.max_steps",
        "training.eval_frequency", "training.optimizer.learn_rate.warmup_steps",
        "training.optimizer.learn_rate.initial_rate", "corpora.dev.limit"}),
    "generator_warmstart_quick.cfg": ("generator_warmstart.cfg", {
        "components.gpt_generator.label_bias", "components.gpt_generator.repetition_penalty", "training.max_steps",
        "training.eval_frequency", "corpora.dev.limit", "training.batcher.@batchers", "training.batcher.buffer"}),
}


def resolved(**variables) -> dict:
    """project.yml as `spacy project run` sees it, with --vars.NAME VALUE overrides."""
    from weasel.util import load_project_config

    return load_project_config(ROOT, overrides={f"vars.{name}": value for name, value in variables.items()})


def resolved_commands(**variables) -> dict:
    return {c["name"]: c for c in resolved(**variables)["commands"]}


def effective_config(train_line: str):
    """The config a `python -m spacy train CONFIG ...overrides` line trains with."""
    from spacy.cli._util import parse_config_overrides
    from spacy.util import load_config

    words = shlex.split(train_line)
    config_path, args = words[words.index("train") + 1], words[words.index("train") + 2:]
    overrides = [word for i, word in enumerate(args) if not (word in {"--output", "--gpu-id"}
                                                              or i and args[i - 1] in {"--output", "--gpu-id"})]
    return load_config(ROOT / config_path, overrides=parse_config_overrides(overrides), interpolate=True)


def _flat(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_project_validates_with_spacy():
    config = resolved()
    assert set(WORKFLOWS) <= set(config["workflows"])
    assert config["vars"]["gpu_id"] == -1
    for asset in config["assets"]:
        assert asset["url"].startswith("https://") and len(asset["checksum"]) == 32


@pytest.mark.parametrize("workflow", WORKFLOWS)
def test_workflow_inputs_exist_or_come_from_earlier_steps(workflow):
    commands = resolved_commands()
    produced = set()
    for step in PROJECT["workflows"][workflow]:
        command = commands[step]
        for dep in command.get("deps", []):
            assert (ROOT / dep).exists() or any(dep == p or dep.startswith(p + "/") for p in produced), \
                f"{workflow}: {step} needs {dep}, which no earlier step writes"
        produced.update(command.get("outputs", []))
        for line in command["script"]:
            words = shlex.split(line)
            paths = [w for w in words if w.startswith(("scripts/", "configs/"))]
            assert all((ROOT / p).exists() for p in paths), line
            assert not [p for p in paths if p.startswith("configs/") and p not in command.get("deps", [])], \
                f"{step}: the config it trains with is not among its deps"


def test_gpu_runs_are_a_var_not_copied_commands():
    workflows = PROJECT["workflows"]
    assert workflows["all_gpu"] == ["check-gpu"] + workflows["all"]
    assert [c["name"] for c in PROJECT["commands"] if c["name"].endswith("-gpu")] == ["check-gpu"]
    for line in (line for c in PROJECT["commands"] for line in c["script"]):
        assert ("--gpu-id" in line) == bool(DEVICE_STEP.search(line)), line
        assert shlex.split(line).count("--gpu-id") == ("--gpu-id ${vars.gpu_id}" in line), line
    for command in resolved_commands(gpu_id=0).values():
        for line in command["script"]:
            if DEVICE_STEP.search(line):
                assert "--gpu-id 0" in line, line


def trainings(**variables):
    """(command name, the line, the config it trains with) for every `spacy train` line of the project."""
    for name, command in resolved_commands(**variables).items():
        for line in command["script"]:
            if "-m spacy train " in line:
                yield name, line, effective_config(line)


def test_max_batch_tokens_var_reaches_every_encoder_training_of_all_gpu():
    commands = resolved_commands(max_batch_tokens=8192)
    trained = 0
    for step in PROJECT["workflows"]["all_gpu"] + PROJECT["workflows"]["quick"]:
        for line in commands[step]["script"]:
            if "-m spacy train " in line and "bert_textcat" in effective_config(line)["components"]:
                assert effective_config(line)["components"]["bert_textcat"]["model"]["max_batch_tokens"] == 8192
                trained += 1
    assert trained == 4  # train-textcat, train-trec, train-textcat-mlm, train-textcat-quick


def test_quick_steps_var_resizes_the_quick_schedule():
    """`--vars.quick_textcat_steps 300` (the README's and quickstart's override)
    shortens the run and its learning-rate decay; the warm-up stays the config's."""
    line = resolved_commands(quick_textcat_steps=300)["train-textcat-quick"]["script"][1]
    config = effective_config(line)
    assert config["training"]["max_steps"] == 300
    assert config["training"]["optimizer"]["learn_rate"]["total_steps"] == 300
    assert config["training"]["optimizer"]["learn_rate"]["warmup_steps"] == 60
    line = resolved_commands(quick_generator_steps=50)["train-generator-quick"]["script"][1]
    assert effective_config(line)["training"]["optimizer"]["learn_rate"]["total_steps"] == 50


@pytest.mark.parametrize("steps", [{"quick_textcat_steps": 300, "quick_generator_steps": 150}, {}])
def test_quick_trainings_evaluate_their_last_step_whatever_the_budget(steps):
    """spaCy evaluates only at multiples of eval_frequency and model-best is the
    best evaluation: with a fixed eval_frequency of 600, `--vars.quick_textcat_steps
    300` evaluated only step 0, and the quick pipeline got a model that had seen
    one batch."""
    commands = resolved_commands(**steps)
    for name in ("train-textcat-quick", "train-generator-quick"):
        training = effective_config(commands[name]["script"][1])["training"]
        assert training["eval_frequency"] == training["max_steps"], name
    if steps:
        assert effective_config(commands["train-textcat-quick"]["script"][1])["training"]["max_steps"] == 300


def test_default_budgets_end_on_an_evaluation():
    """At the shipped budgets every training's last step is evaluated, except the
    SST-2 epoch (2105 steps, evaluated every 200 as its recorded figures were)."""
    for name, _, config in trainings():
        training = config["training"]
        if training["max_steps"] != 2105:
            assert training["max_steps"] % training["eval_frequency"] == 0, name


@pytest.mark.parametrize("variant", sorted(CONFIG_VARIANTS))
def test_config_variants_differ_from_their_base_only_in_their_settings(variant):
    from spacy.util import load_config

    base, settings = CONFIG_VARIANTS[variant]
    ours = dict(_flat(load_config(ROOT / "configs" / variant, interpolate=False)))
    theirs = dict(_flat(load_config(ROOT / "configs" / base, interpolate=False)))
    assert {key for key in set(ours) | set(theirs) if ours.get(key, "absent") != theirs.get(key, "absent")} == settings


def test_quick_and_all_train_the_same_components():
    quick = {step.replace("-quick", "") for step in PROJECT["workflows"]["quick"]}
    assert {"train-textcat", "train-generator", "assemble", "package", "demo"} <= quick
    assert quick <= set(PROJECT["workflows"]["all"])


def test_every_training_logs_jsonl_for_the_plots():
    for command in PROJECT["commands"]:
        for line in command["script"]:
            if "-m spacy train " in line:
                out = shlex.split(line)[shlex.split(line).index("--output") + 1]
                assert f"--training.logger.output_file {out}/log.jsonl" in line, command["name"]
                assert f"{out}/log.jsonl" in command["outputs"], command["name"]
                # spaCy's logger refuses to overwrite a log: each run starts clean.
                assert command["script"][0] == f"rm -rf {out}", command["name"]


def test_step_budgets_are_not_cut_short_by_max_epochs():
    """The step budget must be what stops a training: a config with max_epochs = 1
    stops after one pass over a small corpus first (TREC: 4,907 questions = 154
    steps of 32, so an 800-step budget ended at step 154, before the first
    evaluation, and model-best was the untrained model). Only an SST-2 training
    may keep an epoch limit, with a budget of at most one epoch of SST-2."""
    for name, line, config in trainings():
        training = config["training"]
        if training["max_epochs"] == 0:
            continue
        words = shlex.split(line)
        assert words[words.index("--paths.train") + 1] in {
            "corpus/sst2/train.spacy", "corpus/sst2/train_teacher.spacy"}, name
        assert training["max_steps"] <= math.ceil(SST2_TRAIN_SENTENCES / training["batcher"]["size"]), name


def test_get_assets_copies_and_checks(tmp_path, monkeypatch):
    get_assets = load_script("get_assets")
    data = tmp_path / "data"
    for asset in PROJECT["assets"]:
        rel = Path(asset["dest"]).relative_to("assets")
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text("not the real file")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project.yml").write_text((ROOT / "project.yml").read_text())
    with pytest.raises(SystemExit, match="checksum"):
        get_assets.main(str(data), "assets")


# --- scripts on tiny pipelines ------------------------------------------------

TINY_GPT = {
    "@architectures": "spacy-gptbert.GPT.v1", "n_layer": 1, "n_head": 2, "n_embd": 32,
    "n_positions": 64, "vocab_size": 300, "min_frequency": 1, "seed": 0,
}
REVIEWS = [("a good movie", "POSITIVE"), ("great fun", "POSITIVE"), ("a bad film", "NEGATIVE"),
           ("boring and dull", "NEGATIVE")]


def _examples(nlp):
    return [Example.from_dict(nlp.make_doc(t), {"cats": {"POSITIVE": float(y == "POSITIVE"),
                                                         "NEGATIVE": float(y == "NEGATIVE")}})
            for t, y in REVIEWS]


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    from tests.conftest import build_tiny_bert

    base = tmp_path_factory.mktemp("pipes")
    bert = build_tiny_bert(base / "bert")
    textcat = spacy.blank("en")
    textcat.add_pipe("bert_textcat", config={"model": {"name": str(bert)}})
    spacy.util.fix_random_seed(0)  # the same pipelines whichever tests ran before
    opt = textcat.initialize(get_examples=lambda: _examples(textcat))
    for _ in range(3):
        textcat.update(_examples(textcat), sgd=opt)
    textcat.to_disk(base / "textcat")
    gen = spacy.blank("en")
    gen.add_pipe("gpt_generator", config={
        "model": TINY_GPT, "mode": "prompt", "max_new_tokens": 5,
        "prompt": {"@misc": "spacy-gptbert.template_prompt.v1", "template": "{label} review: ",
                   "label_names": {"POSITIVE": "positive", "NEGATIVE": "negative"}}})
    opt = gen.initialize(get_examples=lambda: _examples(gen))
    for _ in range(3):
        gen.update(_examples(gen), sgd=opt)
    gen.to_disk(base / "gen")
    DocBin(docs=[eg.reference for eg in _examples(textcat)]).to_disk(base / "dev.spacy")
    return base


def generated_alone(gen_pipeline, doc) -> str:
    """What the generator's own pipeline generates for a doc with these cats:
    an assembled pipeline must generate the same."""
    alone = spacy.load(gen_pipeline)
    twin = alone.make_doc(doc.text)
    twin.cats = dict(doc.cats)
    return alone.get_pipe("gpt_generator")(twin)._.generation


def test_assemble_classifies_then_generates(tiny_pipelines, tmp_path):
    assemble = load_script("assemble")
    out = assemble.assemble(tiny_pipelines / "textcat", tiny_pipelines / "gen", tmp_path / "both", name="tiny")
    nlp = spacy.load(out)
    assert nlp.pipe_names == ["bert_textcat", "gpt_generator"]
    assert nlp.meta["name"] == "tiny"
    doc = nlp("what a good movie")
    assert set(doc.cats) == {"POSITIVE", "NEGATIVE"}
    assert doc._.generation == generated_alone(tiny_pipelines / "gen", doc)
    # The generator's prompt reads the label the classifier just predicted.
    gen = nlp.get_pipe("gpt_generator")
    label = max(doc.cats, key=doc.cats.get)
    assert gen.prompt(doc) == f"{label.lower()} review: "


def test_docs_assemble_config_with_spacy_assemble(tiny_pipelines, tmp_path):
    """The route to one pipeline in docs/generation.md: a config that sources both
    trained components, built by `spacy assemble`."""
    from tests.conftest import docs_block

    config = tmp_path / "assemble.cfg"
    config.write_text(docs_block("docs/generation.md", "Classifier and generator in one pipeline"), encoding="utf8")
    result = subprocess.run(
        [sys.executable, "-m", "spacy", "assemble", str(config), str(tmp_path / "both"),
         "--components.bert_textcat.source", str(tiny_pipelines / "textcat"),
         "--components.gpt_generator.source", str(tiny_pipelines / "gen")],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    nlp = spacy.load(tmp_path / "both")
    assert nlp.pipe_names == ["bert_textcat", "gpt_generator"]
    doc = nlp("what a good movie")
    label = max(doc.cats, key=doc.cats.get)
    assert nlp.get_pipe("gpt_generator").prompt(doc) == f"{label.lower()} review: "
    assert doc._.generation == generated_alone(tiny_pipelines / "gen", doc)


def test_demo_on_assembled_pipeline_prints_table(tiny_pipelines, tmp_path):
    assemble = load_script("assemble")
    out = assemble.assemble(tiny_pipelines / "textcat", tiny_pipelines / "gen", tmp_path / "both")
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"cats_acc": 0.5, "gen_agreement": 0.75, "gen_bpc": None, "speed": 100.0}))
    result = subprocess.run([sys.executable, "-m", "spacy_gptbert", "demo", str(out), "--metrics", str(metrics)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "generated" in result.stdout and "cats_acc" in result.stdout
    assert "gen_agreement" in result.stdout and "0.7500" in result.stdout and "gen_bpc" not in result.stdout
    assert "An absolute joy" in result.stdout


def test_compare_metrics(tmp_path):
    compare = load_script("compare_metrics")
    (tmp_path / "a.json").write_text(json.dumps({"cats_acc": 0.80, "cats_score": 0.79, "speed": 3.0}))
    (tmp_path / "b.json").write_text(json.dumps({"cats_acc": 0.85, "cats_score": 0.84}))
    result = compare.compare(tmp_path / "out.json", [f"base={tmp_path / 'a.json'}", f"mlm={tmp_path / 'b.json'}"])
    assert result["differences"]["mlm"]["cats_acc"] == pytest.approx(0.05)
    assert json.loads((tmp_path / "out.json").read_text())["baseline"] == "base"


def test_plots_from_log_and_pipeline(tiny_pipelines, tmp_path):
    pytest.importorskip("matplotlib")
    plots = load_script("plots")
    log = tmp_path / "log.jsonl"
    rows = [{"epoch": 0, "step": s, "losses": {"bert_textcat": l}, "scores": {"cats_acc": a, "speed": 9.0},
             "score": a / 100} for s, l, a in [(0, 0.0, 50.0), (200, 100.0, 80.0), (400, 60.0, 85.0)]]
    srsly.write_jsonl(log, rows)
    assert plots.loss_per_step(rows)["bert_textcat"] == ([200, 400], [0.5, 0.3])
    assert "speed" not in plots.scores_per_step(rows)
    assert plots.plot_curves(log, tmp_path / "curves.png").stat().st_size > 1000
    out = plots.plot_confusion(str(tiny_pipelines / "textcat"), tiny_pipelines / "dev.spacy", tmp_path / "cm.png")
    assert out.stat().st_size > 1000
    counts = json.loads((tmp_path / "cm.json").read_text())
    assert counts["labels"] == ["NEGATIVE", "POSITIVE"] and sum(map(sum, counts["matrix"])) == len(REVIEWS)


def test_workflows_with_plots_check_for_matplotlib_before_training(monkeypatch, capsys):
    workflows = PROJECT["workflows"]
    for name, steps in workflows.items():
        if "plots" in steps:
            assert "check-plots" in steps[:2] and steps.index("check-plots") < steps.index("assets"), name
    plots = load_script("plots")
    monkeypatch.setattr(sys, "argv", ["plots.py", "check"])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    with pytest.raises(SystemExit, match=r"pip install \.\[plots\]"):
        plots.main()


@pytest.mark.gpu
@pytest.mark.skipif(not has_gpu, reason="needs a CUDA GPU")
def test_require_gpu_moves_all_three_components(tiny_pipelines, tmp_path):
    """spacy.require_gpu() before spacy.load: every torch module is on CUDA and
    the pipeline runs there (no hard-coded devices)."""
    from thinc.api import use_ops

    from tests.conftest import build_tiny_bert

    assemble = load_script("assemble")
    out = assemble.assemble(tiny_pipelines / "textcat", tiny_pipelines / "gen", tmp_path / "both")
    spacy.require_gpu(0)
    try:
        nlp = spacy.load(out)
        nlp.add_pipe("bert_encoder", first=True,
                     config={"model": {"name": str(build_tiny_bert(tmp_path / "enc"))}})
        nlp.get_pipe("bert_encoder").initialize(lambda: [], nlp=nlp)
        for name, proc in nlp.pipeline:
            for shim in proc.model.walk():
                for s in shim.shims:
                    assert next(s._model.parameters()).device.type == "cuda", name
        doc = nlp("a good movie")
        assert doc.cats and isinstance(doc._.generation, str) and doc.tensor is not None
    finally:
        use_ops("numpy")
