# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://iam:iam@127.0.0.1:5432/iam
HOST ?= 127.0.0.1:8000

.PHONY: install run test test-sqlite test-postgres lint services screenshots worker beat bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Demo service on the embedded default: SQLite, no Redis, Celery tasks in-process.
run: export DEBUG ?= 1
run: install
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo
	$(PY) manage.py runserver $(HOST)

services:
	bash scripts/ensure-services.sh

# Background work against REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379/0 make worker).
worker: install
	$(VENV)/bin/celery -A iam worker --loglevel=INFO

beat: install
	$(VENV)/bin/celery -A iam beat --loglevel=INFO --schedule=var/celerybeat-schedule

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	DEBUG=1 $(PY) manage.py makemigrations --check --dry-run -v0
	DEBUG=1 $(PY) manage.py spectacular --validate --fail-on-warn --file /dev/null

test-sqlite: install
	$(PY) -m pytest

test-postgres: install services
	DATABASE_URL=$(PG_URL) $(PY) -m pytest

# The whole suite: services (PostgreSQL, Chromium), lint, then every test on SQLite and on PostgreSQL.
test: services lint test-sqlite test-postgres

# Refresh the README's screenshots from the browser tests' latest run (only those the README shows).
screenshots:
	mkdir -p docs/screenshots
	for name in $$(grep -o 'docs/screenshots/[a-z0-9-]*\.png' README.md | sort -u | xargs -n1 basename); do \
		cp test-artifacts/screenshots/$$name docs/screenshots/$$name || exit 1; done

# Authentication throughput against the Django peers, the gateway through nginx, then the cold path (each request a token not
# seen before) at 10k and 1M tokens on both databases (the first run fills each database: ~12 min at 1M) (installed into .venv from requirements-bench.txt;
# the load generator is Debian's wrk, installed with apt when missing).
bench: install services
	command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) benchmarks/auth_throughput.py --http
	$(PY) benchmarks/gateway.py
	$(PY) benchmarks/cold_path.py --tokens 10000
	$(PY) benchmarks/cold_path.py --tokens 10000 --database postgres
	$(PY) benchmarks/cold_path.py --tokens 1000000
	$(PY) benchmarks/cold_path.py --tokens 1000000 --database postgres --http
	# The same stream with a cache that holds every token in use and a reload time longer than their return (README).
	$(PY) benchmarks/cold_path.py --tokens 1000000 --database postgres --http-only \
		--cache-size 100000 --cache-seconds 3600 --warmup 1200 --rounds 2
