# Everything a fresh machine needs is installed from here: `make run` and `make test`
# are the only two commands a user has to know.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# apt-get needs root; use sudo only when we are not root already.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium

.PHONY: install run test browser lint clean messages audit

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Browser tests drive Debian's chromium through Playwright's executable_path:
# Playwright's own browser download cannot reach its servers from these machines.
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

run: install
	$(BIN)/optin serve --host $(HOST) --port $(PORT)

# ruff (lint and format) over the code and its tests, mypy (strict) over the service,
# hadolint over the Dockerfile.
lint: install
	$(BIN)/ruff check app tests bench
	$(BIN)/ruff format --check app tests bench
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile

test: install browser
	OPTIN_CHROMIUM=$(CHROMIUM) $(BIN)/pytest $(PYTEST_ARGS)

# The benchmark suite (bench/README.md): wrk from Debian's packages drives the load,
# chromium weighs the page. Pass options with `make bench BENCH_ARGS="--quick"`.
.PHONY: bench
WRK ?= /usr/bin/wrk

$(WRK):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk

# The servers under measurement run from a venv with the service's own dependencies,
# as deployed: the dev tools in .venv (pytest's pygments, rich) would be imported by
# httpx and weigh on the memory figure. Installed editable, so that it always runs the
# code of the checkout: a copy made when pyproject.toml last changed would measure an
# older service than the one being changed.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -e .
	touch $@

bench: install browser $(WRK) $(BENCH_VENV)/.installed
	OPTIN_CHROMIUM=$(CHROMIUM) $(BIN)/python bench/run.py --server-python $(BENCH_VENV)/bin/python $(BENCH_ARGS)

# The catalogs (README, Languages): every string a visitor reads, extracted from the
# code and the templates into app/locale/messages.pot, merged into each language's .po
# (new strings empty, to translate), and compiled to the .mo files the package ships.
LOCALES := app/locale
LANGUAGES := en es
messages: install
	$(BIN)/pybabel -q extract -F babel.cfg -k N_ --add-location=file --sort-by-file \
		--project=optin-pages --no-wrap -o $(LOCALES)/messages.pot .
	for lang in $(LANGUAGES); do \
		if [ -f $(LOCALES)/$$lang/LC_MESSAGES/messages.po ]; then \
			$(BIN)/pybabel -q update --no-wrap --no-fuzzy-matching -l $$lang -d $(LOCALES) -i $(LOCALES)/messages.pot; \
		else \
			$(BIN)/pybabel -q init --no-wrap -l $$lang -d $(LOCALES) -i $(LOCALES)/messages.pot; \
		fi; \
	done
	$(BIN)/pybabel compile --statistics -d $(LOCALES)

# Lighthouse on the campaign page, the embed and the thanks page in each language
# (bench/audit.py): >= 98 in every category, else it fails. Lighthouse 12.2.3 from npm
# (13 needs Node 22; Debian's is 20), into .audit/, driving Debian's chromium.
LIGHTHOUSE_VERSION := 12.2.3
AUDIT_DIR := .audit
LIGHTHOUSE := $(AUDIT_DIR)/node_modules/.bin/lighthouse

$(LIGHTHOUSE):
	npm install --prefix $(AUDIT_DIR) --no-audit --no-fund --silent -E lighthouse@$(LIGHTHOUSE_VERSION)

audit: install browser $(LIGHTHOUSE)
	OPTIN_CHROMIUM=$(CHROMIUM) $(BIN)/python bench/audit.py --lighthouse $(LIGHTHOUSE) $(AUDIT_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) $(AUDIT_DIR) var build *.egg-info .pytest_cache
