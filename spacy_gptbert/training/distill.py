"""Label a corpus with a trained classifier (the teacher) for distillation.

The teacher's probabilities become each doc's `doc.cats`, the targets that
`bert_textcat` trains a student on (soft targets). A doc's own cats, when it
had any, are kept as its gold labels in `doc.user_data[GOLD_CATS_KEY]`, for
`gold_weight`. Inputs are read as `apply` reads them: a `.spacy` DocBin, a
`.jsonl` file (text under `text_key`) or plain text, one doc per non-empty line.
"""
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..errors import Errors
from ..pipeline.textcat import GOLD_CATS_KEY
from ..scaleout.inputs import find_shards, plan_parts, read_part


def find_classifier(nlp: Language, name: Optional[str] = None) -> str:
    """The component whose probabilities are the targets: `name`, or the
    last component that assigns doc.cats."""
    if name is not None:
        if name not in nlp.pipe_names:
            raise ValueError(Errors.E360.format(name=name, pipes=nlp.pipe_names))
        return name
    cats = [n for n in nlp.pipe_names if "doc.cats" in nlp.get_pipe_meta(n).assigns]
    if not cats:
        raise ValueError(Errors.E361.format(pipes=nlp.pipe_names))
    return cats[-1]


def read_inputs(nlp: Language, input_path: Union[str, Path], text_key: str = "text",
                limit: int = 0) -> Tuple[int, Iterator[Doc]]:
    """(number of docs, docs) of every input file, in `apply`'s order."""
    plans = [plan_parts(shard, part_size=1 << 62) for shard in find_shards(input_path)]
    total = sum(n for n, _ in plans)
    if limit:
        total = min(total, limit)

    def docs() -> Iterator[Doc]:
        done = 0
        for _, parts in plans:
            for part in parts:
                for _, item in read_part(part, text_key, "id", vocab=nlp.vocab):
                    if done == total:
                        return
                    done += 1
                    yield item if isinstance(item, Doc) else nlp.make_doc(item)
    return total, docs()


def label_docs(nlp: Language, docs: Iterator[Doc], component: str, *, batch_size: int = 64,
               keep_gold: bool = True, progress: Optional[Callable[[int], None]] = None) -> Iterator[Doc]:
    """Run the pipeline up to and including `component` (what it listens to
    runs too) and yield each doc with the teacher's probabilities as its cats."""
    needed = nlp.pipe_names[: nlp.pipe_names.index(component) + 1]
    disable = [name for name in nlp.pipe_names if name not in needed]

    def prepared() -> Iterator[Doc]:
        for doc in docs:
            if keep_gold and doc.cats and GOLD_CATS_KEY not in doc.user_data:
                doc.user_data[GOLD_CATS_KEY] = dict(doc.cats)
            doc.cats = {}  # the targets are the teacher's labels, nothing else
            yield doc

    with nlp.select_pipes(disable=disable):
        for doc in nlp.pipe(prepared(), batch_size=batch_size):
            if progress is not None:
                progress(1)
            yield doc


def write_docbin(docs: Iterator[Doc], output_path: Union[str, Path]) -> int:
    """Write the docs (and their user_data: the kept gold labels) to a .spacy file."""
    output_path = Path(output_path)
    docbin = DocBin(store_user_data=True)
    n = 0
    for doc in docs:
        docbin.add(doc)
        n += 1
    output_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_path.with_name(output_path.name + ".partial")
    docbin.to_disk(tmp)
    tmp.replace(output_path)  # no half-written corpus where a training would read it
    return n


def label_counts(output_path: Union[str, Path], nlp: Language) -> List[Tuple[str, int]]:
    """How many docs of a written corpus have each label as their top label."""
    counts: dict = {}
    for doc in DocBin().from_disk(output_path).get_docs(nlp.vocab):
        if doc.cats:
            top = max(doc.cats, key=doc.cats.get)
            counts[top] = counts.get(top, 0) + 1
    return sorted(counts.items())
