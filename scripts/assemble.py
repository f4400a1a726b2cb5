"""Combine a trained bert_textcat pipeline and a trained gpt_generator pipeline
into one pipeline: the classifier sets doc.cats, then the generator writes a
continuation conditioned on the predicted label.

    python scripts/assemble.py TEXTCAT_DIR GENERATOR_DIR OUTPUT_DIR [--name NAME] [--version V]

The generator is sourced from its own trained pipeline (`nlp.add_pipe(...,
source=...)`), so its weights, tokenizer and settings come along unchanged.
"""
import argparse
from pathlib import Path

import spacy


def assemble(textcat_dir: Path, generator_dir: Path, output_dir: Path, *, name: str = "sst2_demo",
             version: str = "0.1.0", generator: str = "gpt_generator") -> Path:
    nlp = spacy.load(textcat_dir)
    gen_nlp = spacy.load(generator_dir)
    if generator not in gen_nlp.pipe_names:
        raise SystemExit(f"{generator_dir} has no component '{generator}' (it has {gen_nlp.pipe_names})")
    nlp.add_pipe(generator, source=gen_nlp, last=True)
    nlp.meta.update({
        "name": name,
        "version": version,
        "description": "bert_textcat (label and probability) + gpt_generator (a continuation "
                       "conditioned on the predicted label), built with spacy-gptbert",
    })
    # Performance figures of the textcat-only pipeline would be misleading here;
    # `spacy evaluate` writes the combined pipeline's figures.
    nlp.meta.pop("performance", None)
    output_dir = Path(output_dir)
    nlp.to_disk(output_dir)
    print(f"Wrote {nlp.pipe_names} to {output_dir}")
    return output_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("textcat_dir", type=Path)
    parser.add_argument("generator_dir", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--name", default="sst2_demo")
    parser.add_argument("--version", default="0.1.0")
    args = parser.parse_args()
    assemble(args.textcat_dir, args.generator_dir, args.output_dir, name=args.name, version=args.version)


if __name__ == "__main__":
    main()
