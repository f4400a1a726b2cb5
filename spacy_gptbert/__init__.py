"""spacy-gptbert: BERT encoders and classifiers and GPT generators as spaCy components.

Importing the package registers the components, architectures and scorers;
spaCy also finds them through the entry points in setup.cfg.
"""
from .about import __version__
from .models import architectures  # noqa: F401  (registers architectures)
from .models.encoder import EncoderOutput
from .models.hf_loading import resolve_model_dir
from .pipeline.encoder import BertEncoder
from .pipeline.textcat import BertTextCategorizer
from .training import batchers  # noqa: F401  (registers batchers)

__all__ = ["__version__", "BertEncoder", "BertTextCategorizer", "EncoderOutput", "resolve_model_dir"]
