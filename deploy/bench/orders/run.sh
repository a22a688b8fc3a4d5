#!/usr/bin/env bash
# `make bench-orders`: the purchase end to end through the gateway (orders/s to `paid`, and the latency
# from the provider's webhook to `paid`) on a throwaway suite; results in deploy/bench/orders-results.md.
# Flags: see deploy/bench/orders/bench_orders.py (--orders N, --output FILE, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
if ! command -v python3 >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
fi
exec python3 deploy/bench/orders/bench_orders.py "$@"
