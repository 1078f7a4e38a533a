# Two commands do all set-up on a fresh Linux machine (no GPU needed):
#   make train   creates .venv, installs sb3-gaara, runs a short GAARA training on dmc-cheetah-run
#                (logs, model, learning-curve and reconstruction PNGs under runs/quickstart)
#   make test    creates .venv, installs sb3-gaara with test tools, runs the fast test suite
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

.PHONY: install train test test-slow lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

train: install
	$(PY) examples/train.py --env $(ENV) --timesteps $(STEPS) --out $(OUT)
	$(PY) examples/reconstructions.py $(OUT) --env $(ENV)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check sb3_gaara tests examples scripts
	$(VENV)/bin/ruff format --check sb3_gaara tests examples scripts
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
