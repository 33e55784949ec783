# The two commands: `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000

.PHONY: run test install lint bench load clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed node_modules/.installed

run: install
	$(PY) -m dashboard.run --port $(PORT)

test: install
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) bench/run.py

# 50 clients poll the pool and job pages for 60 s while a reset of BENCH_TOKENS (100,000) tokens runs.
load: install
	BENCH_ONLY=load $(PY) bench/run.py

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf var
