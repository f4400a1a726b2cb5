"""Serialization shared by every component that wraps Hugging Face models.

A component directory holds:
    cfg           the component's settings (JSON)
    model         thinc weights and dims *without* the torch shims (msgpack)
    hf_<i>/       one standard Hugging Face directory per torch-backed node:
                  config.json, tokenizer files, model.safetensors
so `spacy.load` needs no network and nothing is ever unpickled.

The nodes that take part are models.hf_node's (found by their kind), whose attrs hold:
    attrs["hf_parts"](node) -> (hf_model, tokenizer) or (None, None)
    attrs["hf_load"](node, directory) -> None   (loads and attaches the weights)
"""
import tempfile
from pathlib import Path
from typing import Iterable, List, Tuple

import srsly
from spacy import util
from thinc.api import Model

from ..errors import Errors
from ..models import hf_node
from ..models.hf_loading import save_pretrained


def hf_nodes(model: Model) -> List[Model]:
    return list(hf_node.hf_nodes(model))


def model_bytes_without_shims(model: Model) -> bytes:
    nodes = list(model.walk())
    saved = [list(node.shims) for node in nodes]
    try:
        for node in nodes:
            node.shims[:] = []
        return model.to_bytes()
    finally:
        for node, shims in zip(nodes, saved):
            node.shims[:] = shims


def save_component(pipe, path: Path, exclude: Iterable[str] = tuple()) -> None:
    path = util.ensure_path(path)
    path.mkdir(parents=True, exist_ok=True)
    if "cfg" not in exclude:
        srsly.write_json(path / "cfg", pipe.cfg)
    if "model" in exclude:
        return
    for i, node in enumerate(hf_nodes(pipe.model)):
        hf_model, tokenizer = node.attrs["hf_parts"](node)
        if hf_model is None:
            raise ValueError(Errors.E009.format(name=pipe.name))
        save_pretrained(hf_model, tokenizer, path / f"hf_{i}")
    (path / "model").write_bytes(model_bytes_without_shims(pipe.model))


def load_component(pipe, path: Path, exclude: Iterable[str] = tuple()):
    """Settings come from the config the component was just built from, which
    `spacy.load(path, config=...)` overrides: a saved cfg entry or thinc attr
    never replaces one. From the files come what training learned: the cfg
    keys in `pipe.state_cfg_keys` (e.g. the labels), dims and weights."""
    path = util.ensure_path(path)
    if "cfg" not in exclude and (path / "cfg").exists():
        saved = srsly.read_json(path / "cfg")
        state_keys = getattr(pipe, "state_cfg_keys", ())
        pipe.cfg.update({key: value for key, value in saved.items() if key in state_keys or key not in pipe.cfg})
    if "model" in exclude:
        return pipe
    settings = [(node, {key: value for key, value in node.attrs.items() if value is not None})
                for node in hf_nodes(pipe.model)]
    # thinc state first (dims, head weights), then the torch weights, so a
    # deserialized attr can never overwrite a loaded tokenizer.
    pipe.model.from_bytes((path / "model").read_bytes())
    for node, values in settings:
        node.attrs.update(values)
    for i, node in enumerate(hf_nodes(pipe.model)):
        node.attrs["hf_load"](node, path / f"hf_{i}")
    if hasattr(pipe, "_after_load"):
        pipe._after_load()
    return pipe


def component_to_bytes(pipe, exclude: Iterable[str] = tuple()) -> bytes:
    """All files of `save_component`, packed into one msgpack blob."""
    with tempfile.TemporaryDirectory() as tmp:
        save_component(pipe, Path(tmp), exclude)
        files = {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}
    return srsly.msgpack_dumps(files)


def component_from_bytes(pipe, data: bytes, exclude: Iterable[str] = tuple()):
    files = srsly.msgpack_loads(data)
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return load_component(pipe, Path(tmp), exclude)


class HFSerializationMixin:
    """to_disk / from_disk / to_bytes / from_bytes for a TrainablePipe whose
    model holds Hugging Face torch modules (see the module docstring)."""

    # cfg keys that a saved pipeline restores (learned state); the others are
    # settings, taken from the config (see load_component).
    state_cfg_keys: Tuple[str, ...] = ()

    def to_disk(self, path, *, exclude=tuple()):
        save_component(self, path, exclude)

    def from_disk(self, path, *, exclude=tuple()):
        return load_component(self, path, exclude)

    def to_bytes(self, *, exclude=tuple()):
        return component_to_bytes(self, exclude)

    def from_bytes(self, bytes_data, *, exclude=tuple()):
        return component_from_bytes(self, bytes_data, exclude)
