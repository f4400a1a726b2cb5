"""Every Doc extension the package uses, registered in one place.

    bert_pooled      bert_encoder: {"cls": vector, "mean": vector, "doc": "cls" | "mean"}
    bert_wordpieces  bert_encoder with store_wordpieces: the wordpiece outputs
    generation       gpt_generator: the first generated text
    generations      gpt_generator: all num_return_sequences generated texts
    completion       gpt_generator's training data in prompt mode: the text
                     to learn after the prompt (training/generator_data.py)

Each module that reads or writes one calls register_extensions() when it is
imported; registering again is a no-op, and an extension someone else set
first (e.g. with a getter) is left as it is. All default to None.
"""
from spacy.tokens import Doc

ENCODER_EXTENSIONS = ("bert_pooled", "bert_wordpieces")
GENERATOR_EXTENSIONS = ("generation", "generations", "completion")
DOC_EXTENSIONS = ENCODER_EXTENSIONS + GENERATOR_EXTENSIONS


def register_extensions(names=DOC_EXTENSIONS) -> None:
    """Register every Doc extension in `names` that is not yet registered
    (default None). gpt_generator also registers the extension its
    completion_attr names, so a DocBin's stored values for it can be read."""
    for name in names:
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
