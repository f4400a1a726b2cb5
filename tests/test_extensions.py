"""spacy_gptbert.extensions: one place registers every Doc extension."""
from spacy.tokens import Doc

from spacy_gptbert.extensions import DOC_EXTENSIONS, register_extensions


def test_every_extension_the_package_uses_is_registered_with_default_none():
    register_extensions()
    assert DOC_EXTENSIONS == ("bert_pooled", "bert_wordpieces", "generation", "generations", "completion")
    for name in DOC_EXTENSIONS:
        default, method, getter, setter = Doc.get_extension(name)
        assert (default, method, getter, setter) == (None, None, None, None), name


def test_registering_again_keeps_what_is_there():
    register_extensions()
    before = {name: Doc.get_extension(name) for name in DOC_EXTENSIONS}
    register_extensions()
    assert {name: Doc.get_extension(name) for name in DOC_EXTENSIONS} == before


def test_an_extension_set_by_someone_else_first_is_left_alone():
    original = Doc.get_extension("completion")
    Doc.remove_extension("completion")
    try:
        Doc.set_extension("completion", getter=lambda doc: "theirs")
        register_extensions()  # no E090 (already set), no override
        assert Doc.get_extension("completion")[2](None) == "theirs"
    finally:
        Doc.remove_extension("completion")
        Doc.set_extension("completion", default=original[0], method=original[1], getter=original[2],
                          setter=original[3])

