# Adapix: `make demo` encodes and decodes a sample with the shipped model; `make test` runs the tests.
# Both create .venv (if missing) and install the project into it first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SAMPLE ?= $(firstword $(wildcard ../shared/data/kodak/kodim23.png))

.PHONY: setup demo test eval bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[eval,test,bench]"
	$(BIN)/pip install --quiet --no-deps compressai==1.2.8  # benchmark peer only (its deps would pull torchvision)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m adapix.demo $(SAMPLE)

test: $(STAMP)
	$(BIN)/python -m pytest

eval: $(STAMP)
	$(BIN)/adapix eval ../shared/data/kodak --reference ../shared/reference/kodak

bench: $(STAMP)
	$(BIN)/adapix bench

clean:
	rm -rf out build *.egg-info
