# `make run` and `make test` each set up everything they need on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# The reference run: the original project's model and hyper-parameters, in a new run folder.
REFERENCE_RUN := runs/reference-mlp-$(shell date +%Y%m%d-%H%M%S)
RESULTS       := results

.PHONY: run test check system-deps lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

system-deps:
	scripts/system-deps.sh

run: $(STAMP)
	$(BIN)/digitlab data fetch
	$(BIN)/digitlab train --model mlp --epochs 30 --batch-size 64 --augment --out $(REFERENCE_RUN)
	$(BIN)/digitlab evaluate $(REFERENCE_RUN)/model.keras --dataset mnist --out $(RESULTS)
	cp $(REFERENCE_RUN)/config.json $(REFERENCE_RUN)/history.csv $(REFERENCE_RUN)/summary.json \
	   $(REFERENCE_RUN)/curves.png $(REFERENCE_RUN)/augmentation.png $(REFERENCE_RUN)/model.keras $(RESULTS)/
	@echo "reference run: $(REFERENCE_RUN); report and figures: $(RESULTS)/"

test: $(STAMP) system-deps
	$(BIN)/python -m pytest

# What CI enforces besides the tests; .pre-commit-config.yaml runs the same before a commit.
lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

# The quick loop before pushing: lint and every test not marked slow.
check: lint system-deps
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
