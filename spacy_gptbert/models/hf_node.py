"""One home for a thinc node backed by a Hugging Face model: the windowed
encoders and classifiers (encoder.py) and the causal LMs (generator_model.py).

Such a node is a thinc Model whose attrs hold
- `kind`: "encoder", "seq_cls" (windowed) or "causal_lm";
- `tokenizer`: the Hugging Face tokenizer once the weights are attached;
- `hf_attach(node, hf_model, tokenizer)`: wraps a loaded model for the node;
- the serialization hooks that pipeline/serialization.py calls:
  `hf_parts(node) -> (hf_model, tokenizer)` and `hf_load(node, directory)`.
Once attached it holds one AveragingPyTorchShim around a torch module that
keeps the Hugging Face model as its `hf_model`. Nodes are found by `kind`
(`is_hf_node`, `hf_nodes`) and by nothing else.
"""
from typing import Callable, Dict, Iterator, Optional

from thinc.api import Model, PyTorchGradScaler, get_torch_default_device

from .autocast import cpu_bf16
from .hf_loading import load_pretrained
from .shim import AveragingPyTorchShim

WINDOWED_KINDS = ("encoder", "seq_cls")
KINDS = WINDOWED_KINDS + ("causal_lm",)
AUTO_CLASSES = {
    "encoder": "AutoModel",
    "seq_cls": "AutoModelForSequenceClassification",
    "causal_lm": "AutoModelForCausalLM",
}


def hf_node(name: str, forward: Callable, init: Callable, kind: str, attach: Callable, attrs: Dict,
            load: Optional[Callable] = None, dims: Optional[Dict] = None) -> Model:
    """A node for a Hugging Face model of `kind`, without weights until `init`
    or `hf_load` (default: `load_into`) attaches them with `attach`."""
    return Model(name, forward, init=init, dims=dims or {}, attrs={
        **attrs,
        "kind": kind,
        "grad_scaler_config": dict(attrs.get("grad_scaler_config") or {}),
        "tokenizer": None,
        "hf_attach": attach,
        # serialization hooks (pipeline/serialization.py)
        "hf_parts": get_hf_parts,
        "hf_load": load or load_into,
    })


def is_hf_node(node: Model, *kinds: str) -> bool:
    """Whether `node` is a Hugging Face-backed node (of one of `kinds`, if given)."""
    return node.attrs.get("kind") in (kinds or KINDS) and "hf_load" in node.attrs


def hf_nodes(model: Model, *kinds: str) -> Iterator[Model]:
    return (node for node in model.walk() if is_hf_node(node, *kinds))


def on_gpu() -> bool:
    """Whether thinc's current device, which the shim puts the module on, is a GPU."""
    return get_torch_default_device().type == "cuda"


def module_bf16(node: Model) -> bool:
    """Whether the node's torch module runs under bf16 autocast in training:
    thinc's shim autocasts (fp16, with grad scaling) on CUDA only, so on the
    CPU the module itself uses bf16 where the CPU has it."""
    return cpu_bf16(node.attrs["mixed_precision"], on_gpu())


def attach_module(node: Model, module, tokenizer, predict_mixed: Optional[bool] = None) -> None:
    """Wrap the torch module (with its `hf_model`) in the node's shim, on
    thinc's device. predict_mixed: whether prediction autocasts on GPU too;
    None: as in training."""
    gpu = on_gpu()
    node.shims[:] = [AveragingPyTorchShim(
        module,
        mixed_precision=node.attrs["mixed_precision"] and gpu,
        grad_scaler=PyTorchGradScaler(**node.attrs["grad_scaler_config"]),
        predict_mixed_precision=None if predict_mixed is None else predict_mixed and gpu,
    )]
    node.attrs["tokenizer"] = tokenizer


def load_into(node: Model, name_or_path):
    """Load the Hugging Face model of the node's kind from a name or directory
    and attach it; returns its config."""
    kind = node.attrs["kind"]
    hf_model, tokenizer, _ = load_pretrained(
        name_or_path, AUTO_CLASSES[kind], trust_remote_code=node.attrs["trust_remote_code"], expect=kind
    )
    node.attrs["hf_attach"](node, hf_model, tokenizer)
    return hf_model.config


def get_hf_parts(node: Model):
    """(hf_model, tokenizer) of an attached node, or (None, None)."""
    if not node.shims:
        return None, None
    return node.shims[0]._model.hf_model, node.attrs["tokenizer"]
