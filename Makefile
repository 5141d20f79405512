# XiangFlow — `make run` starts the app on SQLite with demo data; `make test` runs every test.
# Both install what they need first (Python venv, Debian chromium + CJK fonts, npm bundles).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
# pytest-xdist workers for `make test` (auto = one per CPU); each has its own database (tests/conftest.py)
TEST_WORKERS ?= auto
# WeasyPrint needs Pango; libharfbuzz-subset0 makes it subset CJK fonts 10–40× faster; poppler-utils: pdfsig; libnss3-tools: certutil
APT_PACKAGES := chromium fonts-noto-cjk libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 poppler-utils libnss3-tools

.DEFAULT_GOAL := help
.PHONY: help setup run serve test test-postgres lint bench clean system-deps assets fonts

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

system-deps: ## install Debian packages the app and tests need (chromium, CJK fonts, HarfBuzz subsetting, pdfsig)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

web/assets/node_modules/.installed: web/assets/package.json web/assets/package-lock.json
	cd web/assets && npm ci --no-audit --no-fund --loglevel=error
	touch $@

ASSET_SOURCES := $(shell find web/assets/src -type f) web/assets/build.mjs web/assets/.bpmnlintrc

web/static/dist/.built: web/assets/node_modules/.installed $(ASSET_SOURCES)
	cd web/assets && npm run --silent build
	touch $@

assets: web/static/dist/.built ## build the front-end bundles (case viewer, studio) from npm packages

fonts: $(VENV)/.installed system-deps ## cut the CJK fonts down to what notices hold (instance/fonts; once, ~1 min)
	$(PY) -m engine.notices.fonts

setup: $(VENV)/.installed system-deps assets fonts ## install everything (idempotent)

run: setup ## start XiangFlow on http://127.0.0.1:$(PORT) (SQLite, demo data, demo users)
	$(PY) -m flask --app wsgi xiangflow init --demo
	PORT=$(PORT) $(PY) wsgi.py

WEB_WORKERS ?= 2
TIMER_WORKERS ?= 1
# The production profile (README "Production profile"): gunicorn with WEB_WORKERS processes, TIMER_WORKERS
# timer-worker processes, the web processes' APScheduler tick off. Set DATABASE_URL for PostgreSQL and
# XIANGFLOW_SECRET_KEY (every web process must share it); without one a key is made once in instance/.
serve: setup ## production profile on http://127.0.0.1:$(PORT): gunicorn ($(WEB_WORKERS) workers) + $(TIMER_WORKERS) timer worker(s)
	$(PY) -m flask --app wsgi xiangflow init
	@mkdir -p instance && test -s instance/secret_key || $(PY) -c "import secrets; print(secrets.token_hex(32))" > instance/secret_key
	@export XIANGFLOW_SCHEDULER=0 XIANGFLOW_SECRET_KEY="$${XIANGFLOW_SECRET_KEY:-$$(cat instance/secret_key)}"; \
	pids=""; for i in $$(seq $(TIMER_WORKERS)); do $(PY) -m flask --app wsgi timers run --interval 10 & pids="$$pids $$!"; done; \
	trap 'kill $$pids 2>/dev/null' EXIT INT TERM; \
	$(VENV)/bin/gunicorn --workers $(WEB_WORKERS) --bind 127.0.0.1:$(PORT) --timeout 60 --access-logfile - wsgi:app

# bytecode caches kept for the test run even where the environment turns them off (PYTHONDONTWRITEBYTECODE=1 here):
# without them every worker compiled all the sources and the test modules' assert rewrites again (collection
# 14.3 s -> 6.7 s CPU per process)
TEST_ENV := PYTHONDONTWRITEBYTECODE=

test: setup ## run the whole test suite in parallel (on SQLite, or on PostgreSQL when DATABASE_URL is set)
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

test-postgres: setup ## run the suite on the local PostgreSQL (databases test_gw0, test_gw1, …)
	$(TEST_ENV) DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: $(VENV)/.installed ## ruff (includes the rule that engine/ never imports Flask) and mypy over engine/ and web/
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: setup ## print the benchmark figures (see README, Performance)
	$(PY) bench/engine.py
	$(PY) bench/timers.py
	$(PY) bench/notices.py

clean: ## remove the venv, bundles and the local database
	rm -rf $(VENV) web/assets/node_modules web/static/dist instance
