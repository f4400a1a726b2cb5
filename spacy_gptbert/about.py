__title__ = "spacy-gptbert"
__version__ = "0.1.0"
