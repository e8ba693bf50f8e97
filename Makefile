# The two commands: `make demo` (the main job on bundled data) and `make test`.
# Each creates the project virtual environment in .venv on first use, installs
# PyTorch when the environment has none, then the package (the demo needs only the
# library; the tests add the dev extra); later runs skip that. Every command the
# README shows runs in that environment: `source .venv/bin/activate` once per shell,
# or use the targets below, which call .venv's programs directly.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PyTorch build installed when the environment has none (override for CUDA etc.).
TORCH_SPEC ?= torch==2.13.0
# The MLflow store aedetect logs to by default (MLflow's own default: ./mlflow.db).
MLFLOW_STORE ?= sqlite:///mlflow.db
PORT ?= 5000
STAMP := $(VENV)/.aedetect-installed
DEV_STAMP := $(VENV)/.aedetect-dev-installed

.PHONY: demo test test-all test-slow test-readme install install-dev ui examples clean

demo: $(STAMP)
	$(PY) -m aedetect demo

test: $(DEV_STAMP)
	$(PY) -m pytest

test-all: $(DEV_STAMP)
	$(PY) -m pytest -m "slow or not slow"

# only the slow tests (CI runs them after `make test`)
test-slow: $(DEV_STAMP)
	$(PY) -m pytest -m slow

# every Python block of README.md, the long ones included
test-readme: $(DEV_STAMP)
	$(PY) -m pytest tests/test_readme.py -m "slow or not slow"

# the MLflow UI on the default store: open http://127.0.0.1:$(PORT)
ui: $(STAMP)
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_STORE) --host 127.0.0.1 --port $(PORT)

# every example script with its defaults, figures in examples_out/ (several minutes on a CPU)
examples: $(STAMP)
	for script in examples/*.py; do $(PY) $$script --out examples_out || exit 1; done

install: $(STAMP)

install-dev: $(DEV_STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install -e ".[dev]"
	touch $(DEV_STAMP)

clean:
	rm -rf $(VENV) *.egg-info
