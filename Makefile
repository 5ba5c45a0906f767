# Two commands on a fresh machine: `make app` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: app test lint bench clean-venv

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# keep freed memory for reuse (ebsd_core/memory.py, GLIBC_TUNABLES there; EBSD_KEEP_FREED_MEMORY=0 turns it off)
MALLOC_TUNABLES := glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184:glibc.malloc.arena_max=1

app: $(VENV)/.runtime
	GLIBC_TUNABLES=$(if $(filter 0,$(EBSD_KEEP_FREED_MEMORY)),,$(MALLOC_TUNABLES)) \
		$(PY) -m streamlit run app.py --server.port $(PORT)

test: $(VENV)/.dev
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "Chromium could not be installed: the real-browser test will be skipped"
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .

bench: $(VENV)/.dev
	for script in bench/*.py; do $(PY) $$script --quick || exit 1; done

clean-venv:
	rm -rf $(VENV)
