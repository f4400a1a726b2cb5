# Benchmarks (see benchmarks/README.md). Run on a quiet machine: on a 2-core
# CPU a second torch job makes every figure several times slower.
PYTHON ?= .venv/bin/python
export HF_HUB_OFFLINE ?= 1
QUICK = benchmarks/results/quick

.PHONY: bench bench-full

# Quick versions of the inference, memory, scaling and textcat benchmarks
# (5m50s on the 2-core development machine, 2026-11-24). JSON in $(QUICK)/.
bench:
	mkdir -p $(QUICK)
	$(PYTHON) benchmarks/encoder_inference.py --n-short 512 --n-long 8 --short-batch-sizes 64 \
		--long-batch-sizes 4 --repeats 2 --output $(QUICK)/encoder_inference.json
	$(PYTHON) benchmarks/memory.py --n-docs 20000 --every 5000 --output $(QUICK)/memory_bert_encoder.json
	$(PYTHON) benchmarks/scaling.py --lengths 16,256,4096 --batch-sizes 1,16 --words 8192 --repeats 1 \
		--output $(QUICK)/scaling.json
	$(PYTHON) benchmarks/textcat.py --bert-steps 150 --spacy-epochs 1 --train-limit 8000 \
		--output $(QUICK)/textcat.json

# The full versions behind the tables in docs/performance.md (about 60-75 minutes).
bench-full:
	$(PYTHON) benchmarks/encoder_inference.py
	$(PYTHON) benchmarks/memory.py --n-docs 100000
	$(PYTHON) benchmarks/scaling.py
	$(PYTHON) benchmarks/textcat.py
