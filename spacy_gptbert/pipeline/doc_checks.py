"""Every component takes spaCy Docs only, and says so (E101) whichever way
it is called: component(x), component.pipe(xs) or component.predict(xs)."""
from typing import Iterable, List

from spacy.tokens import Doc

from ..errors import Errors


def check_docs(docs: Iterable) -> List[Doc]:
    docs = list(docs)
    for doc in docs:
        if not isinstance(doc, Doc):
            raise TypeError(Errors.E101.format(type=type(doc).__name__))
    return docs


class DocsOnly:
    """Mixin for a TrainablePipe: its __call__ is typed `Doc doc` in Cython,
    so a str would get Cython's bare "Argument 'doc' has incorrect type"."""

    def __call__(self, doc: Doc) -> Doc:
        check_docs([doc])
        return super().__call__(doc)
