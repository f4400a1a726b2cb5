"""Parameter averages reach the torch weights (thinc's own shim ignores them)."""
import numpy
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
