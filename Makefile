# make demo: install what is missing, then run the flagship scenario in the embedded lab.
# make test: install what is missing, then the whole test suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test setup system-packages clean

demo: setup
	$(VENV)/bin/chaos run scenarios/hub-down.yaml

test: setup
	$(VENV)/bin/pytest

setup: system-packages $(STAMP)

system-packages:
	@PYTHON=$(PYTHON) sh scripts/ensure-system-packages

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "hub-chaos needs Python >= 3.11 ($(PYTHON) is older; run make PYTHON=python3.11 ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) runs .chaos *.egg-info
