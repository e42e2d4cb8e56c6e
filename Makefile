# make run  : create .venv, install mlp-lab, train the baseline on FashionMNIST
# make lint : ruff check and ruff format --check (CI runs it before the tests)
# make test : create .venv, install mlp-lab with its dev, track (MLflow), search (Optuna), app (Streamlit) and ray extras, run the whole test suite
# make app  : the same install, train the baseline, MNIST and robust MNIST models if they are not there yet, then serve the web app (it opens on the robust one)
# make image: the container image (Dockerfile): the app and its MLflow server; docs/guide/container.md
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

# MNIST's IDX files, used when this folder exists (this project's own machines have it); anywhere
# else torchvision downloads MNIST into data/ on first use. make app MNIST_DIR=~/mnist names yours.
MNIST_DIR ?= ../shared/data/mnist

.PHONY: install run test test-fast lint app image clean

$(BIN)/mlp-lab: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,track,search,app,ray]'
	touch $@

install: $(BIN)/mlp-lab

run: install
	$(BIN)/mlp-lab run configs/baseline.yaml

test: install
	$(BIN)/python -m pytest -n auto

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: install
	$(BIN)/python -m pytest -n auto -m "not slow"

runs/baseline/summary.json: | install
	$(BIN)/mlp-lab run configs/baseline.yaml

runs/mnist/summary.json: | install
	$(BIN)/mlp-lab run configs/mnist.yaml $(if $(wildcard $(MNIST_DIR)),--data-dir $(MNIST_DIR))

runs/mnist_robust/summary.json: | install
	$(BIN)/mlp-lab run configs/mnist_robust.yaml $(if $(wildcard $(MNIST_DIR)),--data-dir $(MNIST_DIR))

app: install runs/baseline/summary.json runs/mnist/summary.json runs/mnist_robust/summary.json
	$(BIN)/mlp-lab app --runs runs

# The image: IMAGE names it, TORCH_INDEX_URL picks torch's build (https://download.pytorch.org/whl/cpu:
# CPU only, several GB smaller), CONTAINER the tool (podman works too), IMAGE_FLAGS anything more.
IMAGE ?= mlp-lab
TORCH_INDEX_URL ?= https://pypi.org/simple
CONTAINER ?= docker
IMAGE_FLAGS ?=

image:
	$(CONTAINER) build -t $(IMAGE) --build-arg TORCH_INDEX_URL=$(TORCH_INDEX_URL) $(IMAGE_FLAGS) .

clean:
	rm -rf $(VENV) .pytest_cache
