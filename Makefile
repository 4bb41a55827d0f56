# The two commands of the README, and the checks a contributor runs.
#   make demo   set up and run the main job on the built-in generator, into ./demo-output
#   make test   set up, start the real local servers, run every test, stop the servers
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

CHECKOV := terraform/.tools/checkov/bin/checkov

.PHONY: setup system-deps demo test lint services-up services-down clean

$(VENV)/.installed: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# checkov clashes with the suite's packages, so it gets a virtual environment of its own.
$(CHECKOV): terraform/requirements-checkov.txt
	$(PYTHON) -m venv terraform/.tools/checkov
	terraform/.tools/checkov/bin/pip install --quiet -r terraform/requirements-checkov.txt
	touch $@

# Debian's packages: redis-server (a local server) and chromium with chromium-driver (the live
# dashboard's browser test). Every other local server is a pip package of the [test] extra,
# except the Pub/Sub emulator, which ships with the Google Cloud CLI.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null 2>&1 || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "note: missing$$missing (apt-get install$$missing); their tests will skip"; \
		fi; \
	fi

demo: setup
	$(PY) -m pipelines demo

test: setup system-deps $(CHECKOV)
	$(PY) -m pipelines.devtools services up
	$(PY) -m pytest -q; status=$$?; $(PY) -m pipelines.devtools services down; exit $$status

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy transforms pipelines

services-up: setup
	$(PY) -m pipelines.devtools services up

services-down: setup
	$(PY) -m pipelines.devtools services down

clean:
	rm -rf $(VENV) .services demo-output terraform/.tools
