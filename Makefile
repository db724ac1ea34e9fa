# Set-up and entry points. `make test` and `make demo` work on a fresh Debian machine (PyPI + apt only).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo quick bench venv system-deps clean-venv

venv: $(STAMP)

# Pinned direct dependencies (requirements.txt), pinned transitive ones (constraints.txt).
$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# System tools some tests and the demo use (sctk, festival voices); installed when we are root with apt.
system-deps:
	bash steps/install_system_deps.sh

test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile

demo: venv system-deps
	cd recipes/mini && ./run.sh

quick: venv system-deps
	cd recipes/mini && ./run.sh --quick

bench: venv
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
