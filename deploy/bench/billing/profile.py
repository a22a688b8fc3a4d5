#!/usr/bin/env python3
"""Where renewals spend their statements: a small renewal run (default 3,000) on a throwaway suite
with pg_stat_statements, then the statements by total time and the count per renewal.

    python3 deploy/bench/billing/profile.py [--subscriptions 3000] [--top 25] [--bin-dir DIR]

A profile for the team, not a benchmark: the figures of record come from `make bench-billing`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(HERE), str(ROOT / "deploy" / "dev"), str(ROOT / "deploy" / "bench")]

import bench_billing  # noqa: E402
from suite import Suite, SuiteError, say  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--subscriptions", type=int, default=3000)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--bin-dir", type=Path, default=None)
    p.add_argument("--explain-ms", type=int, default=0,
                   help="also log the plans of statements slower than this (auto_explain, nested ones included); printed at the end")
    args = p.parse_args()
    settings = {**bench_billing.PG_SETTINGS, "shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}
    if args.explain_ms:
        settings.update({"shared_preload_libraries": "pg_stat_statements,auto_explain", "auto_explain.log_min_duration": f"{args.explain_ms}ms",
                         "auto_explain.log_nested_statements": "on", "auto_explain.log_analyze": "on"})
    suite = Suite.throwaway(ROOT, build_config="release", bin_dir=args.bin_dir, pg_settings=settings)
    try:
        with suite:
            suite.start_postgres()
            suite.start_broker()
            suite.service_env.setdefault("billing", {}).update({
                "JOBS_CONCURRENCY": os.environ.get("BENCH_JOBS_CONCURRENCY", "8"), "JOBS_BATCH_SIZE": os.environ.get("BENCH_JOBS_BATCH_SIZE", "20"), "DATABASE_POOL_SIZE": "24", "LOG_LEVEL": "info",
                "SANDBOX_WEBHOOK_SECRET": bench_billing.SECRET,
                "SANDBOX_WEBHOOK_URL": f"{suite.url('billing')}/v1/webhooks/sandbox"})
            suite.migrate("billing")
            suite.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            bench_billing.prepare_renewals(suite, args.subscriptions)
            suite.psql("SELECT pg_stat_statements_reset()")
            started = time.monotonic()
            suite.start_service("billing")
            paid = "SELECT count(*) FROM billing.invoices WHERE reason = 'subscription_cycle' AND status = 'paid'"
            bench_billing.wait_for(suite, paid, 2 * args.subscriptions, 3600, "renewals paid")
            renewed = time.monotonic() - started
            bench_billing.wait_for(suite, "SELECT count(*) FROM billing.sandbox_events WHERE delivered_at IS NOT NULL",
                                   args.subscriptions, 3600, "webhooks delivered")
            echoed = time.monotonic() - started
            billing_cpu = cpu_seconds(suite.pid("billing"))
            postgres_cpu = sum(cpu_seconds(int(p)) for p in suite.psql(
                "SELECT pid FROM pg_stat_activity WHERE usename = 'billing'").split())
            suite.stop_service("billing")
            n = args.subscriptions
            say(f"{n} renewals paid in {renewed:.1f} s, webhooks delivered at {echoed:.1f} s; CPU: billing {billing_cpu:.1f} s, "
                f"its Postgres connections {postgres_cpu:.1f} s")
            print(suite.psql(f"""
SELECT round(sum(calls)::numeric / {n}, 1) AS statements_per_renewal, round(sum(total_exec_time)::numeric / 1000, 1) AS exec_s
FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'SELECT count(*) FROM billing.%'"""))
            print(suite.psql(f"""
SELECT round(calls::numeric / {n}, 2) AS per_renewal, round(total_exec_time::numeric) AS ms,
       left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
ORDER BY total_exec_time DESC LIMIT {args.top}"""))
            if args.explain_ms:
                print(suite.log_path("postgres").read_text())
    except SuiteError as e:
        say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
