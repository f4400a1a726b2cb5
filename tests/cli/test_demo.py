"""`python -m spacy_gptbert demo --metrics`: which figures of a `spacy evaluate` JSON it prints."""
import json

import spacy
from typer.testing import CliRunner

from spacy_gptbert.cli.app import app


def test_demo_prints_generation_quality_metrics(tmp_path):
    spacy.blank("en").to_disk(tmp_path / "nlp")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"gen_loss_per_char": 1.25, "gen_distinct_1": 0.5, "gen_distinct_2": 0.875,
                                   "gen_repeat_4gram": 0.0625, "gen_bpc": 1.8, "gen_agreement": None}))
    result = CliRunner().invoke(app, ["demo", str(tmp_path / "nlp"), "--metrics", str(metrics)])
    assert result.exit_code == 0, result.output
    printed = result.output.split("metrics", 1)[1]
    rows = [line.split() for line in printed.splitlines() if line.startswith("gen_")]
    assert rows == [["gen_loss_per_char", "1.2500"], ["gen_distinct_1", "0.5000"],
                    ["gen_distinct_2", "0.8750"], ["gen_repeat_4gram", "0.0625"]]
