# make run  : create .venv, install mlp-lab, train the baseline on FashionMNIST
# make test : create .venv, install mlp-lab with its dev, track (MLflow), search (Optuna) and ray extras, run the whole test suite
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install run test test-fast clean

$(BIN)/mlp-lab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,track,search,ray]'
	touch $@

install: $(BIN)/mlp-lab

run: install
	$(BIN)/mlp-lab run configs/baseline.yaml

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) .pytest_cache
