# One command sets up a fresh machine and runs the tests: `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test demo lint install clean

# Two test processes (pytest-xdist), each module's tests in one of them (its fixtures, a smoke
# search say, made once): most tests wait on Ray, MLflow or a subprocess part of the time.
# The slowest modules start first (tests/conftest.py's order; xdist would otherwise hand out
# the modules with the most tests first, and the longest, bench.scale's one test, last).
TEST_WORKERS ?= 2

test: $(VENV)/.installed
	$(BIN)/ruff check residual spaces search tests
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# A real search on the embedded defaults (local Ray, SQLite MLflow, offline digits data): the
# machinery. Then what the platform found on real data: the small-scale rediscovery's report,
# rendered offline in seconds from its committed records (docs/RESULTS.md).
demo: $(VENV)/.installed
	$(BIN)/resnet-search run paper-table1 --scale smoke --epochs 6 --name demo
	@echo
	@echo "The smoke scale above shows the machinery, not the answer. What a search found on real"
	@echo "CIFAR-10 (docs/RESULTS.md, 'Rediscovered by search'), from its committed records:"
	$(BIN)/resnet-search report rediscover-small --results-dir docs/results/rediscover-small \
	    --out results/rediscover-small-report

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
