#!/usr/bin/env bash
# `make bench-search`: 1,000,000 generated listings in a throwaway Postgres; the Swift listings
# service (when built) and the DRF twin (deploy/bench/drf) under the same wrk search mix;
# results in deploy/bench/search-results.md. Flags and env: see deploy/bench/search/bench_search.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
if ! command -v python3 >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
fi
exec python3 deploy/bench/search/bench_search.py "$@"
