"""`make bench`'s event-path and job-runner figures (imported by bench.py).

Event path: identity's outbox -> dev broker -> the consumers' inboxes and users projections.
Events are written straight into identity's outbox (as a registration writes them, without the
Argon2 hashing in the way); latency per event and consumer is the consumer's commit
(`inbox.received_at`) minus the producer's (`outbox.created_at`), both from Postgres's clock.
Measured three ways, because on this machine the dev broker shapes the figures:

- the four consumers with the services' default fetch wait (`KAFKA_FETCH_WAIT_MAX_MS`, 100 ms: the
  mock cluster holds every fetch that long, where a real broker answers as soon as data arrives);
- the four consumers with 10 ms, which suite.py gives them against the dev broker;
- one consumer alone (listings), fetch wait 10 ms: what one consuming service can take.

Jobs: `JobProbe bench` (Tests/JobProbe) runs the platform's JobRunner on a schema of its own in
the suite's Postgres: a backlog of due jobs drained (jobs completed per second), then jobs
scheduled at a steady rate, each due a second later (due-to-start lateness).
"""
from __future__ import annotations

import json
import subprocess
import time

from suite import Suite, SuiteError, say

CONSUMERS = ("listings", "billing", "orders", "messaging")


def write_outbox(suite: Suite, batches: int, per_batch: int, pause: float) -> str:
    """Writes user.registered events into identity's outbox, `per_batch` per transaction, each
    followed by the NOTIFY a registration sends. Returns the start time (Postgres clock)."""
    start = suite.psql("SELECT clock_timestamp()").strip()
    suite.psql(f"""
DO $$
BEGIN
  FOR i IN 1..{batches} LOOP
    INSERT INTO identity.outbox (event_id, topic, key, type, source, subject, time, data, created_at)
    SELECT e, 'identity.users.v1', u::text, 'marketplace.identity.user.registered.v1',
           '/marketplace/identity', 'users/' || u::text, clock_timestamp(),
           convert_to(json_build_object('userId', u, 'displayName', 'bench user', 'roles', json_build_array('buyer'),
                      'status', 'active', 'registeredAt',
                      to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text, 'UTF8'),
           clock_timestamp()
    FROM (SELECT gen_random_uuid() AS e, gen_random_uuid() AS u FROM generate_series(1, {per_batch})) g;
    COMMIT;
    PERFORM pg_notify('outbox_identity', '');
    PERFORM pg_sleep({pause});
  END LOOP;
END $$;""")
    return start


def applied(suite: Suite, start: str, total: int, consumers: tuple[str, ...]) -> dict:
    """Waits until each of `consumers` applied `total` events written since `start`; the
    per-event latency percentiles and the span from the first write to the last commit."""
    deadline = time.monotonic() + 600
    while True:
        counts = [int(suite.psql(f"SELECT count(*) FROM {c}.inbox WHERE received_at >= '{start}'").strip()) for c in consumers]
        if all(n >= total for n in counts):
            break
        if time.monotonic() > deadline:
            raise SuiteError(f"event benchmark: consumers applied {counts} of {total} within 600 s")
        time.sleep(0.1)
    union = " UNION ALL ".join(
        f"SELECT i.received_at, o.created_at FROM identity.outbox o JOIN {c}.inbox i ON i.event_id = o.event_id::text "
        f"WHERE o.created_at >= '{start}'" for c in consumers)
    row = suite.psql(f"""
SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),
       max(ms), EXTRACT(EPOCH FROM max(received_at) - min(created_at))
FROM (SELECT received_at, created_at, EXTRACT(EPOCH FROM received_at - created_at) * 1000 AS ms FROM ({union}) u) t""").strip()
    samples, p50, p99, worst, span = row.split("|")
    relay = float(suite.psql(
        f"SELECT EXTRACT(EPOCH FROM max(sent_at) - min(created_at)) FROM identity.outbox WHERE created_at >= '{start}'").strip())
    return {"samples": int(samples), "p50_ms": float(p50), "p99_ms": float(p99), "max_ms": float(worst),
            "seconds": float(span), "relay_seconds": relay}


def _restart(suite: Suite, names: tuple[str, ...], env: dict[str, str]) -> None:
    for name in names:
        suite.service_env.setdefault(name, {}).update(env)
        suite.stop_service(name)
        suite.start_service(name)


def _warm_up(suite: Suite, consumers: tuple[str, ...]) -> None:
    """One event through every consumer: the consumer groups have formed and caught up."""
    start = write_outbox(suite, batches=1, per_batch=1, pause=0)
    applied(suite, start, 1, consumers)


def measure_events(suite: Suite, *, steady: int = 2000, burst: int = 10000) -> list[dict]:
    """The event path under a steady ~250 events/s and a burst, in the three set-ups above."""
    runs = []
    for label, fetch_wait, consumers in (("four consumers, fetch wait 100 ms (the services' default)", "100", CONSUMERS),
                                         ("four consumers, fetch wait 10 ms (suite.py's for the dev broker)", "10", CONSUMERS),
                                         ("one consumer (listings), fetch wait 10 ms", "10", ("listings",))):
        say(f"events: {label}")
        _restart(suite, CONSUMERS, {"KAFKA_FETCH_WAIT_MAX_MS": fetch_wait})
        for name in CONSUMERS:
            if name not in consumers:
                suite.stop_service(name)
        _warm_up(suite, consumers)
        start = write_outbox(suite, batches=steady // 10, per_batch=10, pause=0.04)
        steady_result = applied(suite, start, (steady // 10) * 10, consumers)
        start = write_outbox(suite, batches=burst // 500, per_batch=500, pause=0)
        burst_result = applied(suite, start, (burst // 500) * 500, consumers)
        runs.append({"label": label, "consumers": len(consumers), "steady": steady_result, "burst": burst_result,
                     "burst_events": (burst // 500) * 500})
    # Back to the suite's own setting (suite.py gives the dev broker's consumers 10 ms).
    _restart(suite, CONSUMERS, {"KAFKA_FETCH_WAIT_MAX_MS": "10"})
    _warm_up(suite, CONSUMERS)
    return runs


def render_events(runs: list[dict]) -> list[str]:
    lines = [
        "| event path (identity outbox → inbox + users projection) | load | applications | p50 | p99 | max | throughput |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        s, b = run["steady"], run["burst"]
        lines.append(f"| {run['label']} | steady ~250 events/s | {s['samples']:,} | {s['p50_ms']:.1f} ms | {s['p99_ms']:.1f} ms "
                     f"| {s['max_ms']:.0f} ms | keeps up |")
        per_consumer = run["burst_events"] / b["seconds"]
        lines.append(f"| {run['label']} | burst: {run['burst_events']:,} at once | {b['samples']:,} | {b['p50_ms']:.0f} ms "
                     f"| {b['p99_ms']:.0f} ms | {b['max_ms']:.0f} ms | {per_consumer:,.0f} events/s per consumer "
                     f"(all applied in {b['seconds']:.2f} s; relay published all in {b['relay_seconds']:.2f} s) |")
    return lines


def measure_jobs(suite: Suite, *, jobs: int = 20000, rate: int = 100, seconds: int = 20) -> dict:
    probe = suite.bin_dir / "JobProbe"
    if not probe.exists():
        raise SuiteError(f"{probe} is missing (swift build -c release builds it)")
    say(f"jobs: {jobs:,} due at once, then {rate}/s for {seconds} s")
    done = subprocess.run([str(probe), "bench", "--database-url", suite.superuser_dsn, "--schema", "bench_jobs",
                           "--jobs", str(jobs), "--rate", str(rate), "--seconds", str(seconds)],
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SuiteError(f"JobProbe bench failed: {done.stdout}{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render_jobs(result: dict) -> list[str]:
    return [
        "| job runner (one service: JOBS_CONCURRENCY=4, JOBS_BATCH_SIZE=20) | figure |",
        "|---|---:|",
        f"| {result['jobs']:,} due jobs drained | **{result['jobsPerSecond']:,.0f} jobs/s** ({result['seconds']:.2f} s) |",
        f"| due-to-start lateness at a steady {result['rate']}/s ({result['latenessJobs']:,} jobs) | "
        f"p50 {result['latenessP50Ms']:.1f} ms, **p99 {result['latenessP99Ms']:.1f} ms**, max {result['latenessMaxMs']:.0f} ms |",
    ]
