# Two entry points for a fresh Linux machine with Python 3.11 (see README):
#   make quickstart   set up .venv, then run the whole pipeline on the built-in defaults
#   make test         set up .venv, then run the whole test suite (what CI runs)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch is installed first and pinned so pip takes the CPU wheel on this machine's disk rather than
# resolving a multi-GB CUDA build; on a GPU machine with torch already installed, set TORCH_SPEC=torch.
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

.PHONY: install test quickstart
install: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q

quickstart: $(VENV)/.installed
	$(VENV)/bin/rtseg quickstart
