"""Continued masked-LM pretraining (spacy_gptbert.training.mlm, `pretrain-mlm`)."""
import json

import pytest
import spacy
from spacy.tokens import DocBin

from spacy_gptbert.training import mlm
from tests.conftest import CORPUS

torch = pytest.importorskip("torch")
has_gpu = torch.cuda.is_available()


def test_read_texts_formats(tmp_path):
    nlp = spacy.blank("en")
    db = DocBin(docs=[nlp.make_doc(t) for t in CORPUS[:3]])
    db.to_disk(tmp_path / "a.spacy")
    assert mlm.read_texts(tmp_path / "a.spacy") == CORPUS[:3]
    (tmp_path / "a.tsv").write_text("sentence\tlabel\nfirst one\t1\nsecond\t0\n", encoding="utf8")
    assert mlm.read_texts(tmp_path / "a.tsv") == ["first one", "second"]
    (tmp_path / "a.txt").write_text("line one\n\n  line two \n", encoding="utf8")
    assert mlm.read_texts(tmp_path / "a.txt") == ["line one", "line two"]
    assert mlm.read_texts(tmp_path / "a.txt", limit=1) == ["line one"]


def test_read_texts_errors(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf8")
    with pytest.raises(ValueError, match="E320"):
        mlm.read_texts(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="E304"):
        mlm.read_texts(tmp_path / "missing.txt")


def test_load_mlm_keeps_encoder_and_ties_head(tiny_bert):
    from transformers import BertModel

    model, tokenizer, path = mlm.load_mlm(tiny_bert)
    original = BertModel.from_pretrained(tiny_bert)
    assert type(model).__name__ == "BertForMaskedLM"
    for name, value in original.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(model.bert.state_dict()[name], value), name
    # The fresh head's output matrix is the word-embedding matrix itself.
    assert model.get_output_embeddings().weight is model.bert.embeddings.word_embeddings.weight


def test_mask_batch_masks_only_real_wordpieces(tiny_bert):
    _, tokenizer, _ = mlm.load_mlm(tiny_bert)
    gen = torch.Generator().manual_seed(0)
    input_ids, attention, _, labels = mlm._mask_batch(tokenizer, CORPUS, 64, 0.5, gen)
    enc = tokenizer(CORPUS, padding=True, return_tensors="pt", return_special_tokens_mask=True)
    targets = labels != -100
    assert targets.any()
    assert not (targets & enc["special_tokens_mask"].bool()).any()
    assert not (targets & (attention == 0)).any()
    assert torch.equal(labels[targets], enc["input_ids"][targets])
    # Positions that are not targets keep their wordpiece.
    assert torch.equal(input_ids[~targets], enc["input_ids"][~targets])


def test_forward_equals_hugging_face_mlm_loss(tiny_bert):
    """The head runs only at the target positions; the loss is the same as
    BertForMaskedLM's over the whole sequence."""
    model, tokenizer, _ = mlm.load_mlm(tiny_bert)
    model.eval()
    batch = mlm._mask_batch(tokenizer, CORPUS, 64, 0.3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        loss, logits, labels = mlm._forward(model, batch, torch.device("cpu"), False)
        ids, attention, types, full_labels = batch
        expected = model(input_ids=ids, attention_mask=attention, token_type_ids=types, labels=full_labels).loss
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert logits.shape == (int((full_labels != -100).sum()), len(tokenizer))


def test_pretrain_lowers_mlm_loss_and_saves_loadable_encoder(tiny_bert, tmp_path):
    texts = CORPUS * 4
    model, tokenizer, path = mlm.load_mlm(tiny_bert)
    before = mlm.mlm_eval(model, tokenizer, texts)
    log = mlm.pretrain_mlm(model, tokenizer, texts, steps=60, batch_size=16, learn_rate=1e-3,
                           head_learn_rate=3e-3, log_every=20, progress=False, device="cpu")
    after = mlm.mlm_eval(model, tokenizer, texts)
    assert [step for step, _ in log] == [20, 40, 60]
    assert after["mlm_loss"] < before["mlm_loss"] - 0.5
    out = mlm.save_encoder(model, tokenizer, path, tmp_path / "enc")
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()

    from transformers import BertModel

    saved = BertModel.from_pretrained(str(out))
    original = BertModel.from_pretrained(tiny_bert)
    assert torch.equal(saved.pooler.dense.weight, original.pooler.dense.weight)
    assert not torch.equal(saved.embeddings.word_embeddings.weight, original.embeddings.word_embeddings.weight)
    assert torch.equal(saved.encoder.layer[0].attention.self.query.weight,
                       model.bert.encoder.layer[0].attention.self.query.weight.cpu())

    # bert_textcat trains on the pretrained directory like on any encoder.
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": str(out)}})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": {"A": float(i % 2), "B": float(1 - i % 2)}})
                for i, t in enumerate(CORPUS)]
    nlp.initialize(get_examples=lambda: examples)
    assert set(nlp("a good movie").cats) == {"A", "B"}


def test_pretrain_is_reproducible(tiny_bert):
    losses = []
    for _ in range(2):
        model, tokenizer, _ = mlm.load_mlm(tiny_bert)
        losses.append(mlm.pretrain_mlm(model, tokenizer, CORPUS, steps=5, batch_size=4, log_every=1,
                                       progress=False, device="cpu", seed=3))
    assert losses[0] == losses[1]


def test_pretrain_rejects_bad_settings(tiny_bert):
    model, tokenizer, _ = mlm.load_mlm(tiny_bert)
    with pytest.raises(ValueError, match="E323"):
        mlm.pretrain_mlm(model, tokenizer, CORPUS, steps=0)


def test_cli_pretrain_mlm(tiny_bert, tmp_path):
    from typer.testing import CliRunner

    from spacy_gptbert.cli.app import app

    (tmp_path / "texts.txt").write_text("\n".join(CORPUS), encoding="utf8")
    result = CliRunner().invoke(app, ["pretrain-mlm", str(tmp_path / "texts.txt"), str(tmp_path / "out"),
                                      "--model", tiny_bert, "--steps", "3", "--batch-size", "4",
                                      "--dev", str(tmp_path / "texts.txt")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "mlm_log.json").read_text())
    assert report["steps"] == 3 and report["texts"] == len(CORPUS)
    assert {"dev_before", "dev_after"} <= set(report)
    assert (tmp_path / "out" / "model.safetensors").exists()


@pytest.mark.gpu
@pytest.mark.skipif(not has_gpu, reason="needs a CUDA GPU")
def test_pretrain_follows_thinc_gpu(tiny_bert):
    from thinc.api import require_gpu, use_ops

    require_gpu(0)
    try:
        model, tokenizer, _ = mlm.load_mlm(tiny_bert)
        mlm.pretrain_mlm(model, tokenizer, CORPUS, steps=3, batch_size=4, progress=False, mixed_precision=True)
        assert next(model.parameters()).device.type == "cuda"
    finally:
        use_ops("numpy")


@pytest.mark.parametrize("native", [True, False])
def test_cpu_mixed_precision_needs_bf16_instructions(tiny_bert, native, monkeypatch, recwarn):
    """mixed_precision on CPU autocasts to bf16 only where the CPU has bf16
    instructions; elsewhere training runs float32 and W003 says why."""
    from spacy_gptbert.models import autocast

    monkeypatch.setattr(autocast, "native_bf16", lambda: native)
    seen = []
    real_autocast = autocast.autocast
    monkeypatch.setattr(autocast, "autocast",
                        lambda device, enabled: seen.append(enabled) or real_autocast(device, enabled))
    model, tokenizer, _ = mlm.load_mlm(tiny_bert)
    mlm.pretrain_mlm(model, tokenizer, CORPUS, steps=2, batch_size=4, progress=False, mixed_precision=True,
                     device="cpu")
    mlm.mlm_eval(model, tokenizer, CORPUS[:4], mixed_precision=True)
    assert seen and set(seen) == {native}
    assert bool([w for w in recwarn if "[W003]" in str(w.message)]) is (not native)
