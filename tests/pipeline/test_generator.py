"""gpt_generator: settings, prompts, batching, training, scoring, serialization.

A tiny GPT-2 (1 layer, width 32) with a BPE tokenizer trained in the test
keeps the whole file fast on a CPU.
"""
import json
from pathlib import Path

import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import Adam

from spacy_gptbert.models import generator_model as lm_model
from spacy_gptbert.models.gpt import Rows
from spacy_gptbert.pipeline.generator import generation_agreement, generation_quality, generator_score
from spacy_gptbert.pipeline.prompts import TemplatePrompt, as_prompt, format_cats
from spacy_gptbert.training import generator_data

from ..conftest import greedy_by_hand

HF_TINY = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hf-tiny"
SENTENCES = [
    "The cat sat on the mat.",
    "A dog barked at the moon.",
    "Birds sing in the morning.",
    "Rain falls on green hills.",
    "The sun rises over the sea.",
]
TINY_GPT = {
    "@architectures": "spacy-gptbert.GPT.v1", "n_layer": 1, "n_head": 2, "n_embd": 32,
    "n_positions": 64, "vocab_size": 300, "min_frequency": 1, "seed": 0,
}


def make_nlp(**config) -> Language:
    nlp = spacy.blank("en")
    config.setdefault("model", TINY_GPT)
    nlp.add_pipe("gpt_generator", config=config)
    return nlp


def examples(nlp, texts=SENTENCES):
    return [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in texts]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest.py: 10x faster steps on a shared CPU


def train(nlp, egs, steps=300, lr=1e-2):
    spacy.util.fix_random_seed(0)  # LM mode draws random block offsets
    nlp.initialize(lambda: egs)
    optimizer = Adam(lr)
    for _ in range(steps):
        nlp.update(egs, sgd=optimizer)
    return nlp


@pytest.fixture(scope="module")
def trained_nlp():
    """The tiny GPT overfit on five sentences (LM mode)."""
    nlp = make_nlp(max_new_tokens=12)
    return train(nlp, examples(nlp))


def test_default_config():
    nlp = spacy.blank("en")
    gen = nlp.add_pipe("gpt_generator")
    cfg = nlp.config["components"]["gpt_generator"]
    assert cfg["model"]["@architectures"] == "spacy-gptbert.CausalLM.v1"
    assert cfg["onednn_prepack"] is True and gen.onednn_prepack is True
    assert cfg["prompt"] == "{text}" and cfg["mode"] == "lm" and cfg["on_long_prompt"] == "truncate"
    assert gen.settings.do_sample is False and gen.settings.num_return_sequences == 1
    assert not gen.lm.shims  # weights load at initialize, never in the constructor
    with pytest.raises(ValueError, match="E009"):
        nlp("not initialized")


def test_overfit_five_sentences_greedy(trained_nlp):
    for text in SENTENCES:
        words = text.split(" ")
        doc = trained_nlp(" ".join(words[:2]))
        assert doc._.generation == " " + " ".join(words[2:])
        assert doc._.generations == [doc._.generation]


def test_batch_of_16_equals_single_greedy(trained_nlp):
    prompts = [" ".join(s.split(" ")[:k]) for s in SENTENCES for k in (1, 2, 3)] + ["The"]
    assert len(prompts) == 16
    single = [trained_nlp(p)._.generation for p in prompts]
    batched = [d._.generation for d in trained_nlp.pipe(prompts, batch_size=16)]
    assert batched == single


def test_seed_makes_sampling_reproducible(trained_nlp):
    gen = trained_nlp.get_pipe("gpt_generator")
    old = gen.settings
    try:
        gen.settings = type(old)(max_new_tokens=8, do_sample=True, temperature=1.5, num_return_sequences=3, seed=7)
        first = [d._.generations for d in trained_nlp.pipe(["The cat", "A dog"])]
        second = [d._.generations for d in trained_nlp.pipe(["The cat", "A dog"])]
        assert first == second and all(len(g) == 3 for g in first)
        # The overfit model puts ~0.96 on its next word: one other seed may
        # draw the same 6 texts, four other seeds do not all.
        others = set()
        for gen.settings.seed in (8, 9, 10, 11):
            others.add(repr([d._.generations for d in trained_nlp.pipe(["The cat", "A dog"])]))
        assert others - {repr(first)}
    finally:
        gen.settings = old


def test_seeded_batches_with_one_prompt_do_not_repeat_each_other(trained_nlp):
    """A template that only reads the label gives every doc the same prompt;
    a seed must not make every batch draw the same samples."""
    gen = trained_nlp.get_pipe("gpt_generator")
    old, old_prompt = gen.settings, gen.prompt
    try:
        gen.settings = type(old)(max_new_tokens=8, do_sample=True, temperature=1.5, seed=7)
        gen.prompt = as_prompt("The")
        texts = [f"doc {i}" for i in range(16)]
        first = [d._.generation for d in trained_nlp.pipe(texts, batch_size=4)]
        assert first == [d._.generation for d in trained_nlp.pipe(texts, batch_size=4)]  # reproducible
        assert len({tuple(first[i:i + 4]) for i in range(0, 16, 4)}) == 4  # four batches, four draws
    finally:
        gen.settings, gen.prompt = old, old_prompt


def test_stop_strings_cut_output(trained_nlp):
    gen = trained_nlp.get_pipe("gpt_generator")
    gen.settings.stop = [" on", "."]
    try:
        assert trained_nlp("The cat")._.generation == " sat"
        assert trained_nlp("Birds sing")._.generation == " in the morning"
    finally:
        gen.settings.stop = []


def test_stop_strings_end_generation_early(trained_nlp):
    """With a stop string every row reaches, generate stops there instead of
    running all max_new_tokens steps."""
    gen = trained_nlp.get_pipe("gpt_generator")
    prompts = lm_model.encode(gen.lm, ["The cat", "Birds sing"])
    settings = type(gen.settings)(max_new_tokens=12)
    full = lm_model.generate_texts(gen.lm, prompts, settings)
    settings.stop = [" on", " the"]
    stopped = lm_model.generate_texts(gen.lm, prompts, settings)
    assert stopped == [[" sat"], [" in"]] and full[0][0].startswith(" sat on")
    calls = []
    lm = lm_model.get_lm(gen.lm)
    original = lm.forward
    lm.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        lm_model.generate_texts(gen.lm, prompts, settings)
    finally:
        del lm.forward
    assert len(calls) < settings.max_new_tokens  # one forward per generated step


def test_stop_string_hugging_face_cannot_watch(trained_nlp):
    """Found by the fuzz suite: StopStringCriteria refuses "\\x80" (no token
    string holds it). Generation still runs, and the text is cut at it."""
    gen = trained_nlp.get_pipe("gpt_generator")
    prompts = lm_model.encode(gen.lm, ["The cat"])
    settings = type(gen.settings)(max_new_tokens=6, stop=["\x80", " on"])
    assert lm_model.generate_texts(gen.lm, prompts, settings) == [[" sat"]]
    settings.stop = ["\x80"]
    assert lm_model.generate_texts(gen.lm, prompts, settings)[0][0].startswith(" sat on")


def hf_parts(nlp):
    """The generator's Hugging Face model, its tokenizer and its BOS id."""
    gen = nlp.get_pipe("gpt_generator")
    lm, tokenizer = lm_model.get_lm(gen.lm), gen.lm.attrs["tokenizer"]
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    return lm, tokenizer, bos


def test_empty_doc_generates_from_prompt(trained_nlp):
    lm, tokenizer, bos = hf_parts(trained_nlp)
    generation = trained_nlp("")._.generation
    assert generation == greedy_by_hand(lm, tokenizer, [bos], 12)  # from BOS alone
    assert generation in SENTENCES  # the overfit model writes a training sentence


def guided_by_hand(lm, prompt_ids, guidance_ids, scale, max_new_tokens, eos):
    """Greedy classifier-free guidance written out: per step, the argmax of
    log q + scale * (log p - log q) at the last position, p given the prompt
    and q given the guidance prompt (each run whole, no cache, no padding)."""
    import copy

    model, new = copy.deepcopy(lm).eval(), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            p, q = (model(torch.tensor([ids + new])).logits[0, -1].log_softmax(-1)
                    for ids in (prompt_ids, guidance_ids))
            token = int((q + scale * (p - q)).argmax())
            if token == eos:
                break
            new.append(token)
    return new


def test_guidance_steers_greedy_generation_by_hand(trained_nlp, tmp_path):
    """guidance_scale 3 away from the guidance prompt "A dog": each doc's
    generation is the hand-written guided greedy decoding, in a batch or
    alone, differs from the unguided one somewhere, and scale 1.0 is off."""
    texts = ["The cat", "Rain", "Birds sing in", "The sun rises"]
    trained_nlp.to_disk(tmp_path / "p")
    guided = spacy.load(tmp_path / "p", config={"components": {"gpt_generator": {
        "guidance_prompt": "A dog", "guidance_scale": 3.0}}})
    lm, tokenizer, bos = hf_parts(guided)
    gen = guided.get_pipe("gpt_generator")
    batch = [d._.generation for d in guided.pipe(texts, batch_size=4)]
    for text, generation in zip(texts, batch):
        ids = [bos] + tokenizer(text)["input_ids"]
        by_hand = guided_by_hand(lm, ids, [bos] + tokenizer("A dog")["input_ids"], 3.0, 12, tokenizer.eos_token_id)
        assert generation == tokenizer.decode(by_hand, skip_special_tokens=True) == guided(text)._.generation
    assert batch != [trained_nlp(t)._.generation for t in texts]
    off = spacy.load(tmp_path / "p", config={"components": {"gpt_generator": {"guidance_prompt": "A dog"}}})
    assert [d._.generation for d in off.pipe(texts)] == [trained_nlp(t)._.generation for t in texts]
    assert gen.settings.guidance_scale == 3.0


def test_guided_sampling_is_seeded_per_doc(trained_nlp, tmp_path):
    """Sampled guided generation: the same texts alone and in any batch."""
    trained_nlp.to_disk(tmp_path / "p")
    nlp = spacy.load(tmp_path / "p", config={"components": {"gpt_generator": {
        "guidance_prompt": "A dog", "guidance_scale": 2.0, "do_sample": True, "seed": 3,
        "temperature": 1.0, "num_return_sequences": 2}}})
    texts = ["The cat", "Rain", "Birds sing in"]
    together = [d._.generations for d in nlp.pipe(texts, batch_size=3)]
    assert together == [nlp(t)._.generations for t in texts]
    assert all(len(g) == 2 for g in together)


def test_pipe_equals_call_and_order_kept(trained_nlp):
    texts = ["Rain falls", "", "The sun rises over", "A"]
    assert [d._.generation for d in trained_nlp.pipe(texts, batch_size=3)] == [
        trained_nlp(t)._.generation for t in texts
    ]


def test_to_disk_from_disk_and_bytes_identical(trained_nlp, tmp_path):
    from transformers import AutoModelForCausalLM

    texts = ["The cat", "Rain falls", ""]
    expected = [d._.generation for d in trained_nlp.pipe(texts)]
    trained_nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert [d._.generation for d in loaded.pipe(texts)] == expected
    hf_dir = tmp_path / "nlp" / "gpt_generator" / "hf_0"
    assert (hf_dir / "model.safetensors").exists() and (hf_dir / "tokenizer.json").exists()
    assert type(AutoModelForCausalLM.from_pretrained(str(hf_dir))).__name__ == "GPT2LMHeadModel"
    fresh = make_nlp(max_new_tokens=12)
    fresh.get_pipe("gpt_generator").from_bytes(trained_nlp.get_pipe("gpt_generator").to_bytes())
    assert [d._.generation for d in fresh.pipe(texts)] == expected


def test_lm_loss_equals_hugging_face_loss(trained_nlp):
    """Our (B,) NLL sums through thinc == HF's own shifted cross-entropy."""
    lm = trained_nlp.get_pipe("gpt_generator").lm
    ids = lm_model.encode(lm, ["The cat sat on the moon."])[0]
    rows = lm_model.sequence_rows(lm, [[]], [ids], add_eos=False)  # [BOS] + ids, all predicted
    nll = float(lm.predict(rows).sum())
    bos, _, _ = lm_model.special_ids(lm)
    full = torch.tensor([[bos] + ids])
    with torch.no_grad():
        hf_loss = lm_model.get_lm(lm).eval()(input_ids=full, labels=full).loss.item()  # mean over len(ids)
    assert nll / len(ids) == pytest.approx(hf_loss, rel=1e-5)


def test_get_loss_gradient_is_one_over_targets(trained_nlp):
    gen = trained_nlp.get_pipe("gpt_generator")
    rows = Rows()
    rows.add([1, 2, 3], [2, 3, -100], 0)
    rows.add([4, 5], [5, 6], 0)
    nll = gen.model.ops.asarray1f([3.0, 5.0])
    loss, d_nll = gen.get_loss([], (nll, rows))
    assert loss == pytest.approx(8.0 / 4) and d_nll.tolist() == pytest.approx([0.25, 0.25])


def test_prompt_mode_learns_completion_given_label():
    nlp = make_nlp(prompt="Review ({label}): ", mode="prompt", max_new_tokens=12)
    pairs = [("POS", "A fine film."), ("NEG", "Dull and slow.")]
    egs = []
    for label, text in pairs:
        ref = nlp.make_doc(text)
        ref.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        egs.append(Example(nlp.make_doc(text), ref))
    train(nlp, egs, steps=120)
    for label, text in pairs:
        doc = nlp.make_doc("")
        doc.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        assert nlp.get_pipe("gpt_generator")(doc)._.generation == text
    scores = nlp.evaluate(egs)
    assert scores["gen_loss_per_char"] < 0.5 and scores["gen_ppl"] >= 1.0


def test_prompt_mode_needs_a_completion():
    nlp = make_nlp(prompt="Continue: {text}", mode="prompt")
    with pytest.raises(ValueError, match="E207"):
        nlp.initialize(lambda: examples(nlp))
    nlp2 = make_nlp(prompt="Continue: {text}", mode="prompt")
    ref = nlp2.make_doc("Once upon")
    ref._.completion = " a time."
    nlp2.initialize(lambda: [Example(nlp2.make_doc("Once upon"), ref)])  # completion from the extension


def test_completion_attr_of_another_name_is_read_from_a_docbin():
    """A completion_attr nobody registered: the component registers it, so
    the values a DocBin stored are read instead of falling back to the text."""
    from spacy.tokens import Doc, DocBin

    name = "summary_for_generator_test"
    writer = spacy.blank("en")
    doc = writer.make_doc("A long review of a film.")
    doc.user_data[("._.", name, None, None)] = "Good film."  # as a DocBin from another process holds it
    data = DocBin(store_user_data=True, docs=[doc]).to_bytes()
    assert not Doc.has_extension(name)
    nlp = make_nlp(prompt="Summary: ", mode="prompt", completion_attr=name)
    gen = nlp.get_pipe("gpt_generator")
    assert Doc.has_extension(name)
    ref = next(DocBin().from_bytes(data).get_docs(nlp.vocab))
    assert gen._completion(ref, 0) == "Good film."
    assert gen._completion(nlp.make_doc("No summary here."), 1) == "No summary here."


def test_scores_and_agreement_without_nlp_or_textcat(trained_nlp):
    egs = examples(trained_nlp)
    scores = trained_nlp.evaluate(egs)
    assert scores["gen_loss_per_char"] == pytest.approx(scores["gen_bpc"] * 0.6931471805599453)
    assert scores["gen_agreement"] is None  # no textcat in this pipeline
    bare = generator_score(egs)  # nlp-less scorer call: nothing to compute, no crash
    assert bare["gen_ppl"] is None and bare["gen_agreement"] is None
    stats = generator_score(egs, lm_stats=[(2.0, 4, 10)])
    assert stats["gen_ppl"] == pytest.approx(2.718281828 ** 0.5) and stats["gen_loss_per_char"] == 0.2


def test_generation_quality_by_hand():
    """Whitespace tokens. Unigrams: 6 + 6 + 2 = 14, distinct {the, cat, sat,
    on, mat, good, .} = 7. Bigrams: 5 + 5 + 1 = 11, distinct {the cat, cat sat,
    sat on, on the, the mat, cat the, good .} = 7. Only the second text repeats
    a 4-gram ("the cat the cat"); the empty one counts as a generation."""
    texts = ["the cat sat on the mat", "the cat the cat the cat", "good .", ""]
    assert generation_quality(texts) == {"gen_distinct_1": 7 / 14, "gen_distinct_2": 7 / 11,
                                         "gen_repeat_4gram": 1 / 4}
    nothing = {"gen_distinct_1": None, "gen_distinct_2": None, "gen_repeat_4gram": None}
    assert generation_quality([]) == nothing
    assert generation_quality(["one"]) == {**nothing, "gen_distinct_1": 1.0, "gen_repeat_4gram": 0.0}


def test_scorer_reports_quality_over_all_generations():
    """Every doc._.generations entry (num_return_sequences > 1) counts; a doc
    without generations adds nothing."""
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(t) for t in ("x", "y", "z")]
    docs[0]._.generations, docs[0]._.generation = ["a b a b a b", "c d"], "a b a b a b"
    docs[1]._.generation = "c d"  # set without generations (e.g. by hand): still counted
    egs = [Example(doc, nlp.make_doc(doc.text)) for doc in docs]
    scores = generator_score(egs)
    # unigrams a b a b a b | c d | c d: 10, distinct 4; bigrams 5 + 1 + 1 = 7, distinct {a b, b a, c d} = 3
    quality = (scores["gen_distinct_1"], scores["gen_distinct_2"], scores["gen_repeat_4gram"])
    assert quality == (4 / 10, 3 / 7, 1 / 3)


def test_prompt_mode_nats_per_char_count_the_end_token(trained_nlp):
    """Prompt mode: the NLL covers the completion and EOS, and the characters
    the completion's + 1 for its end (as in a text file's newline)."""
    gen = trained_nlp.get_pipe("gpt_generator")
    egs = examples(trained_nlp, ["The cat sat.", "A dog."])
    old_mode, old_prompt = gen.mode, gen.prompt
    try:
        gen.mode, gen.prompt = "prompt", as_prompt("Say: ")
        stats = gen.lm_stats(egs)
        prompt = lm_model.encode(gen.lm, ["Say: "])[0]
        completions = lm_model.encode(gen.lm, ["The cat sat.", "A dog."])
        rows = lm_model.sequence_rows(gen.lm, [prompt, prompt], completions, add_eos=True)
        nll = gen.model.predict(rows).tolist()
    finally:
        gen.mode, gen.prompt = old_mode, old_prompt
    assert [s[2] for s in stats] == [len("The cat sat.") + 1, len("A dog.") + 1]
    assert [s[0] for s in stats] == pytest.approx(nll, rel=1e-6)


def test_generation_agreement_with_a_classifier():
    @Language.component("keyword_cats")
    def keyword_cats(doc):
        good = "good" in doc.text
        doc.cats = {"POS": float(good), "NEG": float(not good)}
        return doc

    nlp = spacy.blank("en")
    nlp.add_pipe("keyword_cats")
    docs = []
    for label, gens in (("POS", ["a good one", "bad"]), ("NEG", ["awful"])):
        doc = nlp.make_doc("x")
        doc.cats = {"POS": float(label == "POS"), "NEG": float(label == "NEG")}
        doc._.generations = gens
        docs.append(doc)
    assert generation_agreement(nlp, docs, textcat="keyword_cats") == pytest.approx(2 / 3)
    assert generation_agreement(nlp, docs) is None  # no bert_textcat: skipped


def test_long_prompt_truncates_with_warning_or_errors(trained_nlp):
    long_text = " ".join(["The cat sat on the mat."] * 30)
    gen = trained_nlp.get_pipe("gpt_generator")
    gen._warned_long = False
    lm, tokenizer, bos = hf_parts(trained_nlp)
    room = TINY_GPT["n_positions"] - 12  # the context less max_new_tokens
    kept = ([bos] + tokenizer(long_text, add_special_tokens=False)["input_ids"])[-room:]
    with pytest.warns(UserWarning, match="W001"):
        assert trained_nlp(long_text)._.generation == greedy_by_hand(lm, tokenizer, kept, 12)
    gen.on_long_prompt = "error"
    try:
        with pytest.raises(ValueError, match="E203"):
            trained_nlp(long_text)
    finally:
        gen.on_long_prompt = "truncate"


@pytest.mark.parametrize(
    "config,code",
    [
        ({"num_return_sequences": 3}, "E201"),
        ({"prompt": "Say {txt}"}, "E202"),
        ({"prompt": "Say {text!r}"}, "E202"),
        ({"temperature": 0.7}, "E204"),  # sampling setting while greedy
        ({"do_sample": True, "top_p": 0.0}, "E204"),
        ({"max_new_tokens": 0}, "E204"),
        ({"on_long_prompt": "drop"}, "E204"),
        ({"stop": [""]}, "E204"),
        # found by the fuzz suite: such values divide the logits into inf, then NaN probabilities
        ({"do_sample": True, "temperature": 1e-300}, "E204"),
        ({"do_sample": True, "repetition_penalty": 1e-308}, "E204"),
        ({"repetition_penalty": 1e6}, "E204"),
        ({"mode": "seq2seq"}, "E206"),
        ({"guidance_scale": 2.0}, "E204"),  # guidance with nothing to steer away from
        ({"guidance_scale": 0.5, "guidance_prompt": "The"}, "E204"),
        ({"model": {**TINY_GPT, "n_embd": 30, "n_head": 4}}, "E208"),
    ],
)
def test_bad_settings_fail_at_construction(config, code):
    with pytest.raises(ValueError, match=code):
        make_nlp(**config)


def test_bad_runtime_inputs():
    nlp = make_nlp(max_new_tokens=64)  # = the model's whole context
    with pytest.raises(ValueError, match="E204"):
        nlp.initialize(lambda: examples(nlp))
    empty = make_nlp()
    with pytest.raises(ValueError, match="E209"):  # nothing to train the tokenizer on
        empty.initialize(lambda: examples(empty, ["", ""]))
    gen = make_nlp().get_pipe("gpt_generator")
    with pytest.raises(TypeError, match="E101"):
        gen.predict(["a string"])


def test_hf_causal_lm_loading():
    nlp = make_nlp(model={"@architectures": "spacy-gptbert.CausalLM.v1", "name": str(HF_TINY / "fake_gpt2")},
                   max_new_tokens=3)
    nlp.initialize()
    texts = ["Hello world", "", "A longer prompt here"]
    docs = list(nlp.pipe(texts))
    # The same directory loaded by transformers alone, decoded greedily by hand.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(str(HF_TINY / "fake_gpt2"))
    tokenizer = AutoTokenizer.from_pretrained(str(HF_TINY / "fake_gpt2"))
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    expected = [greedy_by_hand(lm, tokenizer, [bos] + tokenizer(t, add_special_tokens=False)["input_ids"], 3)
                for t in texts]
    assert [d._.generation for d in docs] == expected
    bare = make_nlp(model={"@architectures": "spacy-gptbert.CausalLM.v1", "name": str(HF_TINY / "tiny_gpt2")})
    with pytest.raises(ValueError, match="E006"):
        bare.initialize()


def test_template_prompt_fields():
    nlp = spacy.blank("en")
    doc = nlp.make_doc("fine")
    doc.cats = {"POS": 0.9, "NEG": 0.1}
    assert TemplatePrompt("[{label}] {text} ({cats})")(doc) == "[POS] fine (POS: 0.90, NEG: 0.10)"
    assert TemplatePrompt("{label}|", {"POS": "positive"})(doc) == "positive|"
    assert TemplatePrompt("{{literal}} {label}")(nlp.make_doc("x")) == "{literal} "  # no cats: empty label
    assert format_cats({}) == ""
    assert spacy.registry.misc.get("spacy-gptbert.text_prompt.v1")()(doc) == "fine"


def test_converter_text_and_jsonl(tmp_path):
    text = "Para one line a.\nline b.\n\nPara two.\n\n" + "\n".join(f"Line {i}." for i in range(40))
    blocks = generator_data.text_blocks(text, block_chars=60)
    assert blocks[0] == "Para one line a.\nline b.\n\nPara two." and all(len(b) <= 60 for b in blocks)
    train, dev = generator_data.split_train_dev(text, 0.1)
    assert train + dev == text and train.endswith("\n") and 0 < len(dev) < len(text) * 0.2
    src = tmp_path / "data.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Q: hi", "completion": " A: hello"}, {"text": "great", "label": 1}, {"text": "bad", "label": 0},
    ]))
    out = tmp_path / "data.spacy"
    generator_data.convert("jsonl", src, out, label_names={"1": "pos", "0": "neg"})
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert docs[0].text == "Q: hi" and docs[0]._.completion == " A: hello"
    assert docs[1].cats == {"neg": 0.0, "pos": 1.0} and docs[2].cats == {"neg": 1.0, "pos": 0.0}
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
    with pytest.raises(ValueError, match="E302"):
        generator_data.convert("jsonl", tmp_path / "bad.jsonl", out)
    with pytest.raises(ValueError, match="E303"):
        generator_data.convert("csv", src, out)


def test_converter_min_words_drops_short_records(tmp_path):
    src = tmp_path / "data.tsv"
    src.write_text("sentence\tlabel\nfun\t1\na dull , lifeless film\t0\nthe best film of the year\t1\n")
    out = tmp_path / "data.spacy"
    assert generator_data.convert("tsv", src, out, min_words=4) == {"docs": 2}
    from spacy.tokens import DocBin

    texts = [d.text for d in DocBin().from_disk(out).get_docs(spacy.blank("en").vocab)]
    assert texts == ["a dull , lifeless film", "the best film of the year"]


def test_converter_fixed_labels(tmp_path):
    """--labels: one label set and order for every file, even a file without
    some label; a label the list leaves out fails with E305."""
    from spacy.tokens import DocBin

    src = tmp_path / "dev.tsv"
    src.write_text("sentence\tlabel\na dull , lifeless film\t0\n")
    out = tmp_path / "dev.spacy"
    generator_data.main(["tsv", str(src), str(out), "--label-names", "0=neg,1=pos", "--labels", "pos,neg"])
    (doc,) = DocBin().from_disk(out).get_docs(spacy.blank("en").vocab)
    assert list(doc.cats.items()) == [("pos", 0.0), ("neg", 1.0)]
    with pytest.raises(ValueError, match="E305.*'neg'"):
        generator_data.convert("tsv", src, out, label_names={"0": "neg"}, labels=["pos", "other"])


def _cached_kinds(nlp):
    from spacy_gptbert.models import inference_copy

    lm = lm_model.get_lm(nlp.get_pipe("gpt_generator").lm)
    return set(inference_copy._CACHE.get(lm, {}))


def test_prepacked_generation_equals_torch_kernels(trained_nlp):
    """onednn_prepack (default): CPU generation runs a prepacked copy of the
    LM; greedy output is the same as with torch's kernels, batched or not."""
    from spacy_gptbert.models import prepack

    if not prepack.prepack_available():
        pytest.skip("this torch build lacks oneDNN's prepacked kernels")
    gen = trained_nlp.get_pipe("gpt_generator")
    prompts = [" ".join(s.split(" ")[:k]) for s in SENTENCES for k in (1, 2, 3)]
    assert gen.onednn_prepack
    packed = [d._.generation for d in trained_nlp.pipe(prompts, batch_size=8)]
    assert "onednn" in _cached_kinds(trained_nlp)
    # one prompt: one row per decoding step, on torch's kernel
    packed_single = [trained_nlp(p)._.generation for p in prompts]
    gen.onednn_prepack = False
    try:
        plain = [d._.generation for d in trained_nlp.pipe(prompts, batch_size=8)]
    finally:
        gen.onednn_prepack = True
    assert packed == plain == packed_single


def test_prepacked_copy_follows_training():
    from spacy_gptbert.models import prepack

    if not prepack.prepack_available():
        pytest.skip("this torch build lacks oneDNN's prepacked kernels")
    nlp = make_nlp(max_new_tokens=6)
    egs = examples(nlp)
    prompts = [" ".join(s.split(" ")[:2]) for s in SENTENCES]
    trained = train(nlp, egs, steps=5)
    before = [d._.generation for d in trained.pipe(prompts)]
    train_more = Adam(1e-2)
    for _ in range(300):
        trained.update(egs, sgd=train_more)
    after = [d._.generation for d in trained.pipe(prompts)]
    gen = trained.get_pipe("gpt_generator")
    gen.onednn_prepack = False
    assert [d._.generation for d in trained.pipe(prompts)] == after != before  # the copy saw the new weights


def test_config_without_onednn_prepack_loads(trained_nlp, tmp_path):
    """Pipelines saved before the setting existed load with the default."""
    trained_nlp.to_disk(tmp_path / "p")
    cfg_path = tmp_path / "p" / "config.cfg"
    cfg = spacy.util.load_config(cfg_path)
    del cfg["components"]["gpt_generator"]["onednn_prepack"]
    cfg.to_disk(cfg_path)
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("gpt_generator").onednn_prepack is True
    assert loaded(SENTENCES[0][:7])._.generation == trained_nlp(SENTENCES[0][:7])._.generation


def test_scoring_names_keep_their_old_import_path():
    """The scorer and metrics live in pipeline/generator_scoring.py; the names
    pipeline.generator exported before still work."""
    from spacy_gptbert.pipeline import generator, generator_scoring

    for name in ("generator_score", "generation_agreement", "generation_quality", "generated_texts",
                 "make_generator_scorer", "find_textcat", "SCORE_KEYS", "QUALITY_KEYS"):
        assert getattr(generator, name) is getattr(generator_scoring, name), name
    assert spacy.registry.scorers.get("spacy-gptbert.generator_scorer.v1")() is generator_scoring.generator_score
