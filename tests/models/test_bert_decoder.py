"""spacy-gptbert.BertDecoder.v1: a BERT-family encoder warm-started as a causal
decoder (loading, causality, tied output layer, start/end tokens, RoBERTa-style
positions, the errors for models that cannot be decoders).

Tiny random models built in the tests (conftest.build_tiny_bert) keep it fast.
"""
import json
import shutil

import pytest
import torch

from spacy_gptbert.models import generator_model as lm_model
from spacy_gptbert.models.architectures import build_bert_decoder
from spacy_gptbert.models import gpt
from spacy_gptbert.models.gpt import GenerationSettings
from spacy_gptbert.models.hf_loading import DECODER_TYPES, load_pretrained

from ..conftest import CORPUS, HF_TINY


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py


def decoder(name, **kwargs):
    model = build_bert_decoder(name=str(name), **kwargs)
    model.initialize()
    return model


def test_loads_as_a_causal_lm_with_output_layer_tied_to_word_embeddings(tiny_bert):
    from transformers import BertModel

    lm = lm_model.get_lm(decoder(tiny_bert))
    assert type(lm).__name__ == "BertLMHeadModel" and lm.config.is_decoder
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    encoder = BertModel.from_pretrained(tiny_bert)
    assert torch.equal(lm.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    last = encoder.encoder.layer[1].output.dense.weight
    assert torch.equal(lm.bert.encoder.layer[1].output.dense.weight, last)


def test_head_the_checkpoint_lacks_starts_from_the_seed(tiny_bert):
    def head(**kwargs):
        return lm_model.get_lm(decoder(tiny_bert, **kwargs)).cls.predictions.transform.dense.weight

    rng_before = torch.random.get_rng_state()
    first = head(seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert torch.equal(head(seed=0), first) and not torch.equal(head(seed=1), first)


def test_dropout_setting(tiny_bert):
    assert lm_model.get_lm(decoder(tiny_bert)).config.hidden_dropout_prob == 0.1  # the checkpoint's
    config = lm_model.get_lm(decoder(tiny_bert, dropout=0.0)).config
    assert config.hidden_dropout_prob == 0.0 and config.attention_probs_dropout_prob == 0.0


def test_starts_on_cls_and_ends_on_sep(tiny_bert):
    model = decoder(tiny_bert)
    tokenizer = model.attrs["tokenizer"]
    assert (tokenizer.bos_token, tokenizer.eos_token) == ("[CLS]", "[SEP]")
    cls, sep, pad = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    assert lm_model.special_ids(model) == (cls, sep, pad)
    rows = lm_model.sequence_rows(model, [[7]], [[8, 9]], add_eos=True)
    assert rows.input_ids == [[tokenizer.cls_token_id, 7, 8, 9]]
    assert rows.targets == [[-100, 8, 9, tokenizer.sep_token_id]]


def test_is_causal(tiny_bert):
    """A token's logits do not change when later tokens change (the same
    weights as the encoder they came from see the later tokens)."""
    from transformers import BertModel

    lm = lm_model.get_lm(decoder(tiny_bert)).eval()
    encoder = BertModel.from_pretrained(tiny_bert).eval()
    first = torch.tensor([[2, 15, 30, 41, 52, 63]])
    later_changed = first.clone()
    later_changed[0, 3:] = torch.tensor([70, 80, 90])
    with torch.no_grad():
        a, b = lm(input_ids=first).logits, lm(input_ids=later_changed).logits
        ea, eb = (encoder(input_ids=ids).last_hidden_state for ids in (first, later_changed))
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6, rtol=0)
    assert not torch.allclose(a[0, 3:], b[0, 3:], atol=1e-3)
    assert not torch.allclose(ea[0, :3], eb[0, :3], atol=1e-3)


def test_packed_lm_rows_start_each_doc_on_cls(tiny_bert):
    model = decoder(tiny_bert)
    bos, eos, _ = lm_model.special_ids(model)
    rows = lm_model.packed_rows(model, [[7, 8], [9]])
    assert rows.input_ids == [[bos, 7, 8, eos, bos, 9]]
    assert rows.targets == [[7, 8, eos, -100, 9, eos]]  # [CLS] after [SEP] is never a target
    shifted = lm_model.packed_rows(model, [[7, 8], [9]], shift=2)
    # the stream rotated by 2: 8 [SEP] [CLS] 9 [SEP] [CLS] 7
    assert shifted.input_ids == [[8, eos, bos, 9, eos, bos]]
    assert shifted.targets == [[eos, -100, 9, eos, -100, 7]]


def tiny_roberta(path):
    """A random RobertaModel (positions numbered from padding_idx + 1 = 2)
    with a byte-level BPE tokenizer trained on CORPUS."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(CORPUS * 5, vocab_size=300, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    trainer.save_model(str(path))
    tokenizer = RobertaTokenizerFast(vocab_file=str(path / "vocab.json"),
                                     merges_file=str(path / "merges.txt"))
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=2, intermediate_size=64, max_position_embeddings=34,
                           pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(str(path), safe_serialization=True)
    tokenizer.save_pretrained(str(path))
    return path


def test_roberta_generation_numbers_positions_as_training_does(tmp_path):
    """Hugging Face generate passes position ids from 0; RoBERTa's training
    forward numbers them from padding_idx + 1. Greedy generation must pick
    the argmax of the training forward's logits at every step, batched with
    left padding or alone."""
    model = decoder(tiny_roberta(tmp_path / "roberta"))
    lm = lm_model.get_lm(model).eval()
    assert type(lm).__name__ == "RobertaForCausalLM"
    assert lm_model.context_size(model) == 32  # 34 positions less the 2 below the first
    assert lm_model.special_ids(model)[:2] == (0, 2)  # its own <s> and </s>
    prompts = [[0] + ids for ids in lm_model.encode(model, ["a good movie with", "boring"])]
    settings = GenerationSettings(max_new_tokens=6)
    _, eos, pad = lm_model.special_ids(model)
    batched = gpt.generate_ids(lm, *gpt.left_pad(prompts, pad), settings, pad, None)
    for prompt, new in zip(prompts, batched.tolist()):
        alone = gpt.generate_ids(lm, *gpt.left_pad([prompt], pad), settings, pad, None)
        assert alone.tolist() == [new]
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([prompt + new])).logits[0]
        assert logits[len(prompt) - 1 : -1].argmax(-1).tolist() == new


def test_other_bert_family_types():
    assert DECODER_TYPES == {"bert", "roberta", "xlm-roberta", "camembert", "electra", "ernie"}
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    assert DECODER_TYPES <= set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


@pytest.mark.parametrize("model_type", ["distilbert", "mpnet", "gpt2"])
def test_model_that_cannot_be_a_decoder_is_refused(tmp_path, model_type):
    """E230 from config.json alone, before any weights are read."""
    config = {"model_type": model_type, "architectures": ["SomeModel"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="E230") as err:
        decoder(tmp_path)
    assert "spacy-gptbert.CausalLM.v1" in str(err.value) and "bert, camembert" in str(err.value)


def test_tokenizer_without_an_end_token_is_refused(tmp_path):
    path = tmp_path / "no_sep"
    shutil.copytree(HF_TINY / "bert_tiniest", path)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        config = json.loads((path / name).read_text())
        config["sep_token"] = None
        (path / name).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="E231"):
        decoder(path)


def test_causal_lm_v1_points_a_bert_to_the_decoder(tmp_path, tiny_bert):
    """CausalLM.v1 still refuses a BERT (E011 for a BertLMHeadModel: no
    end-of-text token; E006 for a bare BertModel); both errors name
    BertDecoder.v1, which loads the same directory."""
    from transformers import BertConfig, BertLMHeadModel

    bert = tmp_path / "bert_lm"
    BertLMHeadModel(BertConfig.from_pretrained(tiny_bert, is_decoder=True)).save_pretrained(bert)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(f"{tiny_bert}/{name}", bert / name)
    with pytest.raises(ValueError, match="E011") as err:
        load_pretrained(bert, "AutoModelForCausalLM", expect="causal_lm")
    assert "spacy-gptbert.BertDecoder.v1" in str(err.value)
    with pytest.raises(ValueError, match="E006") as err:
        load_pretrained(tiny_bert, "AutoModelForCausalLM", expect="causal_lm")
    assert "spacy-gptbert.BertDecoder.v1" in str(err.value)
    assert lm_model.special_ids(decoder(bert))[:2] == (2, 3)  # the advice works: [CLS], [SEP]


def test_generated_wordpieces_read_as_words_and_byte_level_text_is_kept(tmp_path):
    from transformers import AutoTokenizer, BertTokenizerFast

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "it", "'", "s", "is", "n", "t", ",", "good", "."]))
    # as all-MiniLM-L6-v2's tokenizer_config.json sets it
    wordpiece = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True, clean_up_tokenization_spaces=False)
    ids = wordpiece("it 's good , is n't it .", add_special_tokens=False)["input_ids"]
    assert wordpiece.decode(ids) == "it ' s good, is n ' t it."  # what the decoder alone writes
    assert lm_model.decode_generated(wordpiece, [ids, ids[:3]]) == ["it's good, isn't it.", "it's"]
    byte_level = AutoTokenizer.from_pretrained(str(HF_TINY / "fake_gpt2"))
    text = "it 's good , is n't it ."
    assert lm_model.decode_generated(byte_level, [byte_level(text)["input_ids"]]) == [text]
