#!/usr/bin/env bash
# `make bench-messaging`: messages posted per second through the gateway, mails sent per second to
# the dev mail catcher, and thousands of open event streams (memory, delivery latency) on a
# throwaway suite; results in deploy/bench/messaging-results.md.
# Flags: see deploy/bench/messaging/bench_messaging.py (--buyers N, --streams N, --output FILE, ...).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
if ! command -v python3 >/dev/null; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3
fi
exec python3 deploy/bench/messaging/bench_messaging.py "$@"
