# `make run`: set up and run the appliance (the demo unless CONFIG names another file).
# `make test`: set up and run the tests (`make test-fast`: the fast subset). Both install what is missing, Debian packages included.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/demo.toml
PYTEST_ARGS ?=

.PHONY: run test test-fast bench screens deps deps-test demo-images install uninstall clean

run: $(VENV)/.installed
ifeq ($(CONFIG),config/demo.toml)
	$(BIN)/checkpoint list import demo config/demo/list.csv --config $(CONFIG)
endif
	$(BIN)/checkpoint run --config $(CONFIG)

test: deps-test $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The edit-test loop: every test not marked slow (tests/slow.txt), under a minute here; `make test` runs all.
test-fast: deps-test $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

bench: deps-test $(VENV)/.installed-test
	$(BIN)/python -m bench.decode
	$(BIN)/python -m bench.latency
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.ui
	$(BIN)/python -m bench.credentials

# The screenshots in docs/screens (a real headless Chromium on the kiosk and officer pages).
screens: deps-test $(VENV)/.installed-test
	$(BIN)/python -m bench.screens
	CHECKPOINT_SCREENS=docs/screens $(BIN)/python -m pytest -q tests/test_ui_officer.py -k screenshots
	CHECKPOINT_SCREENS=docs/screens $(BIN)/python -m pytest -q tests/test_dashboard.py -k last_will

demo-images: $(VENV)/.installed-test
	$(BIN)/python -m bench.make_demo config/demo

deps:
	@scripts/install-deps

deps-test:
	@scripts/install-deps --test

$(VENV)/.created: | deps
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "checkpoint needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.created
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,hub,bench]'
	touch $@

install:
	scripts/install

uninstall:
	scripts/install --uninstall $(if $(PURGE),--purge)

clean:
	rm -rf $(VENV) var .pytest_cache
