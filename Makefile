# One command sets up a fresh machine and runs the tests: `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test demo lint install clean

test: $(VENV)/.installed
	$(BIN)/ruff check residual spaces search tests
	$(BIN)/pytest

# A real search on the embedded defaults (local Ray, SQLite MLflow, offline digits data).
demo: $(VENV)/.installed
	$(BIN)/resnet-search run paper-table1 --scale smoke --epochs 6 --name demo

install: $(VENV)/.installed

# TORCH_INDEX=https://download.pytorch.org/whl/cpu: PyTorch's CPU-only wheels, for machines
# without a GPU (PyPI's wheels bring the CUDA libraries).
TORCH_INDEX ?=

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX) torch torchvision)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

lint: $(VENV)/.installed
	$(BIN)/ruff check residual spaces search tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
