# hyperexp — every target sets up .venv first (once; again only when pyproject.toml changes).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ARGS   ?=
PORT   ?= 5000
HOST   ?= 127.0.0.1
SWEEP  := data=subject1,subject2,hyperaligned

.DEFAULT_GOAL := help
.PHONY: help install train sweep report reports ui screenshots test test-slow lint smoke bench clean

help:  ## list the targets with the values they use (set them like: make ui PORT=5001)
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) \
		| sed -e 's|$$(HOST)|$(HOST)|g' -e 's|$$(PORT)|$(PORT)|g' -e 's|$$(VENV)|$(VENV)|g' -e 's|$$(SWEEP)|$(SWEEP)|g' \
		| awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,parallel,slurm,search]'
	@touch $(STAMP)

install: $(STAMP)  ## create $(VENV) and install the project with its test tools

train: $(STAMP)  ## the default run (simulated experiment, published recipe); Hydra overrides in ARGS="..."
	$(PY) -m hyperexp.train $(ARGS)

sweep: $(STAMP)  ## a multirun; without ARGS: $(SWEEP)
	$(PY) -m hyperexp.train -m $(or $(ARGS),$(SWEEP))

report: $(STAMP)  ## comparison report of a sweep: make report TARGET=outputs/multirun/<date>/<time>
	$(PY) -m hyperexp.report $(TARGET)

reports: $(STAMP)  ## rerun the sweeps of every report in docs/ and rewrite them (hours; make reports ARGS=--reduced: minutes, labelled)
	$(PY) tools/make_reports.py $(ARGS)

ui: $(STAMP)  ## MLflow UI over runs/ on http://$(HOST):$(PORT)
	@echo "MLflow UI: http://$(HOST):$(PORT)/#/experiments?workflowType=machine_learning  (Ctrl-C stops it)"
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///runs/mlflow.db --host $(HOST) --port $(PORT)

screenshots: $(STAMP)  ## MLflow UI screenshots into docs/ui/ (a demo store in outputs/ui-demo; needs apt-get install chromium)
	$(PY) tools/ui_screenshots.py --store outputs/ui-demo --out docs/ui

test: $(STAMP)  ## the test suite (excludes tests marked slow)
	$(PY) -m pytest

lint: $(STAMP)  ## ruff: style and formatting (what CI checks)
	$(VENV)/bin/ruff check hyperexp tests bench tools
	$(VENV)/bin/ruff format --check hyperexp tests bench tools

test-slow: $(STAMP)  ## only the slow tests (full-size generator, longer runs)
	$(PY) -m pytest -m slow

smoke: $(STAMP)  ## a small run that visibly learns and a two-job multirun (about 2 minutes)
	$(PY) -m hyperexp.train experiment=smoke trainer.progress=false
	$(PY) -m hyperexp.train -m experiment=smoke trainer.progress=false data=subject1,subject2

bench: $(STAMP)  ## benchmarks (print ratios against baselines measured in the same run)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:  ## remove outputs, runs and generated data (keeps .venv)
	rm -rf outputs/* runs/* data/ .pytest_cache
	@touch outputs/.gitkeep runs/.gitkeep
