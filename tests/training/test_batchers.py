import random

import pytest
from spacy.util import registry
from thinc.api import compounding

from spacy_gptbert.training.batchers import batch_by_length


def test_every_item_once_and_batches_tight():
    random.seed(0)
    items = ["x" * n for n in random.choices(range(1, 60), k=1000)]
    batches = list(batch_by_length(items, 32, buffer=10))
    assert sorted(i for b in batches for i in b) == sorted(items)
    assert sum(len(b) for b in batches) == 1000
    # within one buffer of 320 items, batches are length-sorted slices: small spread
    spread = sum(len(b[-1]) - len(b[0]) for b in batches) / len(batches)
    unsorted = list(batch_by_length(items, 32, buffer=1))
    assert spread < sum(max(map(len, b)) - min(map(len, b)) for b in unsorted) / len(unsorted) / 4


def test_batches_come_in_random_order_not_by_length():
    random.seed(1)
    items = ["x" * n for n in range(1, 321)]
    random.shuffle(items)
    order = [len(b[0]) for b in batch_by_length(items, 32, buffer=10)]
    assert sorted(order) != order and len(order) == 10


def test_size_schedule_and_registry():
    batcher = registry.batchers.get("spacy-gptbert.batch_by_length.v1")(size=compounding(2, 8, 2), buffer=1)
    sizes = [len(b) for b in batcher(["x" * (i % 7 + 1) for i in range(30)])]
    assert sizes[:3] == [2, 4, 8] and sum(sizes) == 30


def test_buffer_must_be_positive():
    with pytest.raises(ValueError, match="E115"):
        registry.batchers.get("spacy-gptbert.batch_by_length.v1")(size=8, buffer=0)
