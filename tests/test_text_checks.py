"""text_checks: SafeTokenizer by its registered name, in fresh processes."""
import json
import subprocess
import sys

CREATE_AND_SAVE = """
import json, sys
import spacy
assert "spacy_gptbert" not in sys.modules
nlp = spacy.blank("en", config={"nlp": {"tokenizer": {"@tokenizers": "spacy-gptbert.SafeTokenizer.v1"}}})
doc = nlp("lone \\ud800 surrogate")
nlp.to_disk(sys.argv[1])
print(json.dumps({"tokenizer": type(nlp.tokenizer).__name__, "text": doc.text}))
"""

LOAD = """
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
print(json.dumps({"tokenizer": type(nlp.tokenizer).__name__, "text": nlp("a \\udfff b").text}))
"""


def _run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_safe_tokenizer_by_name_in_a_fresh_process(tmp_path):
    """spaCy finds spacy-gptbert.SafeTokenizer.v1 through its entry point
    (no import of spacy_gptbert first), and a pipeline saved with it loads
    in another fresh process."""
    path = str(tmp_path / "pipeline")
    assert _run(CREATE_AND_SAVE, path) == {"tokenizer": "SafeTokenizer", "text": "lone \ufffd surrogate"}
    assert _run(LOAD, path) == {"tokenizer": "SafeTokenizer", "text": "a \ufffd b"}
