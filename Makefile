# The two set-up commands README starts with:
#   make demo   — install into .venv and run the daemon on config/demo.toml
#   make test   — install test dependencies and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-test bench clean-demo

$(BIN)/triplicate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

install: $(BIN)/triplicate

$(VENV)/.test-deps: pyproject.toml tests/setup/install-deps.sh $(BIN)/triplicate
	$(BIN)/pip install --quiet -e '.[test]'
	tests/setup/install-deps.sh
	touch $@

install-test: $(VENV)/.test-deps

demo: install
	mkdir -p demo/watch demo/nearline demo/offsite demo/state
	@echo "Drop an offload folder into demo/watch/ — copies appear in demo/nearline/ and demo/offsite/. Ctrl-C stops."
	$(BIN)/triplicate --config config/demo.toml run

test: install-test
	tests/run-tests.sh

# Benchmarks against xxhsum, cp and rclone on this machine (not tests, not in CI):
# prints ratios, writes bench/results.json; see bench/RESULTS.md. BENCH_ARGS="--scale issue" for the issue's sizes.
bench: install-test
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench $(BENCH_ARGS)

clean-demo:
	rm -rf demo
