# NitroProxy developer tasks. Every target installs what it needs into .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SENTINEL := $(VENV)/.installed
CONFIG ?= config/demo.yaml
RUFF_RULES := E,F,W,I,B,UP,RUF,TRY201,TRY203,ASYNC,SIM
SRC := nitroproxy tests benchmarks
CHROMIUM ?= /usr/bin/chromium

.PHONY: venv run test pytest lint typecheck fmt bench bench-quick bench-peers mock clean browser

venv: $(SENTINEL)

$(SENTINEL): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

run: $(SENTINEL)
	$(BIN)/nitroproxy serve --config $(CONFIG)

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
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
