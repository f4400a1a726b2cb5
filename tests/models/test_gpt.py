"""Raw GPT helpers: loss, blocks, padding, stop strings, tokenizer and model building."""
import math

import numpy
import pytest
import torch

from spacy_gptbert.models import gpt

SENTENCES = ["The cat sat on the mat.", "A dog barked at the moon.", "Birds sing in the morning."]


def test_token_nll_matches_hand_computation():
    # logits (B=1, T=2, V=3), targets: token 2 then token 0
    logits = torch.tensor([[[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]])
    targets = torch.tensor([[2, 0]])
    rows = numpy.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    hand = sum(math.log(numpy.exp(r).sum()) - r[t] for r, t in zip(rows, [2, 0]))
    assert gpt.token_nll(logits, targets).item() == pytest.approx(hand, rel=1e-6)


def test_token_nll_ignores_masked_targets():
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, gpt.IGNORE_INDEX, 4], [gpt.IGNORE_INDEX] * 3])
    nll = gpt.token_nll(logits, targets)  # (B,)
    logp = torch.log_softmax(logits, dim=-1)
    assert nll[0].item() == pytest.approx(-(logp[0, 0, 1] + logp[0, 2, 4]).item(), rel=1e-5)
    assert nll[1].item() == 0.0


def test_split_blocks_counts_every_target_once():
    seq = list(range(10))
    weights = [True] * 10
    blocks = list(gpt.split_blocks(seq, weights, block=4))
    assert [b[0] for b in blocks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    assert [b[1] for b in blocks] == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    masked = list(gpt.split_blocks([7, 8, 9], [False, False, True], block=4))
    assert masked == [([7, 8], [gpt.IGNORE_INDEX, 9])]


def test_left_pad_puts_prompts_at_the_end():
    ids, mask = gpt.left_pad([[5, 6, 7], [9]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_cut_at_stop_uses_earliest_stop():
    assert gpt.cut_at_stop("abc. def\nghi", ["\n", "."]) == "abc"
    assert gpt.cut_at_stop("no stop here", ["###"]) == "no stop here"


def test_bpe_tokenizer_roundtrip_and_specials():
    tok = gpt.train_bpe_tokenizer(SENTENCES, vocab_size=300, min_frequency=1)
    ids = tok("The cat sat.", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "The cat sat."
    assert tok.eos_token == gpt.EOS_TOKEN and tok.pad_token == gpt.PAD_TOKEN
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.decode(tok("é ü 字", add_special_tokens=False)["input_ids"]) == "é ü 字"  # byte-level: no UNK


def test_bpe_tokenizer_needs_texts():
    with pytest.raises(ValueError, match="E209"):
        gpt.train_bpe_tokenizer(["", ""], vocab_size=300)


@pytest.mark.parametrize("sizes", [(2, 3, 32, 64, 300), (0, 2, 32, 64, 300), (2, 2, 32, -1, 300)])
def test_bad_gpt_sizes(sizes):
    with pytest.raises(ValueError, match="E208"):
        gpt.check_gpt_sizes(*sizes)


def test_scratch_model_saves_as_standard_hf_dir(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = gpt.train_bpe_tokenizer(SENTENCES, vocab_size=300, min_frequency=1)
    lm = gpt.build_gpt2_lm(tok, n_layer=1, n_head=2, n_embd=16, n_positions=32)
    assert gpt.context_size(lm) == 32 and lm.config.vocab_size == len(tok)
    lm.save_pretrained(str(tmp_path), safe_serialization=True)
    tok.save_pretrained(str(tmp_path))
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path))
    tok2 = AutoTokenizer.from_pretrained(str(tmp_path))
    ids = torch.tensor([tok2("The cat", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, lm.eval()(ids).logits, atol=1e-6)



def test_classifier_free_guidance_by_hand():
    """Both halves of the batch get log q + s * (log p - log q), with p the
    prompt's and q the guidance prompt's softmax; a token the guidance rules
    out keeps the prompt's score."""
    scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])  # row 0: prompt, row 1: its guidance prompt
    out = gpt.ClassifierFreeGuidance(3.0)(None, scores)
    p, q = scores.log_softmax(-1)
    assert torch.allclose(out[0], q + 3.0 * (p - q)) and torch.equal(out[0], out[1])
    # log p - log q = [2, 0, -2]: token 0 gains 3 * 4 - 2 over token 2
    assert float(out[0][0] - out[0][2]) == pytest.approx(10.0, abs=1e-5)
    ruled_out = gpt.ClassifierFreeGuidance(2.0)(None, torch.tensor([[1.0, 0.0], [0.0, float("-inf")]]))
    p, q = torch.tensor([1.0, 0.0]).log_softmax(-1), torch.tensor([0.0, -math.inf]).log_softmax(-1)
    assert torch.allclose(ruled_out[0], torch.stack([q[0] + 2.0 * (p[0] - q[0]), p[1]]))
