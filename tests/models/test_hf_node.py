"""The Hugging Face-backed thinc nodes share one home (hf_node.py): one way
to find them, one attach, one get_hf_parts; the old import paths still work."""
import pytest
import spacy
from spacy.training import Example

from spacy_gptbert.models import architectures, encoder, generator_model, hf_node
from spacy_gptbert.models.hf_loading import load_pretrained


def test_nodes_are_found_by_kind(tiny_bert, tiny_seq_cls):
    enc = architectures.build_bert_textcat(tiny_bert, window=16, stride=8, nO=2)
    seq = architectures.build_hf_sequence_classifier(tiny_seq_cls, window=16, stride=8)
    lm = architectures.build_bert_decoder(tiny_bert)
    assert [n.attrs["kind"] for n in hf_node.hf_nodes(enc)] == ["encoder"]
    assert [n.attrs["kind"] for n in hf_node.hf_nodes(seq)] == ["seq_cls"]
    assert [n.attrs["kind"] for n in hf_node.hf_nodes(lm)] == ["causal_lm"]
    assert not list(hf_node.hf_nodes(enc, "causal_lm"))
    assert encoder.is_windowed_model(seq) and not encoder.is_windowed_model(lm)
    assert generator_model.is_causal_lm(lm) and not generator_model.is_causal_lm(seq)
    assert generator_model.find_causal_lm(lm) is lm


def test_get_hf_parts_gives_the_hugging_face_model_of_each_kind(tiny_bert, tiny_seq_cls):
    for model in (architectures.build_encoder(tiny_bert, window=16, stride=8),
                  architectures.build_hf_sequence_classifier(tiny_seq_cls, window=16, stride=8),
                  architectures.build_bert_decoder(tiny_bert)):
        assert hf_node.get_hf_parts(model) == (None, None)
        model.initialize()
        hf_model, tokenizer = hf_node.get_hf_parts(model)
        assert hf_model is model.shims[0]._model.hf_model and tokenizer is model.attrs["tokenizer"]
        assert type(hf_model).__module__.startswith("transformers.")


def test_gpt_from_scratch_is_a_causal_lm_node():
    nlp = spacy.blank("en")
    nlp.add_pipe("gpt_generator", config={"model": {
        "@architectures": "spacy-gptbert.GPT.v1", "n_layer": 1, "n_head": 2, "n_embd": 32, "n_positions": 64,
        "vocab_size": 300, "min_frequency": 1}})
    texts = ["a good movie", "a bad film", "i loved it"] * 3
    nlp.initialize(lambda: [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in texts])
    node = generator_model.find_causal_lm(nlp.get_pipe("gpt_generator").model)
    assert type(hf_node.get_hf_parts(node)[0]).__name__ == "GPT2LMHeadModel"


def test_moved_names_keep_their_old_import_paths():
    assert generator_model.build_gpt is architectures.build_gpt
    assert generator_model.build_causal_lm is architectures.build_causal_lm
    assert generator_model.build_bert_decoder is architectures.build_bert_decoder
    assert encoder.get_hf_parts is generator_model.get_hf_parts is hf_node.get_hf_parts
    with pytest.raises(AttributeError):
        generator_model.no_such_name


def test_windowed_model_rejects_unknown_settings():
    with pytest.raises(TypeError, match="windw"):
        encoder.windowed_model("encoder", "unused", windw=8)


def test_load_pretrained_as_a_masked_lm_seeds_the_fresh_head(tiny_bert):
    a, _, _ = load_pretrained(tiny_bert, "AutoModelForMaskedLM", expect="mlm", seed=3)
    b, _, _ = load_pretrained(tiny_bert, "AutoModelForMaskedLM", expect="mlm", seed=3)
    c, _, _ = load_pretrained(tiny_bert, "AutoModelForMaskedLM", expect="mlm", seed=4)
    name = "cls.predictions.transform.dense.weight"  # the tiny BERT has no MLM head: it starts fresh
    assert a.get_parameter(name).equal(b.get_parameter(name))
    assert not a.get_parameter(name).equal(c.get_parameter(name))
