"""The gpt_generator's scores (spacy-gptbert.generator_scorer.v1): perplexity,
bits and nats per character from the LM statistics GPTGenerator.lm_stats
computes, the diversity of the generated texts (distinct n-grams, repeated
4-grams) and, with a bert_textcat in the pipeline, the agreement: how often
the generated text is classified as the label that was asked for."""
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..extensions import register_extensions
from .prompts import top_label

__all__ = ["generator_score", "generation_agreement", "generation_quality", "generated_texts", "find_textcat",
           "make_generator_scorer", "QUALITY_KEYS", "SCORE_KEYS"]

register_extensions()  # doc._.generation(s)

QUALITY_KEYS = ("gen_distinct_1", "gen_distinct_2", "gen_repeat_4gram")
SCORE_KEYS = ("gen_score", "gen_loss_per_char", "gen_bpc", "gen_ppl", "gen_agreement") + QUALITY_KEYS


@registry.scorers("spacy-gptbert.generator_scorer.v1")
def make_generator_scorer():
    return generator_score


def generator_score(
    examples: Iterable[Example], *, lm_stats: Optional[Sequence[Tuple[float, int, int]]] = None,
    nlp: Optional[Language] = None, textcat: Optional[str] = None, **kwargs,
) -> Dict[str, Any]:
    """gen_ppl, gen_loss_per_char (nats/char), gen_bpc (bits/char), gen_score
    (exp(-nats/char)) from lm_stats = [(nll, n_tokens, n_chars) per example],
    which GPTGenerator.score computes with its model; gen_distinct_1,
    gen_distinct_2 and gen_repeat_4gram from the predicted docs' generations
    (generation_quality); gen_agreement when an nlp with a bert_textcat is
    given. Missing inputs give None, never an error."""
    examples = list(examples)
    scores: Dict[str, Any] = {key: None for key in SCORE_KEYS}
    scores.update(generation_quality(generated_texts(eg.predicted for eg in examples)))
    if lm_stats:
        nll = sum(s[0] for s in lm_stats)
        n_tokens = sum(s[1] for s in lm_stats)
        n_chars = sum(s[2] for s in lm_stats)
        if n_tokens:
            scores["gen_ppl"] = math.exp(min(nll / n_tokens, 700.0))
        if n_chars:
            scores["gen_loss_per_char"] = nll / n_chars
            scores["gen_bpc"] = nll / n_chars / math.log(2)
            scores["gen_score"] = math.exp(-nll / n_chars)
    if nlp is not None:
        scores["gen_agreement"] = generation_agreement(nlp, [eg.predicted for eg in examples], textcat)
    return scores


def generated_texts(docs: Iterable[Doc]) -> List[str]:
    """Every generation of the docs: doc._.generations (all
    num_return_sequences of them), else doc._.generation when set."""
    texts: List[str] = []
    for doc in docs:
        if doc._.generations is not None:
            texts.extend(doc._.generations)
        elif doc._.generation is not None:
            texts.append(doc._.generation)
    return texts


def ngrams(words: Sequence[str], n: int) -> List[Tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def generation_quality(texts: Sequence[str]) -> Dict[str, Optional[float]]:
    """Diversity of generated texts, on whitespace tokens (str.split: case and
    punctuation kept as generated, so "film" and "film." differ):
    gen_distinct_n = distinct n-grams / all n-grams, counted over all texts
        together, n-grams within one text (Li et al., 2016); 1.0 means no
        n-gram occurs twice anywhere, low values mean the texts repeat
        themselves or each other. None when no text has n words.
    gen_repeat_4gram = share of texts in which some 4-gram occurs twice or
        more (degenerate loops); None when there are no texts."""
    words = [text.split() for text in texts]
    scores: Dict[str, Optional[float]] = {}
    for n in (1, 2):
        grams = [gram for w in words for gram in ngrams(w, n)]
        scores[f"gen_distinct_{n}"] = len(set(grams)) / len(grams) if grams else None
    repeats = [len(set(ngrams(w, 4))) < len(ngrams(w, 4)) for w in words]
    scores["gen_repeat_4gram"] = sum(repeats) / len(repeats) if repeats else None
    return scores


def find_textcat(nlp: Language) -> Optional[str]:
    for name in nlp.pipe_names:
        if nlp.get_pipe_meta(name).factory == "bert_textcat":
            return name
    return None


def generation_agreement(nlp: Language, docs: Iterable[Doc], textcat: Optional[str] = None) -> Optional[float]:
    """Share of generations that `textcat` (default: the first bert_textcat)
    classifies as the label asked for, i.e. the top class of the doc's cats
    when it was generated. None when there is no textcat or nothing to judge."""
    textcat = textcat or find_textcat(nlp)
    if textcat is None:
        return None
    asked, texts = [], []
    for doc in docs:
        label = top_label(doc.cats)
        for text in doc._.generations or []:
            if label:
                asked.append(label)
                texts.append(text)
    if not texts:
        return None
    # Run only the components up to the textcat (e.g. its encoder), never the generator.
    upto = nlp.pipe_names[: nlp.pipe_names.index(textcat) + 1]
    with nlp.select_pipes(enable=upto):
        judged = [top_label(doc.cats) for doc in nlp.pipe(texts)]
    return sum(a == j for a, j in zip(asked, judged)) / len(texts)
