# The two set-up commands (README): `make run` serves, `make test` runs the whole suite.
# Both create .venv and install the pinned dependencies on first use; nothing else is needed
# but Python 3.11, make and git.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: run test test-unit bench demo proto lint clean

GRPC_INCLUDE = $$($(PY) -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

run: $(INSTALLED)
	$(VENV)/bin/claimsctl serve

# Two workers (pytest-xdist), each with its own embedded PostgreSQL: the suite spends much of its
# time waiting on servers and subprocesses, so two cores run it in a little over half the time.
test: $(INSTALLED)
	$(PY) -m pytest -q -n 2

# The inner loop: the pure tests only (no database, no server), in seconds.
test-unit: $(INSTALLED)
	$(PY) -m pytest -q tests/unit

bench: $(INSTALLED)
	$(PY) -m bench $(ARGS)

demo: $(INSTALLED)
	$(VENV)/bin/claimsctl demo

# Regenerate protos/claims/v1/*_pb2*.py(i) from the .proto files; never edit the output by hand
# (tests/unit/test_protos.py fails when it is stale).
proto: $(INSTALLED)
	$(PY) -m grpc_tools.protoc -I protos -I "$(GRPC_INCLUDE)" \
		--plugin=protoc-gen-mypy=$(VENV)/bin/protoc-gen-mypy \
		--plugin=protoc-gen-mypy_grpc=$(VENV)/bin/protoc-gen-mypy_grpc \
		--python_out=protos --grpc_python_out=protos --mypy_out=protos --mypy_grpc_out=protos \
		protos/claims/v1/*.proto

lint: $(INSTALLED)
	$(VENV)/bin/buf lint

clean:
	rm -rf $(VENV) build *.egg-info
