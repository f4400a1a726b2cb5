"""Every entry point declared in setup.cfg resolves to the object it names,
and spaCy's registries see each name (so `pip install .` is all users do)."""
import configparser
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import spacy
from spacy.util import registry

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"
REGISTRIES = {
    "spacy_factories": registry.factories,
    "spacy_architectures": registry.architectures,
    "spacy_scorers": registry.scorers,
    "spacy_misc": registry.misc,
    "spacy_readers": registry.readers,
    "spacy_batchers": registry.batchers,
}


def declared():
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG)
    section = parser["options.entry_points"]
    for group in REGISTRIES:
        for line in section.get(group, "").strip().splitlines():
            if "=" in line:
                name, target = (part.strip() for part in line.split("=", 1))
                yield group, name, target


DECLARED = list(declared())


def test_something_is_declared():
    groups = {group for group, _, _ in DECLARED}
    assert {"spacy_factories", "spacy_architectures", "spacy_scorers"} <= groups


@pytest.mark.parametrize("group,name,target", DECLARED)
def test_entry_point_resolves(group, name, target):
    installed = {ep.name: ep for ep in entry_points(group=group)}
    assert name in installed, f"{name} is in setup.cfg but not installed: reinstall with pip install -e ."
    assert installed[name].value == target
    assert callable(installed[name].load())
    assert callable(REGISTRIES[group].get(name))  # found through the entry point
    if group == "spacy_factories":
        assert spacy.blank("en").add_pipe(name) is not None  # constructs without loading weights
