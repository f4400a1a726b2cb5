"""The fingerprint that decides when a prediction-only copy is stale."""
import torch
from torch import nn

from spacy_gptbert.models import inference_copy
from spacy_gptbert.models.inference_copy import fingerprint


def _module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(40, 30), nn.LayerNorm(30), nn.Linear(30, 30))


def test_unchanged_weights_keep_the_fingerprint():
    module = _module()
    assert fingerprint(module) == fingerprint(module)
    assert fingerprint(nn.ReLU()) == ()


def test_in_place_changes_are_seen():
    module = _module()
    before = fingerprint(module)
    with torch.no_grad():
        module[0].weight.data.view(-1)[0] += 1.0  # a sampled value, changed through .data as optimizers do
    assert fingerprint(module) != before


def test_swapped_values_are_seen():
    module = _module()
    before = fingerprint(module)
    with torch.no_grad():
        a, b = module[0].bias[:1].clone(), module[2].bias[:1].clone()
        module[0].bias[:1], module[2].bias[:1] = b, a  # same values, other tensors: a plain sum would not move
    assert fingerprint(module) != before


def test_new_storage_is_seen():
    module = _module()
    before = fingerprint(module)
    module[2].weight = nn.Parameter(module[2].weight.detach().clone())
    assert fingerprint(module) != before


def test_non_contiguous_parameters_are_sampled_afresh_each_time():
    module = _module()
    module[2].weight = nn.Parameter(torch.randn(30, 30).t())  # a transposed view: not contiguous
    before = fingerprint(module)
    assert module not in inference_copy._SAMPLES
    with torch.no_grad():
        module[2].weight[0, 0] += 1.0
    assert fingerprint(module) != before
