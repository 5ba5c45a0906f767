# Two commands on a fresh machine: `make app` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501

.PHONY: app test lint bench clean-venv

# what a new .venv takes (measured: 6.9 GB, 4.4 of them PyTorch and its CUDA libraries): said before, not half-way
VENV_GB := 7
MIN_PYTHON := 3.11
# a .venv that can install; one whose making failed half-way is made again (where python3-venv is missing, Debian's
# and Ubuntu's `python3 -m venv` stop after bin/python, without pip, and a second make found no pip there)
VENV_USABLE = test -x $(PY) && $(PY) -m pip --version >/dev/null 2>&1

# a .venv whose Python this account may not run (126: made with a Python under another account's home, ~/.pyenv, and
# run by a service account) is said so; taken for one whose Python is gone, it was made again, 7 GB, where it could be
ifneq ($(wildcard $(VENV)/pyvenv.cfg),)
ifeq ($(shell $(PY) -c '' >/dev/null 2>&1; echo $$?),126)
$(error $(VENV) was made with the Python in $(shell sed -n 's/^home = //p' $(VENV)/pyvenv.cfg), which this \
account ($(shell id -un)) may not run. Run make as the account that made $(VENV), or make it again with a Python \
this account may run: rm -rf $(VENV) as that account, then make app as this one (README: Starting with the machine))
endif
endif

# a .venv whose Python is gone (a system upgrade took the one it was made with) is made again: its stamps go, or make
# found it up to date and `make app` ended in "No such file or directory"
ifneq ($(wildcard $(VENV)/.runtime),)
ifneq ($(shell test -x $(PY) || echo gone),)
$(shell rm -f $(VENV)/.runtime $(VENV)/.project $(VENV)/.dev)
endif
endif

# a project folder whose path is not UTF-8 (copied from an old Windows share): `python -m venv` fails there ("surrogates
# not allowed"), and Streamlit serves a blank page from it; said before .venv is made, and before the dashboard starts
# (a project moved there after)
UTF8_FOLDER_CHECK = here = os.getcwdb(); shown = here.decode('utf-8', 'replace'); \
	shown.encode() == here or sys.exit(f'This project lies in {shown}, a path that is not UTF-8 text (as names ' \
	'copied from old Windows shares can be), where Python cannot make .venv nor Streamlit serve the dashboard: ' \
	'move it to a folder named in UTF-8, or rename the folder (convmv does so)')

$(VENV)/.runtime: requirements.txt
	@$(VENV_USABLE) || $(PYTHON) -c "import os, shutil, sys; $(UTF8_FOLDER_CHECK); \
		least = tuple(int(n) for n in '$(MIN_PYTHON)'.split('.')); \
		sys.version_info[:2] >= least or sys.exit(f'$(PYTHON) is Python {sys.version.split()[0]}, and this project ' \
		f'needs $(MIN_PYTHON) or later: install one, then run make PYTHON=python$(MIN_PYTHON) (or a later one)'); \
		free = shutil.disk_usage('.').free / 1e9; \
		sys.exit(None if free >= $(VENV_GB) else f'.venv needs about $(VENV_GB) GB (PyTorch and its CUDA libraries) ' \
		f'and {free:.1f} GB are free here: free some space, then run make again')"
	$(VENV_USABLE) || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# the engine importable from any folder (`.venv/bin/python -m ebsd_core` run where the scans are), not installed
$(VENV)/.project: $(VENV)/.runtime
	$(PY) -c "import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()['purelib'], 'ebsd_fewshot.pth')\
		.write_text(str(pathlib.Path.cwd()) + '\n')"
	touch $@

$(VENV)/.dev: $(VENV)/.project requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

# keep freed memory for reuse (ebsd_core/memory.py, GLIBC_TUNABLES there; EBSD_KEEP_FREED_MEMORY=0 turns it off)
MALLOC_TUNABLES := glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184:glibc.malloc.arena_max=1

# who may connect: this computer alone, unless the dashboard asks each visitor for the lab's password or a login
# (README: Hosting it for a lab); ADDRESS=0.0.0.0 serves the network without either
ADDRESS ?= $(shell $(PY) -c "from ebsd_core.access import listen_address; print(listen_address())" 2>/dev/null \
	|| echo 127.0.0.1)

# Streamlit runs by exec, in place of the shell: a SIGTERM to make alone (which make passes on) then stops it. It runs
# with the HOME the engine gives itself where its own cannot be written (ebsd_core/home_folder.py): Streamlit reads
# ~/.streamlit/secrets.toml as it starts, and a home it may not read (supervisord's /root, which a service account
# inherits) ended it there in "PermissionError"
app: $(VENV)/.project
	@if [ "$(ADDRESS)" = 127.0.0.1 ] && [ "$(origin ADDRESS)" = file ]; then echo "Serving this computer alone: to" \
		"serve the lab, set its password (README: Hosting it for a lab), or run make app ADDRESS=0.0.0.0"; \
	elif [ "$(ADDRESS)" = 127.0.0.1 ]; then echo "Serving this computer alone, as asked (ADDRESS=127.0.0.1):" \
		"a reverse proxy on it can serve the lab"; \
	elif [ -z "$(ADDRESS)" ]; then echo "Serving the network: each visitor is asked for the lab's password or login"; fi
	@home="$$($(PY) -c "import os, sys; $(UTF8_FOLDER_CHECK); from ebsd_core.access import taken_port_problem; \
		problem = taken_port_problem('$(PORT)', '$(ADDRESS)'); print(os.environ['HOME']); sys.exit(problem)")" \
		|| exit 1; export HOME="$$home"; \
		set -x; GLIBC_TUNABLES=$(if $(filter 0,$(EBSD_KEEP_FREED_MEMORY)),,$(MALLOC_TUNABLES)) \
		exec $(PY) -m streamlit run app.py --server.port $(PORT) $(if $(ADDRESS),--server.address $(ADDRESS))

test: $(VENV)/.dev
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "Chromium could not be installed: the real-browser test will be skipped"
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(PY) -m ruff check .

# every benchmark's quick run; one that fails does not stop the others, the list of failures ends the output
bench: $(VENV)/.dev
	@failed=; for script in bench/[!_]*.py; do echo "== $$script --quick"; \
		$(PY) $$script --quick || failed="$$failed $$script"; done; \
		test -z "$$failed" || { echo "failed:$$failed"; exit 1; }

clean-venv:
	rm -rf $(VENV)
