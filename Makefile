# One environment for users and CI: a virtual environment with the exact pins of requirements.lock.
#   make reproduce            # set up, then run every notebook in the cpu profile -> results/cpu/
#   make reproduce PROFILE=smoke ARGS="--only 01_data"
#   make test                 # set up (Debian packages too), then lint (ruff) and run the test suite (what CI runs)
#   make test-fast            # lint and the tests that start no process or server (the edit loop)
#   make report PROFILE=cpu   # a static HTML site of results/<profile>/ -> site/<profile>/index.html
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PROFILE ?= cpu
ARGS ?=
BIN := $(VENV)/bin

.PHONY: reproduce test test-fast report venv system clean-venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -c requirements.lock -e ".[test]"
	touch $@

reproduce: venv
	$(BIN)/python -m mlib.reproduce --profile $(PROFILE) $(ARGS)

# chromium + chromedriver (report test) and PostgreSQL (shared-sweep test), when missing
system:
	./.ci/system-packages

test: venv system
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

# the edit loop: lint and the tests that start no process or server (CI and `make test` run them all)
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not slow"

report: venv
	$(BIN)/python -m mlib.report --profile $(PROFILE)

clean-venv:
	rm -rf $(VENV)
