"""Parameter averages reach the torch weights (thinc's own shim ignores them)."""
import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from thinc.api import Adam

TRAIN = [("a good movie", "POS"), ("a bad film", "NEG"), ("i loved it", "POS"), ("boring and dull", "NEG")]


def test_use_params_swaps_in_the_averages_and_restores(tiny_bert, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": tiny_bert, "window": 32, "stride": 16}})
    egs = [Example.from_dict(nlp.make_doc(t), {"cats": {"POS": float(y == "POS"), "NEG": float(y == "NEG")}})
           for t, y in TRAIN]
    nlp.initialize(lambda: egs)
    optimizer = Adam(1e-2, use_averages=True)
    for _ in range(5):
        nlp.update(egs, sgd=optimizer)
    textcat = nlp.get_pipe("bert_textcat")
    shim = next(node.shims[0] for node in textcat.model.walk() if node.shims)
    name, param = next((n, p) for n, p in shim._model.named_parameters() if p.requires_grad)
    raw = param.detach().clone()
    average = torch.from_numpy(numpy.asarray(optimizer.averages[(shim.id, name)]))
    assert not torch.allclose(raw, average)
    texts = [t for t, _ in TRAIN]
    before = [d.cats for d in nlp.pipe(texts)]
    with nlp.use_params(optimizer.averages):
        assert torch.allclose(shim._model.get_parameter(name), average)
        averaged = [d.cats for d in nlp.pipe(texts)]
        nlp.to_disk(tmp_path / "best")  # what spacy train does for model-best
    assert averaged != before
    assert torch.equal(shim._model.get_parameter(name), raw)
    assert [d.cats for d in nlp.pipe(texts)] == before
    reloaded = spacy.load(tmp_path / "best")
    for doc, cats in zip(reloaded.pipe(texts), averaged):
        assert all(abs(doc.cats[k] - v) < 1e-5 for k, v in cats.items())


def _twin_shims(seed=0):
    """Two shims around identical torch modules: thinc's own and ours."""
    from thinc.api import PyTorchShim

    from spacy_gptbert.models.shim import AveragingPyTorchShim

    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3))
    twin.load_state_dict(module.state_dict())
    return PyTorchShim(module), AveragingPyTorchShim(twin)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay", [True, False])
def test_torch_adam_step_matches_thincs_optimizer(weight_decay, fused, monkeypatch):
    """Three steps with a schedule, clipping that bites on some tensors and
    not others, and L2 as decoupled decay or added to the gradient: the
    in-torch step gives thinc's weights and moments, and its averages but for
    their start: ours start at the weights after the first step (w1), thinc's
    at zeros, so ours = thinc's + w1 x the product of the decays so far."""
    from thinc.api import warmup_linear

    from spacy_gptbert.models import shim as shim_module

    monkeypatch.setattr(shim_module, "FUSED", fused)
    thinc_shim, our_shim = _twin_shims()
    opts = [Adam(warmup_linear(0.01, 2, 5), L2=0.1, L2_is_weight_decay=weight_decay, grad_clip=10.0,
                 use_averages=True) for _ in range(2)]
    X = torch.randn(11, 5)
    for step in range(3):
        for shim in (thinc_shim, our_shim):
            shim._model.zero_grad()
            (shim._model(X * (step + 1)).pow(2).sum() * 3).backward()
        grad_norms = [p.grad.norm().item() for p in our_shim._model.parameters()]
        thinc_shim.finish_update(opts[0])
        our_shim.finish_update(opts[1])
        if step == 0:
            first = {name: w.detach().clone() for name, w in our_shim._model.named_parameters()}
        for opt in opts:
            opt.step_schedules()
    start_weight = numpy.prod([(1.0 + t) / (10.0 + t) for t in (1, 2, 3)])  # thinc's decays at updates 1-3
    assert min(grad_norms) < 10.0 < max(grad_norms)  # both sides of the clip were exercised
    for (name, ours), (_, theirs) in zip(our_shim._model.named_parameters(), thinc_shim._model.named_parameters()):
        assert torch.allclose(ours, theirs, atol=1e-6), name
        assert not ours.grad.any()
        for state in ("mom1", "mom2", "averages"):
            mine = getattr(opts[1], state)[(our_shim.id, name)]
            reference = numpy.asarray(getattr(opts[0], state)[(thinc_shim.id, name)]).reshape(mine.shape)
            if state == "averages":
                reference = reference + first[name].numpy() * start_weight
            assert numpy.allclose(mine.numpy(), reference, atol=1e-6), (state, name)
        assert opts[1].nr_update[(our_shim.id, name)] == 3


def test_other_optimizers_take_thincs_path():
    from thinc.api import SGD, RAdam

    from spacy_gptbert.models.shim import steps_in_torch

    assert steps_in_torch(Adam(0.001))
    assert not steps_in_torch(RAdam(0.001))
    assert not steps_in_torch(SGD(0.001))
    thinc_shim, our_shim = _twin_shims()
    for shim in (thinc_shim, our_shim):
        shim._model(torch.ones(2, 5)).sum().backward()
        shim.finish_update(SGD(0.5))
    for ours, theirs in zip(our_shim._model.parameters(), thinc_shim._model.parameters()):
        assert torch.equal(ours, theirs)


def test_torch_step_takes_over_state_left_by_thincs_path():
    """An optimizer that stepped a parameter through thinc's path (numpy state)
    goes on from that state in torch, as thinc would."""
    from spacy_gptbert.models import shim as shim_module

    thinc_shim, our_shim = _twin_shims()
    opts = [Adam(0.01, use_averages=True) for _ in range(2)]
    steps_in_torch = shim_module.steps_in_torch
    for step in range(4):
        # steps 0 and 1: ours takes thinc's path too; steps 2 and 3: it steps in torch
        shim_module.steps_in_torch = steps_in_torch if step >= 2 else (lambda optimizer: False)
        try:
            for shim, opt in zip((thinc_shim, our_shim), opts):
                shim._model.zero_grad()
                shim._model(torch.ones(3, 5) * (step + 1)).sum().backward()
                shim.finish_update(opt)
        finally:
            shim_module.steps_in_torch = steps_in_torch
        if step == 1:
            assert not isinstance(opts[1].mom1[(our_shim.id, "0.weight")], torch.Tensor)
    for (name, ours), (_, theirs) in zip(our_shim._model.named_parameters(), thinc_shim._model.named_parameters()):
        assert torch.allclose(ours, theirs, atol=1e-6), name
        average = opts[1].averages[(our_shim.id, name)]
        assert isinstance(average, torch.Tensor)
        assert numpy.allclose(average.numpy(), numpy.asarray(opts[0].averages[(thinc_shim.id, name)]), atol=1e-6)
