# Marketplace suite: the two commands are `make run` and `make test`.
# Everything here calls a script; the scripts install what is missing (Debian packages, pip).

PYTHON   ?= python3
SUITE    := $(PYTHON) deploy/dev/suite.py
DATA_DIR ?= .data

.DEFAULT_GOAL := help
.PHONY: help run test lint-deploy build build-release bench bench-report bench-billing bench-orders bench-messaging bench-search seed demo migrate stop clean-data harness-selftest openapi

help: ## list the targets
	@echo "usage: make <target>"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	  awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'
	@echo "env: MARKETPLACE_PG_PORT (55432), MARKETPLACE_GATEWAY_PORT (8080), LOG_LEVEL,"
	@echo "     SWIFT_TEST_ARGS / PYTEST_ARGS (make test), BENCH_DURATION / BENCH_CONNECTIONS / BENCH_SKIP (make bench),"
	@echo "     LINT_KUBERNETES_VERSIONS (1.30,1.32; make lint-deploy)"

run: ## build and run the whole suite locally (Postgres in .data, kept); Ctrl-C stops it
	$(SUITE) run --data-dir $(DATA_DIR) $(RUNFLAGS)

test: ## build with tests; unit + integration (swift test) and end-to-end (pytest) tests
	deploy/test/run-tests.sh

lint-deploy: ## render every k8s overlay; kubernetes-validate (strict) and checkov them and deploy/Dockerfile (part of make test)
	$(PYTHON) deploy/lint/lint_deploy.py

build: ## swift build (debug) after installing missing packages
	$(SUITE) ensure
	$(SUITE) build

build-release: ## swift build -c release
	$(SUITE) ensure
	$(SUITE) build --release

# `make bench`'s areas, in the order it runs them: core is deploy/bench/run.sh (results.md), the others
# deploy/bench/<area>/run.sh (<area>-results.md). BENCH_SKIP=search,orders leaves areas out.
BENCH_AREAS := core billing orders messaging search

bench: ## release build; every benchmark, each writing deploy/bench/*results.md and .json: core (gateway vs direct and nginx, identity login/refresh, token verification, events, jobs), billing, orders, messaging, search (vs the DRF twin); then bench-report
	@for area in $$(echo "$(BENCH_SKIP)" | tr ',' ' '); do \
	  case " $(BENCH_AREAS) " in *" $$area "*) ;; \
	  *) echo "BENCH_SKIP: no area '$$area' (the areas: $(BENCH_AREAS))" >&2; exit 2 ;; esac; \
	done
	$(SUITE) ensure
	$(SUITE) build --release
	@set -e; skip=",$$(echo "$(BENCH_SKIP)" | tr -d ' '),"; \
	for area in $(BENCH_AREAS); do \
	  case "$$skip" in *",$$area,"*) echo "bench: $$area skipped (BENCH_SKIP)"; continue ;; esac; \
	  if [ $$area = core ]; then run="deploy/bench/run.sh --no-build"; else run=deploy/bench/$$area/run.sh; fi; \
	  echo "$$run"; $$run; \
	done
	$(PYTHON) deploy/bench/report.py

bench-report: ## regenerate README.md's benchmark table from deploy/bench/*results.json (the end of make bench)
	$(PYTHON) deploy/bench/report.py

bench-billing: ## release build; billing: webhook ingestion (wrk) and 100,000 renewals due at once; deploy/bench/billing-results.md
	$(SUITE) ensure
	$(SUITE) build --release
	deploy/bench/billing/run.sh

bench-orders: ## release build; the purchase end to end through the gateway: orders/s to paid, webhook-to-paid latency; deploy/bench/orders-results.md
	$(SUITE) ensure
	$(SUITE) build --release
	deploy/bench/orders/run.sh

bench-messaging: ## release build; messages posted/s through the gateway, mails sent/s to the catcher, 5,000 open event streams; deploy/bench/messaging-results.md
	$(SUITE) ensure
	$(SUITE) build --release
	deploy/bench/messaging/run.sh

bench-search: ## release build; 1,000,000 generated listings: the Swift search vs a Django REST Framework twin (wrk); deploy/bench/search-results.md
	$(SUITE) ensure
	$(SUITE) build --release
	deploy/bench/search/run.sh

seed: ## demo data for a running `make run`: 25 vendors with entitlements and 3,000 listings (run again: replaced, not doubled)
	$(PYTHON) deploy/bench/search/generate.py --dsn postgres://postgres:postgres@127.0.0.1:$${MARKETPLACE_PG_PORT:-55432}/marketplace \
	  --count 3000 --vendors 25 --anchor 2026-12-01 --replace --keep-indexes

demo: ## walkthrough for a running `make run`: sign-up and mail verification, subscription, listing, search, messages, an order paid and received
	$(PYTHON) deploy/dev/demo.py --data-dir $(DATA_DIR)

migrate: ## apply every service's migrations to the .data Postgres (not while `make run` runs)
	$(SUITE) migrate --data-dir $(DATA_DIR)

stop: ## stop a `make run` of this checkout, or what a crashed one left running
	$(SUITE) stop --data-dir $(DATA_DIR)

clean-data: ## delete .data (the dev database, logs) once nothing runs on it
	$(SUITE) clean-data --data-dir $(DATA_DIR)

harness-selftest: ## test deploy/dev/suite.py itself (real Postgres, stand-in executables)
	$(PYTHON) deploy/test/selftest_suite.py

openapi: ## merge the services' openapi.yaml into the document the gateway serves (commit the result)
	$(PYTHON) deploy/openapi/merge.py
