# One environment for users and CI: a virtual environment with the exact pins of requirements.lock.
#   make reproduce            # set up, then run every notebook in the cpu profile -> results/cpu/
#   make reproduce PROFILE=smoke ARGS="--only 01_data"
#   make test                 # set up, then lint (ruff) and run the test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PROFILE ?= cpu
ARGS ?=
BIN := $(VENV)/bin

.PHONY: reproduce test venv clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -c requirements.lock -e ".[test]"
	touch $@

reproduce: venv
	$(BIN)/python -m mlib.reproduce --profile $(PROFILE) $(ARGS)

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
