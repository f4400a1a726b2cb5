"""Prompts for gpt_generator: Doc -> prompt string.

A prompt is either a template string with the fields {text}, {label} (the top
class of doc.cats) and {cats} (all classes with scores), or any callable
Doc -> str registered with @spacy.registry.misc. Templates are checked when
the component is built, so a typo fails at construction, not mid-pipe.

A prompt callable may carry `uses_text = True` to say the Doc text is part of
the prompt; prompt-mode training then takes the completion from an extension
(doc._.completion) instead of from the Doc text.
"""
import string
from typing import Callable, Dict, List, Optional, Union

from spacy.tokens import Doc
from spacy.util import registry

from ..errors import Errors

TEMPLATE_FIELDS = ("text", "label", "cats")
PromptFunc = Callable[[Doc], str]


def template_fields(template: str) -> List[str]:
    """Field names used in `template`; E202 for unknown ones, E204 if malformed."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(Errors.E204.format(setting="prompt", value=template, why=f"{err}. Escape "
                                            "literal braces as '{{' and '}}'.")) from None
    fields = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ValueError(Errors.E202.format(field=name, template=template, fields=", ".join(
                "{" + f + "}" for f in TEMPLATE_FIELDS)))
        fields.append(name)
    return fields


def top_label(cats: Dict[str, float]) -> str:
    """The class with the highest score; '' when the doc has no cats."""
    return max(cats, key=cats.get) if cats else ""


def format_cats(cats: Dict[str, float]) -> str:
    """'POSITIVE: 0.93, NEGATIVE: 0.07', best first."""
    return ", ".join(f"{label}: {score:.2f}" for label, score in sorted(cats.items(), key=lambda kv: -kv[1]))


class TemplatePrompt:
    """Doc -> prompt from a template string (validated at construction)."""

    def __init__(self, template: str, label_names: Optional[Dict[str, str]] = None):
        self.template = template
        self.fields = template_fields(template)
        self.uses_text = "text" in self.fields
        self.label_names = dict(label_names or {})

    def __call__(self, doc: Doc) -> str:
        values = {}
        if "text" in self.fields:
            values["text"] = doc.text
        if "label" in self.fields:
            values["label"] = prompt_label(self, doc)
        if "cats" in self.fields:
            values["cats"] = format_cats(doc.cats)
        return self.template.format(**values)

    def __repr__(self) -> str:
        return f"TemplatePrompt({self.template!r})"


def as_prompt(prompt: Union[str, PromptFunc]) -> PromptFunc:
    """A template string or a callable -> a callable (templates validated now)."""
    if isinstance(prompt, str):
        return TemplatePrompt(prompt)
    if not callable(prompt):
        raise ValueError(Errors.E204.format(setting="prompt", value=prompt,
                                            why="give a template string or a registered prompt function."))
    return prompt


def prompt_label(prompt: PromptFunc, doc: Doc) -> str:
    """The doc's top label as the prompt names it (a template's label_names),
    so that "1" and "POSITIVE" can be one label; '' without doc.cats."""
    label = top_label(doc.cats)
    return (getattr(prompt, "label_names", None) or {}).get(label, label)


def uses_text(prompt: PromptFunc) -> bool:
    return bool(getattr(prompt, "uses_text", False))


@registry.misc("spacy-gptbert.template_prompt.v1")
def make_template_prompt(template: str, label_names: Optional[Dict[str, str]] = None) -> PromptFunc:
    """A template prompt whose {label} can be renamed, e.g. label_names =
    {"1": "positive", "0": "negative"} for data with numeric labels."""
    return TemplatePrompt(template, label_names)


@registry.misc("spacy-gptbert.text_prompt.v1")
def make_text_prompt() -> PromptFunc:
    """The Doc text itself: continue the text."""
    return TemplatePrompt("{text}")
