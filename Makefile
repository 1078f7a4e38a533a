# Two commands do all set-up on a fresh Linux machine (no GPU needed):
#   make train   creates .venv, installs sb3-gaara (what training needs, nothing else) and in about 5 minutes on
#                2 CPU cores shows GAARA learning PixelReach from pixels next to the random policy, plus a short
#                RL Zoo run on dmc-cheetah-run with reconstructions of varied poses (runs/quickstart/first_run.png)
#   make test    creates .venv if needed, adds the test tools, runs the fast test suite
#   make docs    builds the documentation site into docs/_build/html, warnings as errors
# Override e.g. `make train STEPS=5000 ENV=dmc-walker-walk` or `make test PYTEST_ARGS="-k crops"`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Installed first so that pip does not resolve a bare `torch` requirement to the multi-GB CUDA wheels.
# For a GPU machine use e.g. TORCH_SPEC="torch" (the CUDA build from PyPI).
TORCH_SPEC ?= torch==2.13.0
# Headless OpenGL for MuJoCo rendering (EGL through Mesa on CPU machines, the NVIDIA driver on GPUs).
export MUJOCO_GL ?= egl

ENV ?= dmc-cheetah-run
STEPS ?= 1000
OUT ?= runs/quickstart
PYTEST_ARGS ?=
# Test files run in parallel, one worker process per CPU (pytest-xdist), each file whole on one worker so that its
# module fixtures are built once; TEST_WORKERS=0 runs them in this process. The slow suite keeps the collection's
# file order (tests/conftest.py: longest first) instead of xdist's default order by number of tests per file
# (--no-loadscope-reorder, pytest-xdist 3.8 or newer: the dev extra asks for it).
TEST_WORKERS ?= auto
XDIST := -n $(TEST_WORKERS) --dist loadfile

.PHONY: install install-dev train test test-slow lint docs study-cpu-dmc publish-cpu-dmc results-cpu-dmc clean

# What training needs: torch, then the package and its dependencies. A plain install: the commands run from the
# checkout, where Python imports sb3_gaara from the working tree first.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet .
	touch $@

# The test, lint and type tools on top, and the package made editable (subprocesses of the tests import the
# working tree from anywhere).
$(VENV)/.installed-dev: $(VENV)/.installed
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

train: install
	$(PY) examples/first_run.py --env $(ENV) --steps $(STEPS) --out $(OUT)

test: install-dev
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)

test-slow: install-dev
	$(PY) -m pytest -q -m slow --durations=15 $(XDIST) --no-loadscope-reorder $(PYTEST_ARGS)

lint: install-dev
	$(VENV)/bin/ruff check sb3_gaara tests examples scripts
	$(VENV)/bin/ruff format --check sb3_gaara tests examples scripts
	$(VENV)/bin/mypy

# The Sphinx site (docs/): every warning (a broken link or anchor, a docstring that is not valid reST) fails the build.
# The CPU-scale DMC study's committed results (docs/results/cpu-dmc): publish-cpu-dmc copies the runs' small records
# from the study's folder, results-cpu-dmc rewrites results.md, curves.csv and the PNGs from them and the README's table.
# study-cpu-dmc runs (or resumes) the study for CPU_DMC_TIME seconds, seeding a fresh folder with the committed records
# so that finished runs are skipped.
CPU_DMC_RUNS ?= runs/cpu-dmc
CPU_DMC_TIME ?= 3000
study-cpu-dmc: install
	[ -d $(CPU_DMC_RUNS)/runs ] || (mkdir -p $(CPU_DMC_RUNS) && cp -r docs/results/cpu-dmc/runs $(CPU_DMC_RUNS)/)
	$(PY) -m sb3_gaara.study --preset cpu-dmc --out $(CPU_DMC_RUNS) --time-limit $(CPU_DMC_TIME)

publish-cpu-dmc: install
	$(PY) scripts/publish_study.py $(CPU_DMC_RUNS) docs/results/cpu-dmc

results-cpu-dmc: install
	$(PY) -m sb3_gaara.study --preset cpu-dmc --report-only --out docs/results/cpu-dmc --embed-in README.md

docs: install-dev
	$(VENV)/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf docs/_build $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
