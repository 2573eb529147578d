# Two commands do everything on a fresh clone:
#   make demo   synthetic tiles -> store -> short training -> evaluation -> report (runs/demo/report.md)
#   make test   ruff (lint, format) + doc links + the whole pytest suite (CPU; Triton under TRITON_INTERPRET=1)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.srcaco2-installed
# torch is chosen by .ci/select_torch.py: the CPU build from the PyTorch CPU index on machines without
# an NVIDIA driver, the default (CUDA) build where `nvidia-smi -L` lists a GPU, the default index when
# the PyTorch index cannot be reached. Override with TORCH_SPEC=torch==X.Y.Z and/or TORCH_INDEX_URL=URL.
export TORCH_SPEC TORCH_INDEX_URL
# setuptools warns on every editable install of a flat layout that folders named like the package may
# shadow it; in a source checkout that is the point, so `make setup` filters that one note.

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/select_torch.py
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python .ci/select_torch.py --python $(BIN)/python -- -q
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e '.[dev,bioimageio]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/srtrain demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/check_doc_links.py --strict
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python .ci/check_doc_links.py --strict

bench: $(STAMP)
	$(BIN)/python -m srcaco2.benchmarks.build
	$(BIN)/python -m srcaco2.benchmarks.loader
	$(BIN)/python -m srcaco2.benchmarks.kernels
	$(BIN)/python -m srcaco2.benchmarks.train_step
	$(BIN)/python -m srcaco2.benchmarks.eval_runs
	$(BIN)/python -m srcaco2.benchmarks.synth_realism
	$(BIN)/python -m srcaco2.benchmarks.train_health

clean:
	rm -rf $(VENV) runs .pytest_cache
