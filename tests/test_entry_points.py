"""Entry points: every function the package registers with spaCy has one in
setup.cfg, every one names a registration, and spaCy finds each through its
entry point alone: `pip install spacy-gptbert` is all a user does before a
config names `bert_textcat` or `spacy-gptbert.GPT.v1`.

The package is never imported here: registrations are read from the source with
`ast`, and the entry points are resolved by spaCy in a fresh interpreter that
checks it has not imported spacy_gptbert before asking spaCy's registries."""
import ast
import configparser
import json
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.util import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "spacy_gptbert"
SETUP_CFG = ROOT / "setup.cfg"
# The decorators that register: @Language.factory / @Language.component (the
# spacy_factories group) and @registry.<name> (the group spaCy's registry of that
# name reads, e.g. registry.architectures -> spacy_architectures).
FACTORY_DECORATORS = {"factory", "component"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def _group(call: ast.Call):
    """The entry-point group of a registering call, or None."""
    parts = _dotted(call.func).split(".")
    if len(parts) >= 2 and parts[-2].endswith("Language") and parts[-1] in FACTORY_DECORATORS:
        return "spacy_factories"
    if parts[-1] == "register" and len(parts) >= 3 and parts[-3] == "registry":
        parts = parts[:-1]  # registry.misc.register("name", func=f)
    if len(parts) >= 2 and parts[-2] == "registry":
        return getattr(getattr(registry, parts[-1], None), "entry_point_namespace", None)
    return None


def _name(call: ast.Call) -> str:
    args = call.args[:1] or [k.value for k in call.keywords if k.arg == "name"]
    assert args and isinstance(args[0], ast.Constant), \
        f"{ast.unparse(call)}: register under a literal name so setup.cfg can declare it"
    return args[0].value


def registrations_in_source(package: Path = PACKAGE):
    """(group, name, "module:function") for each registration in the package's source."""
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        tree = ast.parse(path.read_text(encoding="utf8"))
        for node in ast.walk(tree):
            decorators = getattr(node, "decorator_list", [])
            for decorator in decorators:
                if isinstance(decorator, ast.Call) and _group(decorator):
                    yield _group(decorator), _name(decorator), f"{module}:{node.name}"
            if isinstance(node, ast.Call) and _dotted(node.func).endswith(".register") and _group(node):
                func = node.args[1] if len(node.args) > 1 else \
                    next(k.value for k in node.keywords if k.arg == "func")
                yield _group(node), _name(node), f"{module}:{_dotted(func)}"


def declared_in_setup_cfg(setup_cfg: Path = SETUP_CFG):
    """(group, name, "module:function") for each entry point in setup.cfg."""
    parser = configparser.ConfigParser()
    parser.optionxform = str  # entry-point names are case-sensitive
    parser.read(setup_cfg, encoding="utf8")
    for group, lines in parser["options.entry_points"].items():
        for line in lines.strip().splitlines():
            name, target = (part.strip() for part in line.split("=", 1))
            yield group, name, target


REGISTERED = sorted(registrations_in_source())
DECLARED = sorted(declared_in_setup_cfg())


def _as_setup_cfg_lines(entries) -> str:
    return "\n".join(f"  [{group}] {name} = {target}" for group, name, target in entries)


def test_the_source_scan_finds_the_components_and_architectures():
    found = {(group, name) for group, name, _ in REGISTERED}
    assert ("spacy_factories", "bert_textcat") in found
    assert ("spacy_architectures", "spacy-gptbert.GPT.v1") in found
    assert ("spacy_misc", "spacy-gptbert.template_prompt.v1") in found


def test_every_registration_has_an_entry_point():
    missing = sorted(set(REGISTERED) - set(DECLARED))
    assert not missing, "registered in the package but not declared in setup.cfg's " \
        "[options.entry_points] (add these lines, then pip install -e .):\n" + _as_setup_cfg_lines(missing)


def test_every_entry_point_names_a_registration():
    stale = sorted(set(DECLARED) - set(REGISTERED))
    assert not stale, "declared in setup.cfg but registered nowhere in the package under that " \
        "name and function:\n" + _as_setup_cfg_lines(stale)


RESOLVE = r"""
import json, sys
from importlib.metadata import distribution
import spacy
from spacy.util import registry

assert "spacy_gptbert" not in sys.modules, "importing spacy imported spacy_gptbert"
registries = {r.entry_point_namespace: r for r in map(lambda attr: getattr(registry, attr), dir(registry))
              if hasattr(r, "entry_point_namespace")}
results = []
for group, name, target in json.loads(sys.argv[1]):
    try:
        func = registries[group].get(name)  # catalogue asks the entry points first
        found = f"{func.__module__}:{func.__qualname__}"
        if group == "spacy_factories":
            spacy.blank("en").add_pipe(name)  # constructs without loading weights
        results.append([group, name, found])
    except Exception as error:
        results.append([group, name, f"{type(error).__name__}: {error}"])
installed = sorted([ep.group, ep.name, ep.value] for ep in distribution("spacy-gptbert").entry_points)
print(json.dumps({"resolved": results, "installed": installed}))
"""


@pytest.fixture(scope="module")
def fresh_interpreter():
    # cwd tests/: the package and a build's spacy_gptbert.egg-info in the root are not on sys.path
    result = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(DECLARED)], capture_output=True,
                            text=True, cwd=ROOT / "tests", timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_installed_entry_points_are_setup_cfgs(fresh_interpreter):
    installed = [tuple(entry) for entry in fresh_interpreter["installed"]]
    assert installed == DECLARED, "the installed metadata is not setup.cfg's: pip install -e ."


@pytest.fixture(scope="module")
def resolved_by_spacy(fresh_interpreter):
    return {(group, name): found for group, name, found in fresh_interpreter["resolved"]}


@pytest.mark.parametrize("group,name,target", DECLARED)
def test_spacy_finds_the_entry_point_without_importing_the_package(resolved_by_spacy, group, name, target):
    assert resolved_by_spacy[group, name] == target
