# The two commands: `make demo` (the main job on bundled data) and `make test`.
# Each creates the project virtual environment in .venv on first use, installs
# PyTorch when the environment has none, then the package; later runs skip that.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The PyTorch build installed when the environment has none (override for CUDA etc.).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.aedetect-installed

.PHONY: demo test test-all install clean

demo: $(STAMP)
	$(PY) -m aedetect demo

test: $(STAMP)
	$(PY) -m pytest

test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) *.egg-info
