# NitroProxy developer tasks. Every target installs what it needs into .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SENTINEL := $(VENV)/.installed
# `make run` needs the runtime dependencies only; `make test` adds the test and bench tools.
RUN_SENTINEL := $(VENV)/.installed-run
# The one-file build has a venv of its own: runtime dependencies and PyInstaller, nothing
# from the test toolchain, so none of it ends up in dist/nitroproxy.
DIST_VENV := build/dist-venv
DIST_SENTINEL := $(DIST_VENV)/.installed
DIST_SOURCES := $(shell find nitroproxy config -type f -not -name '*.pyc' 2>/dev/null)
CONFIG ?= config/demo.yaml
RUFF_RULES := E,F,W,I,B,UP,RUF,TRY201,TRY203,ASYNC,SIM
SRC := nitroproxy tests benchmarks
CHROMIUM ?= /usr/bin/chromium

.PHONY: venv dist run test pytest lint typecheck fmt bench bench-quick bench-peers mock clean browser

venv: $(SENTINEL)

$(SENTINEL): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

$(RUN_SENTINEL): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

run: $(RUN_SENTINEL)
	$(BIN)/nitroproxy serve --config $(CONFIG)

$(DIST_SENTINEL): setup.cfg
	$(PYTHON) -m venv $(DIST_VENV)
	$(DIST_VENV)/bin/pip install -q --upgrade pip
	$(DIST_VENV)/bin/pip install -q -e '.[dist]'
	touch $@

# dist/nitroproxy: one executable with Python, the dependencies and the tokenizer files
# inside (PyInstaller one-file; benchmarks/RESULTS.md says why not a zipapp).
dist: dist/nitroproxy

dist/nitroproxy: $(DIST_SENTINEL) packaging/nitroproxy.spec $(DIST_SOURCES)
	$(DIST_VENV)/bin/pyinstaller --noconfirm --clean --log-level WARN \
		--distpath dist --workpath build/pyinstaller packaging/nitroproxy.spec

mock: $(SENTINEL)
	$(BIN)/nitroproxy mock-provider --port 8081

test: lint typecheck browser pytest

# The dashboard's browser tests drive Debian's Chromium (Playwright's own browser download
# needs the internet). Installed here when missing and possible (root, apt-get); where it
# cannot be, those tests skip and say why.
browser:
	@if [ ! -x $(CHROMIUM) ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium for the browser tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
			>/dev/null; } || echo "chromium could not be installed: the browser tests will skip"; \
	fi

pytest: $(SENTINEL)
	$(BIN)/pytest -q

lint: $(SENTINEL)
	$(BIN)/ruff check --select $(RUFF_RULES) --line-length 100 --target-version py311 $(SRC)
	$(BIN)/ruff format --check --line-length 100 --target-version py311 $(SRC)

fmt: $(SENTINEL)
	$(BIN)/ruff check --fix --select $(RUFF_RULES) --line-length 100 --target-version py311 $(SRC)
	$(BIN)/ruff format --line-length 100 --target-version py311 $(SRC)

typecheck: $(SENTINEL)
	$(BIN)/mypy

bench: $(SENTINEL)
	$(BIN)/python -m benchmarks.run --profile full

bench-quick: $(SENTINEL)
	$(BIN)/python -m benchmarks.run --profile quick

bench-peers: $(SENTINEL)
	$(BIN)/python -m benchmarks.run --profile full --peers

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
