# README's two commands: `make demo` and `make test`. Both install into $(VENV) on first use.
#   TORCH_SPEC  the torch requirement installed before the package (default: the pinned CPU-friendly
#               release; on a CUDA node use e.g. TORCH_SPEC="torch==2.13.0" TORCH_INDEX=<your index>)
#   TORCH_INDEX extra pip arguments for torch, e.g. "--index-url https://<mirror>/whl/cu126"
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
DEMO_DIR ?= demo-output
# pytest workers: the cores, at most 4 (each worker imports torch; groups in tests/conftest.py)
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sae-store demo --out $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check sae_store cli tests benchmarks
	$(VENV)/bin/ruff format --check sae_store cli

typecheck: $(STAMP)
	$(VENV)/bin/mypy sae_store cli

test: lint typecheck
	$(PY) -m pytest tests -n $(TEST_WORKERS)

bench: $(STAMP)
	$(PY) benchmarks/run.py --update BENCHMARKS.md

clean:
	rm -rf $(DEMO_DIR) bench-output .pytest_cache .mypy_cache .ruff_cache
