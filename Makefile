# Two commands do everything on a fresh clone:
#   make demo   synthetic tiles -> store -> short training -> evaluation -> report (runs/demo/report.md)
#   make test   ruff + the whole pytest suite (CPU; Triton kernels under TRITON_INTERPRET=1)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.srcaco2-installed
# CPU machines get the pinned CPU wheel; machines with an NVIDIA driver get the default (CUDA) build.
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo torch; else echo torch==2.13.0; fi)

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/srtrain demo --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m benchmarks.build
	$(BIN)/python -m benchmarks.loader
	$(BIN)/python -m benchmarks.kernels
	$(BIN)/python -m benchmarks.train_step

clean:
	rm -rf $(VENV) runs .pytest_cache
