# The two set-up commands (README): `make run` serves, `make test` runs the whole suite.
# Both create .venv and install the pinned dependencies on first use; nothing else is needed
# but Python 3.11, make and git.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test bench demo proto lint clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/claimsctl serve

test: $(INSTALLED)
	$(PY) -m pytest -q

bench: $(INSTALLED)
	$(PY) -m bench

demo: $(INSTALLED)
	$(VENV)/bin/claimsctl demo

clean:
	rm -rf $(VENV) build *.egg-info
