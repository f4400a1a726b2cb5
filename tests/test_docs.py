"""The docs cannot drift from the code.

Each test fails when a name the code has is missing from the docs: every factory
setting and score (docs/components.md), every registered function under the
"spacy-gptbert." prefix and its arguments (docs/architectures.md), every error
and warning code (docs/errors.md), every command and option of
`python -m spacy_gptbert` (docs/cli.md and the page it points to), every config in
configs/ (docs/training.md) and every var of project.yml (docs/project.md). Names count
when they are the first cell of a table row (| `name` | ...), in the section
under their own heading. Relative links must lead to a page and heading that
exist, and the README stays short.

Blocks marked with the line `<!-- test: runs -->` right above their ```python or
```bash fence are run (test_marked_block_runs, slow), each in a fresh working
directory holding the files the docs name (train.tsv, texts.txt, a trained
my_textcat pipeline, a fine-tuned my_classifier) and with the real models swapped
for tiny ones, so training blocks take seconds.
"""
import configparser
import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Set

import pytest

from .conftest import HF_TINY, ROOT, build_tiny_bert
from .conftest import docs_section as section

DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md"] + sorted(DOCS.glob("*.md"))
README_MAX_BYTES = 12_000
PREFIX = "spacy-gptbert."
RUNS_MARKER = "<!-- test: runs -->"
# setup.cfg entry-point groups -> spaCy registry names
GROUPS = {
    "spacy_architectures": "architectures", "spacy_scorers": "scorers", "spacy_batchers": "batchers",
    "spacy_misc": "misc", "spacy_readers": "readers", "spacy_tokenizers": "tokenizers",
    "spacy_loggers": "loggers", "spacy_callbacks": "callbacks",
}


# -- reading the docs -----------------------------------------------------------


def read(page: Path) -> str:
    return page.read_text(encoding="utf8")


def headings(text: str) -> List[str]:
    """Heading lines outside code blocks."""
    found, in_code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            found.append(line)
    return found


def row_names(text: str) -> Set[str]:
    """Backticked names in the first cell of each table row."""
    names = set()
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([^`]+)`", first_cell))
    return names


def anchor(heading_title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    title = heading_title.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", title).replace(" ", "-")


def anchors(text: str) -> Set[str]:
    """The anchors of a page's headings; GitHub numbers repeated ones: scores, scores-1, ..."""
    seen: Dict[str, int] = {}
    result = set()
    for line in headings(text):
        base = anchor(line.split(" ", 1)[1])
        result.add(f"{base}-{seen[base]}" if base in seen else base)
        seen[base] = seen.get(base, 0) + 1
    return result


def missing_rows(page: Path, title: str, names) -> List[str]:
    text = section(read(page), title)
    assert text, f"{page.relative_to(ROOT)} has no heading '{title}'"
    return sorted(set(names) - row_names(text))


# -- what the code has ----------------------------------------------------------


def import_package() -> None:
    """Import every module, so that decorators register what setup.cfg might miss
    (modules with an optional dependency that is not installed are skipped)."""
    import spacy_gptbert

    for module in pkgutil.walk_packages(spacy_gptbert.__path__, "spacy_gptbert."):
        try:
            importlib.import_module(module.name)
        except ImportError:
            pass


def factories() -> Dict[str, Set[str]]:
    """Our factories -> their settings: the default_config keys and the arguments of the factory function."""
    import spacy
    from spacy.language import Language
    from spacy.util import registry

    import_package()
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    names = [line.split("=")[0].strip() for line in
             parser["options.entry_points"]["spacy_factories"].strip().splitlines()]
    spacy.blank("en")  # loads the entry points
    result = {}
    for name in names:
        meta = Language.get_factory_meta(name)
        settings = set(meta.default_config or {})
        params = inspect.signature(registry.factories.get(name)).parameters
        settings |= {p for p in params if p not in ("nlp", "name")}
        result[name] = settings
    return result


def score_keys() -> Dict[str, Set[str]]:
    """Our factories -> the scores they report: their default_score_weights and what their
    default scorer returns for no examples."""
    from spacy.language import Language
    from spacy.util import registry

    result = {}
    for name in FACTORIES:
        meta = Language.get_factory_meta(name)
        keys = set(meta.default_score_weights or {})
        scorer_config = (meta.default_config or {}).get("scorer")
        if scorer_config:
            scorer = registry.resolve({"scorer": scorer_config})["scorer"]
            keys |= set(scorer([]))
        result[name] = keys
    return result


def registered() -> Dict[str, object]:
    """Every "spacy-gptbert." name in setup.cfg's entry points and in spaCy's registries -> its function."""
    from spacy.util import registry

    import_package()
    functions = {}
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    section_ = parser["options.entry_points"]
    for group, registry_name in GROUPS.items():
        for line in section_.get(group, "").strip().splitlines():
            name = line.split("=")[0].strip()
            if name.startswith(PREFIX):
                functions[name] = getattr(registry, registry_name).get(name)
    for registry_name in registry.get_registry_names():
        for name, func in getattr(registry, registry_name).get_all().items():
            if name.startswith(PREFIX):
                functions[name] = func
    return functions


def arguments(func) -> Set[str]:
    params = inspect.signature(func).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def error_codes() -> Set[str]:
    from spacy_gptbert.errors import Errors, Warnings

    return {code for cls in (Errors, Warnings) for code in vars(cls) if re.fullmatch(r"[EW]\d{3}", code)}


def cli_commands() -> Dict[str, Set[str]]:
    """`python -m spacy_gptbert` commands -> their long options."""
    import typer.main

    from spacy_gptbert.cli.app import app

    group = typer.main.get_command(app)
    return {
        name: {opt for param in command.params for opt in param.opts if opt.startswith("--")}
        for name, command in group.commands.items()
    }


# -- the name tests (fast) -------------------------------------------------------


FACTORIES = factories()
REGISTERED = registered()


def test_the_code_has_names_to_check():
    assert {"bert_encoder", "bert_textcat", "gpt_generator"} <= set(FACTORIES)
    assert {"spacy-gptbert.Encoder.v1", "spacy-gptbert.batch_by_length.v1"} <= set(REGISTERED)
    assert {"E001", "W001"} <= error_codes()
    assert {"convert", "apply"} <= set(cli_commands())


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_every_factory_setting_is_in_components_md(factory):
    assert not missing_rows(DOCS / "components.md", factory, FACTORIES[factory]), (
        f"docs/components.md, section '{factory}', lacks table rows for these settings")


@pytest.mark.parametrize("factory,keys", sorted(score_keys().items()))
def test_every_score_is_in_components_md(factory, keys):
    assert not missing_rows(DOCS / "components.md", factory, keys), (
        f"docs/components.md, section '{factory}', lacks table rows for these scores")


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_every_registered_function_and_argument_is_in_architectures_md(name):
    assert not missing_rows(DOCS / "architectures.md", name, arguments(REGISTERED[name])), (
        f"docs/architectures.md, section '{name}', lacks table rows for these arguments")


def test_every_error_and_warning_code_is_in_errors_md():
    missing = sorted(error_codes() - row_names(read(DOCS / "errors.md")))
    assert not missing, f"docs/errors.md lacks table rows for {missing}"


@pytest.mark.parametrize("command,options", sorted(cli_commands().items()))
def test_every_command_and_option_is_documented(command, options):
    """Each command has a section in docs/cli.md; its options are table rows there or on the page that
    section links to."""
    cli = read(DOCS / "cli.md")
    text = section(cli, command)
    assert text, f"docs/cli.md has no heading '{command}'"
    linked = {DOCS / target for target in re.findall(r"\]\(([\w-]+\.md)[#)]", text)}
    rows = row_names(text).union(*(row_names(read(page)) for page in linked if page.exists()))
    missing = sorted(options - rows)
    assert not missing, f"options of `{command}` missing from docs/cli.md (or the page it links to): {missing}"


def test_every_project_var_is_in_project_md():
    import srsly

    names = set(srsly.read_yaml(ROOT / "project.yml").get("vars", {}))
    missing = sorted(names - row_names(section(read(DOCS / "project.md"), "Settings")))
    assert not missing, f"docs/project.md, section 'Settings', lacks table rows for these vars: {missing}"


def test_every_config_is_in_training_md():
    names = {f"configs/{path.name}" for path in (ROOT / "configs").glob("*.cfg")}
    missing = sorted(names - row_names(section(read(DOCS / "training.md"), "The shipped configs")))
    assert not missing, f"docs/training.md, section 'The shipped configs', lacks table rows for {missing}"


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail to docs/ (at most {README_MAX_BYTES})"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_pages_and_headings_that_exist(page):
    # the part `spacy project document` writes links relative to the project, not to the page
    text = re.sub(r"<!-- WEASEL: AUTO-GENERATED DOCS START.*?AUTO-GENERATED DOCS END[^\n]*", "", read(page),
                  flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif fragment and dest.suffix == ".md" and fragment not in anchors(read(dest)):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


# -- the blocks that run (slow) --------------------------------------------------


class Block(NamedTuple):
    page: Path
    line: int
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def marked_blocks() -> List[Block]:
    blocks = []
    for page in [README] + sorted(DOCS.glob("*.md")):
        lines = read(page).splitlines()
        for i, line in enumerate(lines):
            if line.strip() != RUNS_MARKER:
                continue
            fence = lines[i + 1]
            assert fence.startswith("```"), f"{page.name}:{i + 1}: the marker must sit right above a fence"
            end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
            blocks.append(Block(page, i + 2, fence[3:].strip(), "\n".join(lines[i + 2 : end]) + "\n"))
    return blocks


MARKED = marked_blocks()


def test_marked_blocks_are_python_or_bash_and_the_readme_examples_run():
    assert {block.lang for block in MARKED} <= {"python", "bash"}
    assert sum(block.page == README for block in MARKED) >= 3  # classify, embed, generate


def write_fixtures(path: Path) -> Path:
    """The files the docs' runnable blocks read, under the names the docs give them."""
    import spacy
    from spacy.training import Example

    path.mkdir(parents=True, exist_ok=True)
    bert = build_tiny_bert(path.parent / "tiny_bert")
    build_tiny_bert(path / "my_classifier", seq_cls_labels=["NEGATIVE", "POSITIVE"])
    rows = [("a great film", "POSITIVE"), ("a dull film", "NEGATIVE"), ("what a joy to watch", "POSITIVE"),
            ("a waste of time", "NEGATIVE"), ("i loved every minute of it", "POSITIVE"),
            ("boring and far too long", "NEGATIVE")] * 2
    (path / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows), encoding="utf8")
    (path / "texts.txt").write_text("a wonderful surprise\nnot my kind of film\nthe plot is great fun\n",
                                    encoding="utf8")
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": str(bert), "window": 32, "stride": 16}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"POSITIVE": float(y == "POSITIVE"),
                                                             "NEGATIVE": float(y == "NEGATIVE")}})
                for t, y in rows]
    optimizer = nlp.initialize(get_examples=lambda: examples)
    nlp.update(examples, sgd=optimizer)
    nlp.to_disk(path / "my_textcat")
    return bert


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    base = tmp_path_factory.mktemp("docs_blocks") / "files"
    bert = write_fixtures(base)
    # the real models named in the docs -> tiny ones, so blocks that train take seconds
    swaps = {"sentence-transformers/all-MiniLM-L6-v2": str(bert), '"gpt2"': f'"{HF_TINY / "fake_gpt2"}"'}
    return base, swaps


@pytest.mark.slow
@pytest.mark.parametrize("block", MARKED, ids=lambda b: b.id)
def test_marked_block_runs(block, fixtures, tmp_path):
    base, swaps = fixtures
    workdir = tmp_path / "work"
    shutil.copytree(base, workdir)
    code = block.code
    for name, tiny in swaps.items():
        code = code.replace(name, tiny)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    command = [sys.executable, "-c", code] if block.lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{block.id} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
