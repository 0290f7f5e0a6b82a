# Defer the expensive job: two commands are all a newcomer needs.
#   make lab    create .venv if missing, install, open JupyterLab on lesson 01
#   make test   create .venv if missing, lint, then run the whole suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The lock: every package at the version the notebooks' stored outputs were made with.
CONSTRAINTS := constraints.txt
# The first Python >= 3.11 on PATH (override: make test PYTHON=/path/to/python3.12).
PYTHON ?= $(firstword $(foreach p,python3 python3.11 python3.12 python3.13 python,\
  $(shell command -v $(p) >/dev/null 2>&1 && $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && echo $(p))))

MODE ?= blocking
JOBS ?= 4
WORKERS ?=
QUEUE_SIZE ?=
REFUSE ?=
PORT ?= 8000
NOTEBOOKS ?= exercises
SOLUTIONS ?= solutions
LESSON ?= lessons/01_blocking_handlers.ipynb
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
         --nbval-cell-timeout 120
# JupyterLab settings that override its defaults, for this environment only.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
LAB_OVERRIDES := {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}
# JupyterLab refuses to run as root (Docker, CI) unless told it may.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: help env lab lint test grade exercises serve notebooks bench compare lock clean

help:
	@echo "make lab         open the course in JupyterLab (sets everything up first)"
	@echo "make test        lint, then run the whole test suite"
	@echo "make lint        the layer contract (import-linter), ruff and mypy"
	@echo "make grade       grade your exercises/ (NOTEBOOKS=DIR grades another folder;"
	@echo "                 STRICT=1 also fails the command when the score is below full)"
	@echo "make serve       run the lesson's app outside Jupyter (MODE=blocking PORT=8000;"
	@echo "                 MODE=dramatiq MAX_BACKLOG=5 sheds load past 5 s of queued work,"
	@echo "                 NICE=10 runs its workers at a lower CPU priority)"
	@echo "make exercises   regenerate exercises/ from solutions/ (course authors; keeps"
	@echo "                 exercise cells you changed unless FORCE=1, which backs them up)"
	@echo "make notebooks   re-execute lessons/ and solutions/ in place (course authors)"
	@echo "make bench       measure the signup modes side by side on this machine"
	@echo "make compare     lesson 08: kill a worker of each task queue mid-batch, count the damage"
	@echo "make lock        regenerate constraints.txt from pyproject.toml (course authors)"

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python 3.11 or newer on PATH. Install one (python.org, pyenv, or your"; \
	  echo "package manager), or point make at it: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11"; \
	  exit 2; fi
	@if [ ! -x $(PY) ]; then echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	@echo "installing the course and its dependencies into $(VENV) (first time: a minute or two)"
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@# PYTHONWARNINGS: setuptools' "Editable installation ... be careful" banner means nothing here.
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --disable-pip-version-check \
	  -c $(CONSTRAINTS) -e '.[dev]'
	@# No "Would you like to get notified about Jupyter news?" pop-up in JupyterLab.
	@mkdir -p $(dir $(LAB_SETTINGS))
	@echo '$(LAB_OVERRIDES)' > $(LAB_SETTINGS)
	@touch $@

env: $(STAMP)

# JUPYTER_PATH first: the course's own kernel wins over a user-wide "python3".
lab: $(STAMP)
	JUPYTER_PATH=$(abspath $(VENV))/share/jupyter $(VENV)/bin/jupyter lab $(ROOT_FLAG) --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/$(LESSON)

# The layers (pyproject.toml's [tool.importlinter]), then style and types: a few seconds.
lint: $(STAMP)
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy shared

# Four pytest workers on 2 cores: most tests wait on sockets and sleeps, so they overlap
# (measured here: 228 s with 4, about 330 s with 2). loadscope keeps each notebook's cells on
# one worker, in order; the notebooks come first, so the longest scopes start early.
test: lint
	$(PY) -m pytest -n $(JOBS) --dist loadscope lessons solutions tests $(NBVAL)

# A score below full exits 1: scripts see it with STRICT=1, a learner reads
# the score and the next step instead of "make: *** Error 1".
grade: $(STAMP)
	@$(PY) -m shared.grading $(NOTEBOOKS) --solutions $(SOLUTIONS); status=$$?; \
	if [ $$status = 1 ] && [ -z "$(STRICT)" ]; then exit 0; fi; exit $$status

exercises: $(STAMP)
	$(PY) -m shared.grading.generate $(if $(FORCE),--force)

serve: $(STAMP)
	@$(PY) -m shared.serve --mode $(MODE) --port $(PORT) \
	  $(if $(WORKERS),--workers $(WORKERS)) $(if $(QUEUE_SIZE),--queue-size $(QUEUE_SIZE)) \
	  $(if $(REFUSE),--refuse-share $(REFUSE)) \
	  $(if $(MAX_BACKLOG),--max-backlog $(MAX_BACKLOG)) $(if $(NICE),--nice $(NICE))

# Lesson 08's full comparison (a few minutes): the kill -9 row of every candidate, with its
# defaults and its reliable settings; writes compare-results.json.
compare: $(STAMP)
	$(PY) -m shared.compare --out compare-results.json

notebooks: $(STAMP)
	$(PY) -m shared.notebooks lessons/*.ipynb solutions/*.ipynb
	$(PY) -m shared.grading.generate

bench: $(STAMP)
	@$(PY) -m shared.bench

# A fresh venv gets the newest versions pyproject.toml allows; their freeze is the new lock
# (the header of comments is kept). Then run `make notebooks`, so the stored outputs are
# made with the locked versions, and commit both.
lock:
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11 or newer on PATH"; exit 2; }
	@set -e; fresh=$$(mktemp -d); trap 'rm -rf "$$fresh"' EXIT; \
	echo "installing the newest allowed versions into a fresh venv ($$fresh)"; \
	$(PYTHON) -m venv "$$fresh"; \
	"$$fresh/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	PYTHONWARNINGS=ignore "$$fresh/bin/python" -m pip install --quiet \
	  --disable-pip-version-check -e '.[dev]'; \
	{ sed -n '/^#/p' $(CONSTRAINTS); \
	  "$$fresh/bin/python" -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new; \
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	@echo "$(CONSTRAINTS) regenerated: run make notebooks, then commit both"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
