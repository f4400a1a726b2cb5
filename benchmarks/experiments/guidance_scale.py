"""Classifier-free guidance on a trained label-conditioned generator: for each
guidance scale, generate for SST-2 dev sentences (each prompted with its gold
label) with the guidance prompt of configs/generator_conditional_quick.cfg
(the template with the other label), set at load time, and report how often
a classifier labels the text as asked (agreement) and distinct-2:

    python benchmarks/experiments/guidance_scale.py GENERATOR CLASSIFIER
        [--scales 1,1.5,2,3] [--start 0] [--n 200] [--dev corpus/sst2/dev.spacy]

GENERATOR: a pipeline with a prompt-mode gpt_generator (e.g.
training/generator_routes/gpt_quick/model-last); CLASSIFIER: a pipeline with
bert_textcat. The quick configs' scale (2.0) was chosen with --start 200 --n 200.
Scale 1.0 is generation without guidance.
"""
import argparse
import time

import spacy
from spacy.tokens import DocBin

GUIDANCE_PROMPT = {
    "@misc": "spacy-gptbert.template_prompt.v1", "template": "{label} review: ",
    "label_names": {"0": "positive", "1": "negative", "NEGATIVE": "positive", "POSITIVE": "negative"},
}


def top(cats):
    return max(cats, key=cats.get)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generator")
    parser.add_argument("classifier")
    parser.add_argument("--scales", default="1,1.5,2,3")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--dev", default="corpus/sst2/dev.spacy")
    args = parser.parse_args()
    classifier = spacy.load(args.classifier)
    for scale in [float(x) for x in args.scales.split(",")]:
        settings = {"guidance_scale": scale}
        if scale != 1.0:
            settings["guidance_prompt"] = GUIDANCE_PROMPT
        nlp = spacy.load(args.generator, config={"components": {"gpt_generator": settings}})
        dev = list(DocBin().from_disk(args.dev).get_docs(nlp.vocab))[args.start:args.start + args.n]
        docs = []
        for ref in dev:
            doc = nlp.make_doc(ref.text)
            doc.cats = dict(ref.cats)  # the prompt reads the gold label
            docs.append(doc)
        start = time.time()
        texts = [doc._.generation for doc in nlp.get_pipe("gpt_generator").pipe(docs, batch_size=64)]
        agreement = sum(top(c.cats) == top(r.cats) for c, r in zip(classifier.pipe(texts), dev)) / len(dev)
        bigrams = [tuple(t.split()[i:i + 2]) for t in texts for i in range(len(t.split()) - 1)]
        print(f"scale {scale}: dev[{args.start}:{args.start + len(dev)}] agreement {agreement:.3f} "
              f"distinct-2 {len(set(bigrams)) / max(1, len(bigrams)):.3f} ({time.time() - start:.0f} s) "
              f"| {top(dev[0].cats)}: {texts[0]}")


if __name__ == "__main__":
    main()
