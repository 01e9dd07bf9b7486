# The two set-up commands of the README:
#   make testnet   install, then launch a 4-validator local testnet in the foreground
#   make test      install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TESTNET_DIR ?= testnet

.PHONY: install testnet test test-fast e2e bench clean

$(BIN)/qenexd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/qenexd

install: $(BIN)/qenexd

testnet: install
	@test -f $(TESTNET_DIR)/testnet.json || $(BIN)/qenexd testnet init --validators 4 --dir $(TESTNET_DIR)
	$(BIN)/qenexd testnet start --dir $(TESTNET_DIR)

# Two workers; the testnet tests stay on one of them (tests/conftest.py).
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

# Fault injection (e2e/): one manifest of e2e/manifests/ (ci, partition, chaos), a summary table at the end.
MANIFEST ?= ci
e2e: install
	$(BIN)/python -m e2e.runner $(MANIFEST)

clean:
	rm -rf $(TESTNET_DIR) .pytest_cache .hypothesis
