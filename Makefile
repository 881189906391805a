# make demo: install what is missing, then run the flagship scenario in the embedded lab.
# make test: install what is missing, then the whole test suite.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test bench bench-passthrough demo-packages test-packages clean

demo: demo-packages $(STAMP)
	$(VENV)/bin/chaos run scenarios/hub-down.yaml

# Two workers, each taking whole files (their module fixtures start labs and
# daemons once): about 5 minutes on 2 cores, where one worker takes 9.
test: test-packages $(TEST_STAMP)
	$(VENV)/bin/pytest -n 2 --dist loadfile

# Every benchmark (about 15 minutes, the 10-minute soak included; SOAK_MINUTES=2
# for less): figures rewritten in docs/benchmarks.md, the summary's last line
# the pass-through ratio. bench-passthrough: that ratio alone, in under five minutes.
SOAK_MINUTES ?= 10
bench: test-packages $(STAMP)
	$(VENV)/bin/python bench/run_all.py --soak-minutes $(SOAK_MINUTES)

bench-passthrough: demo-packages $(STAMP)
	$(VENV)/bin/python bench/run_all.py --only passthrough

# The demo needs only the registry; the tests drive every engine's real
# client, render the HTML report in a real browser and speak HTTP/2 with curl.
demo-packages:
	@PYTHON=$(PYTHON) sh scripts/ensure-system-packages docker-registry

test-packages:
	@PYTHON=$(PYTHON) sh scripts/ensure-system-packages docker-registry skopeo docker.io containerd chromium curl

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "hub-chaos needs Python >= 3.11 ($(PYTHON) is older; run make PYTHON=python3.11 ...)" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e .
	@touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $(TEST_STAMP)

# Run folders (runs/) are the user's history: never removed here.
clean:
	rm -rf $(VENV) .chaos *.egg-info build
