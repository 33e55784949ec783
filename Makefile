# The two commands: `make run` and `make test`. Both install what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The real picas client has an environment of its own (requirements-picas.txt says why).
PICAS_VENV := .venv-picas
PORT ?= 8000

.PHONY: run dev shell test screenshots install chromium haproxy lint bench bench-scale bench-cluster load clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(PICAS_VENV)/.installed: requirements-picas.txt
	test -x $(PICAS_VENV)/bin/python || $(PYTHON) -m venv $(PICAS_VENV)
	$(PICAS_VENV)/bin/python -m pip install -q --disable-pip-version-check -r requirements-picas.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

install: $(VENV)/.installed $(PICAS_VENV)/.installed node_modules/.installed

run: install
	$(PY) -m localsite.run --port $(PORT)

# The same with DEBUG on: Django's error pages with tracebacks, static files straight from static/.
dev: install
	DEBUG=true $(PY) -m localsite.run --port $(PORT)

# A shell with the settings of the site that `make run` started: manage.py commands act on its pools.
shell: install
	@$(PY) -m localsite.run --shell

# The browser tests drive Debian's Chromium (Playwright's own browser download does not work on these machines):
# installed here when it is missing and this is root with apt; otherwise nothing runs until it is there.
CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ -x "$(CHROMIUM)" ] || [ "$(SKIP_BROWSER_TESTS)" = true ]; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's Chromium for the browser tests (about 30 s)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "The browser tests need Debian's Chromium at $(CHROMIUM). Install it with:"; \
		echo "    sudo apt-get install -y chromium"; \
		echo "(or run 'SKIP_BROWSER_TESTS=true make test' to leave the browser tests out)"; exit 1; \
	fi

# The cluster tests (tests/test_cluster.py, in the CouchDB 3 pass: COUCHDB3 names the shared script) put Debian's
# haproxy in front of three nodes, as production's load balancer; installed here when missing and this is root.
haproxy:
	@if [ -z "$(COUCHDB3)" ] || command -v haproxy >/dev/null; then exit 0; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing Debian's haproxy for the cluster tests (about 10 s)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	else \
		echo "The cluster tests need haproxy (sudo apt-get install -y haproxy); they are skipped without it."; \
	fi

test: install chromium haproxy
	$(PY) -m ruff check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The README's pictures: every main page at 1280 and 390 px, with the demo pools, from the browser tests.
screenshots: install chromium
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/test_browser.py -k "main_page or api_token"

bench: install
	$(PY) bench/run.py

# At survey scale (bench/RESULTS.md, "Scale"): a pool of 1,000,000 tokens beside one of 100,000 (page, counts under
# change, first counts), a reset and a token set of 1,000,000, 20 pools of 100,000 (overview, change follower). On
# the CouchDB that BENCH_COUCHDB_URL names (two hours or more; pouchdb-server beside it with BENCH_SCALE_POUCHDB=1).
bench-scale: install
	BENCH_TOKENS=1000000 BENCH_OVERVIEW_TOKENS=100000 BENCH_ONLY=page,freshness,first,reset,tokenset,overview,follow \
	BENCH_COUCHDB_ONLY=$(if $(BENCH_SCALE_POUCHDB),0,1) $(PY) bench/run.py

# The same sections on a CouchDB 3.5 cluster of three nodes behind haproxy, beside a single node on this machine
# (bench/RESULTS.md, "Cluster"): needs ../shared/couchdb/couchdb3 (or COUCHDB3) and haproxy.
bench-cluster: install
	@script=$${COUCHDB3:-$(CURDIR)/../shared/couchdb/couchdb3}; \
	[ -x "$$script" ] || { echo "bench-cluster needs the couchdb3 script: COUCHDB3=/path/to/couchdb3"; exit 1; }; \
	$(MAKE) --no-print-directory haproxy COUCHDB3="$$script" && \
	COUCHDB3="$$script" BENCH_CLUSTER=1 BENCH_ONLY=$${BENCH_ONLY:-page,freshness,first,reset} $(PY) bench/run.py

# 50 clients poll the pool and job pages for 60 s while a reset of BENCH_TOKENS (100,000) tokens runs.
load: install
	BENCH_ONLY=load $(PY) bench/run.py

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf var
