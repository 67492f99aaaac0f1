# Automation Platform: the front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv runs everything from the one locked workspace; installed on first use when missing.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PYTEST = $(UV) run --frozen pytest
# System tools the suite and its tests use (Debian package names).
APT_NEEDS := chromium:chromium chromium:fonts-liberation promtool:prometheus bwrap:bubblewrap

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk -F':.*?## ' '{printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

.PHONY: install install-system install-python
install: install-system install-python ## Install what is missing: system packages and the locked Python environment

install-system: ## apt-get install the system tools that are missing (Chromium, fonts, promtool)
	@missing=""; for pair in $(APT_NEEDS); do tool=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$tool >/dev/null 2>&1 || ! dpkg -s $$pkg >/dev/null 2>&1; then missing="$$missing $$pkg"; fi; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

install-python: ## Create .venv from uv.lock (installs uv itself when missing)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

.PHONY: dev migrate
dev: install ## Start all five services as local processes (migrations first); Ctrl-C stops them
	@$(UV) run --frozen python -m automation_suite up

migrate: install-python ## Apply every service's migrations to AUTOMATION_DATABASE_URL
	@for m in job_api scheduler executor browser_pool event_gateway; do $(UV) run --frozen python -m automation_$$m migrate || exit 1; done

.PHONY: fmt lint typecheck
fmt: ## Format and autofix
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

lint: ## ruff lint and format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

typecheck: ## mypy --strict over libs and services
	$(UV) run --frozen mypy libs/*/src services/*/src

.PHONY: dashboards
dashboards: install-python ## Regenerate the Grafana dashboards JSON from deploy/grafana/*.py
	$(UV) run --frozen python deploy/grafana/build_dashboards.py

.PHONY: test test-unit test-integration test-e2e test-deploy
test: install ## Everything: unit, integration (real PostgreSQL + RabbitMQ), deployment checks and end-to-end
	$(PYTEST) libs services deploy/tests tests-e2e

test-unit: install-python ## Unit tests only (no I/O)
	$(PYTEST) libs/*/tests/unit services/*/tests/unit

test-integration: install ## Integration tests against the real PostgreSQL and RabbitMQ
	$(PYTEST) $(wildcard libs/*/tests/integration services/*/tests/integration)

test-deploy: install ## Compose, Dockerfile, Kubernetes and Prometheus checks
	$(PYTEST) deploy/tests

test-e2e: install ## Start the five services as processes and drive them through HTTP and AMQP
	$(PYTEST) tests-e2e

.PHONY: soak
soak: install ## With `make dev` running: runs while replicas die, RabbitMQ or PostgreSQL stops; nothing lost or doubled (SOAK_ARGS="--outage replicas|broker|database")
	$(UV) run --frozen python tests-soak/soak.py $(or $(SOAK_ARGS),--outage replicas)

.PHONY: soak-schedules
soak-schedules: install ## With `make dev` running: jobs firing every second while something breaks; every slot fired once, each run once (SOAK_ARGS="--outage broker|database|replicas")
	$(UV) run --frozen python tests-soak/schedules.py $(or $(SOAK_ARGS),--outage database)

.PHONY: soak-events
soak-events: install ## With `make dev` running: events triggering jobs while something breaks; each matching job fired once per event, each run once (SOAK_ARGS="--outage broker|database|replicas")
	$(UV) run --frozen python tests-soak/events.py $(or $(SOAK_ARGS),--outage database)

.PHONY: bench bench-schedule bench-scheduler bench-executor bench-executor-children bench-executor-commands
bench: bench-schedule bench-scheduler bench-executor bench-executor-children bench-executor-commands ## All benchmarks (figures printed side by side with peers, nothing asserted)

bench-schedule: install-python ## Fire-time maths: microseconds per next_after
	$(UV) run --frozen python libs/schedule/bench_next_after.py

bench-scheduler: install ## Scheduler: fires/s, lateness, RSS, DB size at 10k/100k/1M schedules vs APScheduler and Celery beat
	$(UV) run --frozen --group bench python services/scheduler/bench/bench_scheduler.py $(BENCH_ARGS)

bench-executor: install ## Executor: runs/s, start latency, RSS vs Celery (prefork and threads) and the bare minimum
	$(UV) run --frozen --group bench python services/executor/bench/bench_executor.py $(BENCH_ARGS)

bench-executor-children: install ## Executor: CPU of a python run's child, its handler preloaded in the fork server or not
	$(UV) run --frozen --group bench python services/executor/bench/bench_children.py

bench-executor-commands: install ## Executor: CPU of a shell step's command: limits held by the server, set by prlimit, or by a fork
	$(UV) run --frozen --group bench python services/executor/bench/bench_commands.py
