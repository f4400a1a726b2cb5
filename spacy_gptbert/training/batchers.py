"""Length-bucketed batching for transformer training.

spaCy's batchers draw examples in corpus order, so a batch of 32 SST-2 phrases
mixes 2-word and 50-word examples and most of its compute is padding (or, with
our length-grouped chunks, several small forward calls). Sorting a buffer of
examples by length before cutting batches gives each batch one tight chunk;
shuffling the batches keeps the order of lengths random. The same idea as
Hugging Face's `group_by_length`.
"""
import itertools
import random
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, TypeVar, Union

from spacy.util import registry

from ..errors import Errors

ItemT = TypeVar("ItemT")
Sizing = Union[Sequence[int], int]


@registry.batchers("spacy-gptbert.batch_by_length.v1")
def configure_batch_by_length(
    size: Sizing = 32, buffer: int = 50, get_length: Optional[Callable[[ItemT], int]] = None
) -> Callable[[Iterable[ItemT]], Iterator[List[ItemT]]]:
    """size: items per batch (an int or a schedule such as compounding.v1).
    buffer: how many batches' worth of items are sorted together; larger means
        tighter lengths within a batch, smaller means more randomness.
    get_length: length of an item; default len(item) (spaCy tokens of an Example).
    """
    if buffer < 1:
        raise ValueError(Errors.E115.format(buffer=buffer))
    return lambda items: batch_by_length(items, size, buffer, get_length)


def batch_by_length(
    items: Iterable[ItemT], size: Sizing, buffer: int = 50, get_length: Optional[Callable[[ItemT], int]] = None
) -> Iterator[List[ItemT]]:
    sizes = itertools.repeat(size) if isinstance(size, int) else iter(size)
    length = get_length or len
    items = iter(items)
    while True:
        batch_size = int(next(sizes))
        pool = list(itertools.islice(items, batch_size * buffer))
        if not pool:
            return
        pool.sort(key=length)
        batches = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
        random.shuffle(batches)
        yield from batches
