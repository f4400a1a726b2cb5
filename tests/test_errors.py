"""The catalogue of errors and warnings holds only codes the package raises."""
import re
from pathlib import Path

import pytest

from spacy_gptbert.errors import Errors, Warnings

PACKAGE = Path(__file__).resolve().parents[1] / "spacy_gptbert"


@pytest.mark.parametrize("catalogue", [Errors, Warnings], ids=["Errors", "Warnings"])
def test_every_catalogued_code_is_used_by_the_package(catalogue):
    source = "\n".join(p.read_text(encoding="utf8") for p in PACKAGE.rglob("*.py") if p.name != "errors.py")
    codes = [code for code in vars(catalogue) if re.fullmatch(r"[EW]\d{3}", code)]
    unused = [code for code in codes if not re.search(rf"\b{catalogue.__name__}\.{code}\b", source)]
    assert codes and unused == []
