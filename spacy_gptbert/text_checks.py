"""Make any Python string safe for spaCy's and Hugging Face's tokenizers.

A Python `str` may hold lone surrogates (U+D800..U+DFFF), e.g. from
`json.loads('"\\ud800"')`, from files read with errors="surrogateescape", or
from text cut in the middle of a UTF-16 pair. They cannot be encoded as UTF-8:
spaCy's own tokenizer (its string store) and the Rust tokenizers of Hugging
Face both raise a bare UnicodeEncodeError, so one odd document stops a whole
`nlp.pipe` job.

- `SafeTokenizer` (`spacy-gptbert.SafeTokenizer.v1`) wraps the language's
  tokenizer and cleans each text first, so `nlp(...)` / `nlp.pipe(...)` accept
  such texts. A Doc can never hold a surrogate, so the encoder and classifier
  need nothing more.
- The generator cleans every prompt and completion it encodes, because those
  strings come from templates, doc.cats labels, extensions and user functions.

Each surrogate becomes one U+FFFD (the replacement character), so lengths and
character offsets are unchanged. Everything else (emoji, combining marks,
control and zero-width characters, right-to-left text) is valid UTF-8 and is
left to the tokenizers' own normalization.
"""
import re
from typing import Any, Callable, Iterable, Iterator, List

from spacy.util import registry

from .errors import Errors

REPLACEMENT = "\ufffd"
_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` with each lone surrogate replaced by U+FFFD (same length)."""
    if text.isascii():  # the common case; a C-speed scan with no copy
        return text
    return _SURROGATES.sub(REPLACEMENT, text)


def clean_texts(texts: Iterable[str], what: str = "text") -> List[str]:
    """clean_text for each item; a clear error (E220) for a non-string, which
    a user-registered prompt function can return by mistake."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(Errors.E220.format(what=what, index=i, type=type(text).__name__))
        out.append(clean_text(text))
    return out


class SafeTokenizer:
    """A spaCy tokenizer that first replaces lone surrogates with U+FFFD.

    Everything else (serialization, `explain`, `rules`, special cases) is the
    wrapped tokenizer's, so a saved pipeline's tokenizer files are unchanged.
    """

    def __init__(self, tokenizer: Callable[[str], Any]):
        self.tokenizer = tokenizer

    def __call__(self, text):
        return self.tokenizer(clean_text(text) if isinstance(text, str) else text)

    def pipe(self, texts: Iterable[str], batch_size: int = 1000) -> Iterator:
        for text in texts:
            yield self(text)

    def to_disk(self, path, **kwargs):
        return self.tokenizer.to_disk(path, **kwargs)

    def from_disk(self, path, **kwargs):
        self.tokenizer.from_disk(path, **kwargs)
        return self

    def to_bytes(self, **kwargs) -> bytes:
        return self.tokenizer.to_bytes(**kwargs)

    def from_bytes(self, data: bytes, **kwargs):
        self.tokenizer.from_bytes(data, **kwargs)
        return self

    def __getattr__(self, name: str):
        if name == "tokenizer":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.tokenizer, name)


@registry.tokenizers("spacy-gptbert.SafeTokenizer.v1")
def make_safe_tokenizer() -> Callable:
    """[nlp.tokenizer] @tokenizers = "spacy-gptbert.SafeTokenizer.v1": the
    language's default tokenizer (whatever its config names), wrapped."""

    def create(nlp) -> SafeTokenizer:
        default = type(nlp).default_config["nlp"]["tokenizer"]
        make_base = registry.resolve({"tokenizer": default})["tokenizer"]
        return SafeTokenizer(make_base(nlp))

    return create
