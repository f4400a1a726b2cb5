"""MPNet (all-mpnet-base-v2's architecture) through every component and path,
on a tiny random MPNet whose tokenizer is built here, checked against
transformers' own forward; and a slow test on the real model where the
Hugging Face cache has it (`python -m spacy_gptbert download all-mpnet-base-v2`).

MPNet, like RoBERTa, uses <s> ... </s> around a sequence, pad id 1, and numbers
positions from pad id + 1: its position table of 514 holds 512 tokens."""
import copy
import shutil
import string
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose
from spacy.training import Example

from spacy_gptbert.models import prepack, quantize
from spacy_gptbert.models.encoder import is_windowed_model
from spacy_gptbert.models.hf_loading import usable_positions
from spacy_gptbert.models.inference_copy import _CACHE

from .conftest import CORPUS

POSITIONS = 34  # a small position table, so a long doc needs several windows
MAX_WINDOW = POSITIONS - 2 - 2  # less the two unused rows (pad id 1 + 1), less <s> and </s>
TEXTS = ["a good movie with great actors", "boring , dull and terrible", "i loved every minute of it !"]
LONG_TEXT = " ".join(CORPUS[:6] * 3)  # about 90 wordpieces: beyond the 34 positions
LABELS = ("POS", "NEG")
TRAIN = [("a good movie with great actors", "POS"), ("a bad film with awful jokes", "NEG"),
         ("i loved every minute of it", "POS"), ("boring , dull and terrible", "NEG")]


def build_tiny_mpnet(path: Path, seq_cls_labels=None) -> Path:
    """A random one-layer MPNet of width 8 and an MPNetTokenizerFast built
    from a vocab.txt written here (MPNet's specials first, as in the real one)."""
    from transformers import MPNetConfig, MPNetForSequenceClassification, MPNetModel, MPNetTokenizerFast

    path.mkdir(parents=True)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    words = sorted({word for text in CORPUS for word in text.lower().split() if word.isalpha()})
    specials = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"]
    vocab = specials + words + chars + ["##" + c for c in chars] + ["<mask>"]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf8")
    tokenizer = MPNetTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True,
                                   model_max_length=POSITIONS - 2)
    labels = list(seq_cls_labels or [])
    head = {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}
    config = MPNetConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=POSITIONS, pad_token_id=1,
                         bos_token_id=0, eos_token_id=2, **(head if labels else {}))
    torch.manual_seed(0)
    model = (MPNetForSequenceClassification if labels else MPNetModel)(config)
    model.save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory) -> str:
    return str(build_tiny_mpnet(tmp_path_factory.mktemp("mpnet") / "tiny_mpnet"))


@pytest.fixture(scope="module")
def tiny_mpnet_seq_cls(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("mpnet") / "tiny_mpnet_cls"
    return str(build_tiny_mpnet(path, seq_cls_labels=["NEG", "POS"]))


def hf_parts(path):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(str(path)).eval(), AutoTokenizer.from_pretrained(str(path))


def hf_windows(hf, tokenizer, text, window, stride):
    """transformers' last hidden states of each window of `text` (<s> piece... </s>),
    with the windows' start offsets, computed without the plugin's code."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    starts = [0] if len(ids) <= window else list(range(0, len(ids) - window + 1, stride))
    if starts[-1] + window < len(ids):
        starts.append(len(ids) - window)
    outputs = []
    for start in starts:
        window_ids = [tokenizer.cls_token_id] + ids[start:start + window] + [tokenizer.sep_token_id]
        with torch.no_grad():
            outputs.append(hf(input_ids=torch.tensor([window_ids]))[0][0].numpy())
    return len(ids), starts, outputs


def hf_mean(hf, tokenizer, text, window=MAX_WINDOW, stride=20):
    """Mean pooling (sentence-transformers') of each window, averaged over windows."""
    _, _, outputs = hf_windows(hf, tokenizer, text, window, stride)
    return numpy.mean([out.mean(axis=0) for out in outputs], axis=0)


def encoder_nlp(name, window=MAX_WINDOW, stride=20, model=None, **cfg):
    nlp = spacy.blank("en")
    model = {"name": name, "window": window, "stride": stride, **(model or {})}
    nlp.add_pipe("bert_encoder", config={"model": model, **cfg})
    nlp.initialize()
    return nlp


def windowed_module(pipe):
    return next(node for node in pipe.model.walk() if is_windowed_model(node)).shims[0]._model


def examples(nlp, data=TRAIN):
    return [Example.from_dict(nlp.make_doc(t), {"cats": {label: float(label == y) for label in LABELS}})
            for t, y in data]


def softmax(x):
    e = numpy.exp(x - x.max())
    return e / e.sum()


def test_mpnet_tokenizer_built_here_is_mpnets(tiny_mpnet):
    _, tokenizer = hf_parts(tiny_mpnet)
    assert type(tokenizer).__name__ == "MPNetTokenizerFast"
    assert (tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token_id) == ("<s>", "</s>", 1)
    assert tokenizer("a good movie")["input_ids"] == [0, tokenizer.convert_tokens_to_ids("a"),
                                                      tokenizer.convert_tokens_to_ids("good"),
                                                      tokenizer.convert_tokens_to_ids("movie"), 2]


def test_usable_positions_skip_the_rows_before_padding_idx_plus_one():
    """RoBERTa-family and MPNet number positions from pad id + 1, BERT from 0:
    a sequence of usable_positions tokens runs, one more indexes past the table."""
    from transformers import (
        BertConfig, BertModel, MPNetConfig, MPNetModel, RobertaConfig, RobertaForSequenceClassification,
        RobertaModel,
    )

    small = dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=16, max_position_embeddings=12)
    models = {"bert": BertModel(BertConfig(**small)),
              "roberta": RobertaModel(RobertaConfig(**small, pad_token_id=1)),
              "roberta_cls": RobertaForSequenceClassification(RobertaConfig(**small, pad_token_id=1)),
              "mpnet": MPNetModel(MPNetConfig(**small, pad_token_id=1))}
    assert {key: usable_positions(m) for key, m in models.items()} == {
        "bert": 12, "roberta": 10, "roberta_cls": 10, "mpnet": 10}
    for model in models.values():
        n = usable_positions(model)
        with torch.no_grad():
            model(input_ids=torch.full((1, n), 5))
            with pytest.raises((IndexError, RuntimeError)):  # BERT: its token-type buffer is as short
                model(input_ids=torch.full((1, n + 1), 5))


def test_window_past_the_position_table_is_refused(tiny_mpnet):
    """514 positions hold 510 wordpieces between <s> and </s>, not 512: a
    window of max_position_embeddings - 2 used to pass the check and fail with
    an IndexError inside torch on the first long doc."""
    for window in (MAX_WINDOW + 1, POSITIONS - 2):
        with pytest.raises(ValueError, match=rf"E102.*window={window}.*<= {MAX_WINDOW} "):
            encoder_nlp(tiny_mpnet, window=window, stride=10)


def test_encoder_doc_vector_and_tokens_are_transformers_mean_pooling(tiny_mpnet):
    nlp = encoder_nlp(tiny_mpnet, onednn_prepack=False)
    hf, tokenizer = hf_parts(tiny_mpnet)
    for text, doc in zip(TEXTS, nlp.pipe(TEXTS)):
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            last = hf(**enc)[0][0].numpy()
        assert_allclose(doc.vector, last.mean(axis=0), atol=1e-5)
        assert_allclose(doc._.bert_pooled["cls"], last[0], atol=1e-5)
        # one wordpiece per token in these texts: token rows are the wordpiece rows
        assert len(doc) == len(last) - 2
        assert_allclose(doc.tensor, last[1:-1], atol=1e-5)


def test_long_doc_windows_beyond_the_position_table(tiny_mpnet):
    """A doc of ~90 wordpieces in windows of the largest size the 34 positions
    allow: every window's <s> ... </s> runs, doc.vector averages the windows'
    mean pooling and each wordpiece the windows that cover it."""
    stride = 20
    nlp = encoder_nlp(tiny_mpnet, window=MAX_WINDOW, stride=stride, store_wordpieces=True,
                      onednn_prepack=False)
    hf, tokenizer = hf_parts(tiny_mpnet)
    n, starts, outputs = hf_windows(hf, tokenizer, LONG_TEXT, MAX_WINDOW, stride)
    assert n + 2 > POSITIONS and len(starts) >= 4 and starts[-1] + MAX_WINDOW == n
    doc = nlp(LONG_TEXT)
    assert_allclose(doc.vector, numpy.mean([out.mean(axis=0) for out in outputs], axis=0), atol=1e-5)
    total, count = numpy.zeros((n, 8), dtype="float32"), numpy.zeros((n, 1), dtype="float32")
    for start, out in zip(starts, outputs):
        total[start:start + len(out) - 2] += out[1:-1]
        count[start:start + len(out) - 2] += 1
    assert_allclose(doc._.bert_wordpieces, total / count, atol=1e-5)


def test_onednn_prepack_and_int8_match_transformers(tiny_mpnet):
    """The prepacked fp32 copy predicts what transformers does; the int8 copy
    what transformers does after torch's own dynamic quantization of the same
    linear layers."""
    hf, tokenizer = hf_parts(tiny_mpnet)
    nlp = encoder_nlp(tiny_mpnet)  # onednn_prepack = true is the default
    vectors = [doc.vector for doc in nlp.pipe(TEXTS + [LONG_TEXT])]
    if prepack.prepack_available():
        assert set(_CACHE[windowed_module(nlp.get_pipe("bert_encoder"))]) == {"onednn"}
    for text, vector in zip(TEXTS + [LONG_TEXT], vectors):
        assert_allclose(vector, hf_mean(hf, tokenizer, text), atol=1e-5)

    # Dynamic int8 scales each layer's input by its largest value in the whole
    # forward call, padding and other windows included: one window per call
    # (max_batch_tokens = 32) and windows of 32 positions, a multiple of 4 (no
    # padding), make the plugin's calls the same as transformers' below.
    int8_nlp = encoder_nlp(tiny_mpnet, model={"max_batch_tokens": 32}, quantize=True, onednn_prepack=False)
    module = windowed_module(int8_nlp.get_pipe("bert_encoder"))
    ratios = quantize.input_outlier_ratios(module)  # calibrated on 32 positions of the 34: no IndexError
    to_int8 = {name[len("transformer."):] for name, ratio in ratios.items()
               if ratio <= quantize.OUTLIER_RATIO}
    assert to_int8 and len(ratios) == sum(type(m) is torch.nn.Linear for m in module.modules())
    hf_int8 = torch.ao.quantization.quantize_dynamic(copy.deepcopy(hf), to_int8, dtype=torch.qint8)
    for text in (TEXTS[0], LONG_TEXT):  # 6 wordpieces + <s> + </s>; windows of 30 + 2
        vector = int8_nlp(text).vector
        assert_allclose(vector, hf_mean(hf_int8, tokenizer, text), atol=1e-6)
        assert numpy.abs(vector - hf_mean(hf, tokenizer, text)).max() > 1e-6  # int8 did run


def test_encoder_to_disk_and_load_offline(tiny_mpnet, tmp_path):
    """The saved pipeline loads with the original model directory gone."""
    source = tmp_path / "source"
    shutil.copytree(tiny_mpnet, source)
    nlp = encoder_nlp(str(source))
    expected = [doc.vector for doc in nlp.pipe(TEXTS + [LONG_TEXT])]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(source)
    loaded = spacy.load(tmp_path / "pipeline")
    for vector, doc in zip(expected, loaded.pipe(TEXTS + [LONG_TEXT])):
        assert_allclose(doc.vector, vector, atol=1e-6)
    hf, tokenizer = hf_parts(tmp_path / "pipeline" / "bert_encoder" / "hf_0")
    assert type(tokenizer).__name__ == "MPNetTokenizerFast" and hf.config.model_type == "mpnet"


def linear_head(pipe):
    linear = next(node for node in pipe.model.walk() if node.name == "linear")
    return linear.get_param("W"), linear.get_param("b")


def test_bert_textcat_own_encoder_trains_saves_and_matches_transformers(tiny_mpnet, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(tiny_mpnet, source)
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_textcat", config={"model": {"name": str(source), "window": MAX_WINDOW, "stride": 20}})
    train = examples(nlp)
    optimizer = nlp.initialize(lambda: train)
    module = windowed_module(nlp.get_pipe("bert_textcat"))
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    for _ in range(3):
        nlp.update(train, sgd=optimizer)
    moved = [name for name, p in module.named_parameters() if not torch.equal(p, before[name])]
    assert "transformer.encoder.layer.0.attention.attn.q.weight" in moved  # gradients reach MPNet
    assert "transformer.encoder.relative_attention_bias.weight" in moved
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(source)
    loaded = spacy.load(tmp_path / "pipeline")
    hf, tokenizer = hf_parts(tmp_path / "pipeline" / "bert_textcat" / "hf_0")
    W, b = linear_head(loaded.get_pipe("bert_textcat"))
    for text in TEXTS + [LONG_TEXT]:
        expected = softmax(W @ hf_mean(hf, tokenizer, text) + b)
        for pipeline in (nlp, loaded):
            cats = pipeline(text).cats
            assert_allclose([cats[label] for label in LABELS], expected, atol=1e-5)


def test_bert_textcat_listener_on_a_shared_mpnet_encoder(tiny_mpnet, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": tiny_mpnet, "window": MAX_WINDOW, "stride": 20}})
    nlp.add_pipe("bert_textcat", config={"model": {
        "@architectures": "spacy-gptbert.TextCatHead.v1",
        "encoder": {"@architectures": "spacy-gptbert.EncoderListener.v1", "pooling": "mean"}}})
    train = examples(nlp)
    optimizer = nlp.initialize(lambda: train)
    module = windowed_module(nlp.get_pipe("bert_encoder"))
    before = module.transformer.encoder.layer[0].attention.attn.q.weight.detach().clone()
    for _ in range(3):
        nlp.update(train, sgd=optimizer)
    assert not torch.equal(module.transformer.encoder.layer[0].attention.attn.q.weight, before)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    hf, tokenizer = hf_parts(tmp_path / "pipeline" / "bert_encoder" / "hf_0")
    W, b = linear_head(loaded.get_pipe("bert_textcat"))
    for text in TEXTS + [LONG_TEXT]:
        pooled = hf_mean(hf, tokenizer, text)
        for pipeline in (nlp, loaded):
            doc = pipeline(text)
            assert_allclose(doc.vector, pooled, atol=1e-5)
            assert_allclose([doc.cats[label] for label in LABELS], softmax(W @ pooled + b), atol=1e-5)


def test_hf_sequence_classifier_on_mpnet(tiny_mpnet_seq_cls, tmp_path):
    """A fine-tuned MPNetForSequenceClassification predicts its own softmax;
    a long doc averages its windows' logits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    nlp = spacy.blank("en")
    textcat = nlp.add_pipe("bert_textcat", config={"model": {
        "@architectures": "spacy-gptbert.HFSequenceClassifier.v1", "name": tiny_mpnet_seq_cls,
        "window": MAX_WINDOW, "stride": 20}})
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc("x"), {})])
    assert textcat.labels == ("NEG", "POS")
    hf = AutoModelForSequenceClassification.from_pretrained(tiny_mpnet_seq_cls).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_mpnet_seq_cls)

    def expected(text):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        starts = [0] if len(ids) <= MAX_WINDOW else list(range(0, len(ids) - MAX_WINDOW + 1, 20))
        if starts[-1] + MAX_WINDOW < len(ids):
            starts.append(len(ids) - MAX_WINDOW)
        with torch.no_grad():
            logits = [hf(input_ids=torch.tensor([[0] + ids[s:s + MAX_WINDOW] + [2]])).logits[0].numpy()
                      for s in starts]
        return softmax(numpy.mean(logits, axis=0))

    for text in TEXTS + [LONG_TEXT]:
        cats = nlp(text).cats
        assert_allclose([cats[label] for label in textcat.labels], expected(text), atol=1e-5)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    for text in TEXTS + [LONG_TEXT]:
        assert loaded(text).cats == pytest.approx(nlp(text).cats, abs=1e-6)


# ---------------------------------------------------------------------------
# The real all-mpnet-base-v2, where the Hugging Face cache has it
# ---------------------------------------------------------------------------

MPNET = "sentence-transformers/all-mpnet-base-v2"


@pytest.fixture(scope="module")
def real_mpnet():
    from spacy_gptbert.models.hf_loading import resolve_model_dir

    try:
        return resolve_model_dir(MPNET)  # offline (HF_HUB_OFFLINE=1): the cache or nothing
    except OSError:
        pytest.skip(f"{MPNET} is not installed: python -m spacy_gptbert download all-mpnet-base-v2")


@pytest.mark.slow
def test_real_mpnet_doc_vector_is_sentence_transformers_mean_pooling(real_mpnet):
    from transformers import AutoModel, AutoTokenizer

    nlp = spacy.blank("en")
    nlp.add_pipe("bert_encoder", config={"model": {"name": MPNET}})
    nlp.initialize()
    hf = AutoModel.from_pretrained(str(real_mpnet)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(real_mpnet))
    texts = ["A truly wonderful film, full of surprises!", "the worst movie i have seen this year .",
             "I don't think it's worth $12.50, honestly.", "I'm gonna wanna see it!!! :-)"]
    for text, doc in zip(texts, nlp.pipe(texts)):
        with torch.no_grad():
            expected = hf(**tokenizer(text, return_tensors="pt"))[0][0].mean(dim=0).numpy()
        assert_allclose(doc.vector, expected, atol=1e-4)
    # the largest window 514 positions allow (510 + <s> + </s>) runs on a doc longer than that
    long_nlp = spacy.blank("en")
    long_nlp.add_pipe("bert_encoder", config={"model": {"name": MPNET, "window": 510, "stride": 400}})
    long_nlp.initialize()
    long_text = " ".join(texts * 12)
    n, _, outputs = hf_windows(hf, tokenizer, long_text, 510, 400)
    assert n > 514 and len(outputs) == 2
    expected = numpy.mean([out.mean(axis=0) for out in outputs], axis=0)
    assert_allclose(long_nlp(long_text).vector, expected, atol=1e-4)
