"""Compare the text-classification figures of several `spacy evaluate` outputs.

    python scripts/compare_metrics.py OUT.json NAME=metrics.json [NAME=metrics.json ...]

Prints a table (the first file is the baseline) and writes the figures and the
differences to OUT.json.
"""
import sys
from pathlib import Path

import srsly
from wasabi import msg, table

KEYS = ("cats_acc", "cats_score", "cats_macro_f", "cats_macro_auc")


def compare(output: Path, named: list) -> dict:
    runs = {}
    for item in named:
        name, _, path = item.partition("=")
        scores = srsly.read_json(path)
        runs[name] = {k: scores.get(k) for k in KEYS if scores.get(k) is not None}
    base_name = next(iter(runs))
    base = runs[base_name]
    rows = []
    for name, scores in runs.items():
        for key, value in scores.items():
            delta = value - base[key] if key in base else None
            rows.append([name, key, f"{value:.4f}", "" if name == base_name or delta is None else f"{delta:+.4f}"])
    msg.divider(f"compared with {base_name}")
    print(table(rows, header=["run", "metric", "value", "difference"], divider=True))
    result = {"baseline": base_name, "runs": runs,
              "differences": {name: {k: v - base[k] for k, v in s.items() if k in base}
                              for name, s in runs.items() if name != base_name}}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    srsly.write_json(output, result)
    return result


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    compare(Path(sys.argv[1]), sys.argv[2:])
