# sealmail: `make run` starts the service, `make test` runs the whole suite.
# Both work on a fresh Debian 12 machine with python3, make and root.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SEALMAIL := $(BIN)/sealmail

# Tools the tests drive as the customer's side, as COMMAND=DEBIAN_PACKAGE.
TEST_TOOLS := gpg=gnupg gpg-agent=gpg-agent sq=sq sqop=sqop rnp=rnp gosop=gosop \
	pgpainless-cli=pgpainless-cli notmuch=notmuch chromium=chromium tmux=tmux \
	node=nodejs npm=npm postfix=postfix curl=curl mutt=mutt

.PHONY: run test install install-test system-packages node-peer clean

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || (apt-get update -q && apt-get install -y -q python3-venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install -q -c requirements.lock -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -c requirements.lock -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-packages node-peer

system-packages:
	scripts/install-system-packages $(TEST_TOOLS)

# OpenPGP.js, pinned in tests/peers/node/package-lock.json, for the interop tests.
node-peer: system-packages
	cd tests/peers/node && npm ci --no-audit --no-fund --loglevel=error

run: install
	$(SEALMAIL) migrate --no-input -v 0
	$(SEALMAIL) orgkey generate --if-missing
	$(SEALMAIL) welcome
	$(SEALMAIL) serve

test: install-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)
	DATABASE_URL=$${SEALMAIL_TEST_POSTGRES_URL:-postgres://127.0.0.1:5432/test} \
		$(BIN)/python -m pytest -m db_backends $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
