#!/usr/bin/env bash
# `make bench-billing`: webhook ingestion and 100,000 renewals due at once on a throwaway suite;
# results in deploy/bench/billing-results.md. Flags: see deploy/bench/billing/bench_billing.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
if ! command -v python3 >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
fi
exec python3 deploy/bench/billing/bench_billing.py "$@"
