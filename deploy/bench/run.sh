#!/usr/bin/env bash
# `make bench`: release build, throwaway suite, wrk (billing direct vs through the gateway; identity
# login, refresh and token verification), outbox -> consumer latency;
# results in deploy/bench/results.md. Flags and env: see deploy/bench/bench.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v python3 >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
fi
exec python3 deploy/bench/bench.py "$@"
