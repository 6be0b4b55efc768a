# hyperexp — every target sets up .venv first (once; again only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
PORT   ?= 5000
HOST   ?= 127.0.0.1

.DEFAULT_GOAL := help
.PHONY: help install train sweep report ui test test-slow lint smoke bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,parallel,slurm,search]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project with its test tools

train: $(STAMP)  ## the default run (simulated experiment, published recipe); Hydra overrides in ARGS="..."
	$(PY) -m hyperexp.train $(ARGS)

sweep: $(STAMP)  ## a multirun; default: the three data variants of the paper
	$(PY) -m hyperexp.train -m $(or $(ARGS),data=subject1,subject2,hyperaligned)

report: $(STAMP)  ## comparison report of a sweep: make report TARGET=outputs/multirun/<date>/<time>
	$(PY) -m hyperexp.report $(TARGET)

ui: $(STAMP)  ## MLflow UI over runs/ on http://$(HOST):$(PORT)
	@echo "MLflow UI: http://$(HOST):$(PORT)  (Ctrl-C stops it)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///runs/mlflow.db --host $(HOST) --port $(PORT)

test: $(STAMP)  ## the test suite (excludes tests marked slow)
	$(PY) -m pytest

lint: $(STAMP)  ## ruff: style and formatting (what CI checks)
	$(VENV)/bin/ruff check hyperexp tests bench
	$(VENV)/bin/ruff format --check hyperexp tests bench

test-slow: $(STAMP)  ## only the slow tests (full-size generator, longer runs)
	$(PY) -m pytest -m slow

smoke: $(STAMP)  ## a tiny train and a tiny multirun (< 2 minutes)
	$(PY) -m hyperexp.train experiment=smoke trainer.progress=false
	$(PY) -m hyperexp.train -m experiment=smoke trainer.progress=false data=subject1,subject2

bench: $(STAMP)  ## benchmarks (print ratios against baselines measured in the same run)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:  ## remove outputs, runs and generated data (keeps .venv)
	rm -rf outputs/* runs/* data/ .pytest_cache
	@touch outputs/.gitkeep runs/.gitkeep
