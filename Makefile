# cxraug: `make demo` and `make test` work on a fresh machine (they create .venv when missing).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.cxraug-installed
OUT    ?= runs/quickstart
# test processes (pytest-xdist); each uses one torch thread, so 2 fill a 2-core CI machine
WORKERS ?= 2

.PHONY: demo test test-fast install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cxraug study quickstart --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal -m "not slow"

clean:
	rm -rf runs .pytest_cache
