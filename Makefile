# Two commands do all the set-up on a fresh machine:
#   make demo   — creates .venv, installs aha, runs the R1-Zero miniature (`aha zero`)
#   make test   — creates .venv with the dev extras, runs the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU wheel of torch first, so no resolver ever pulls a CUDA build; override on GPU machines.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/python -m aha.kernels  # compiles the CPU decode kernel once (or says why it cannot)
	touch $@

demo: $(VENV)/.installed
	$(BIN)/aha zero

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

test-all: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m ""

bench: $(VENV)/.installed
	$(BIN)/python bench/verify_speed.py
	$(BIN)/python bench/limits.py --threads 1
	$(BIN)/python bench/update_layouts.py
	$(BIN)/python bench/vs_trl.py
	$(BIN)/python bench/vs_trl_sft.py

clean:
	rm -rf $(VENV) runs
