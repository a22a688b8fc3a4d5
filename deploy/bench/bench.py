#!/usr/bin/env python3
"""`make bench`: release build, a throwaway suite on free loopback ports, then wrk.

Measures billing `GET /v1/plans` straight to billing and through the gateway (requests/s, p50,
p99, errors); identity (see measure_identity): Argon2id logins, refresh-token rotation, and token
verification at the gateway vs. straight to identity and orders (wrk scripts: deploy/bench/*.lua);
the event path outbox -> consumers and the job runner (deploy/bench/events_jobs.py). Writes Markdown tables to stdout
and to deploy/bench/results.md, and the headline figures to deploy/bench/results.json (deploy/bench/report.py
puts them in the README's table).

    deploy/bench/run.sh [--duration 15s] [--connections 32] [--threads 2] [--no-build]
                        [--bin-dir DIR] [--output FILE]
Env: BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS (defaults for the flags above),
BENCH_LOGIN_CONNECTIONS (16: concurrent clients in the login scenario); for the front door (front_door.py)
BENCH_FRONT_DOOR_ROUNDS (3), BENCH_MODERATE_ROUNDS (5), BENCH_PAUSE_MS (2: the moderate load's pause).
wrk runs on the same 2-core machine as the suite, so absolute numbers are modest; compare rows.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import time
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = ROOT / "deploy" / "bench"
sys.path.insert(0, str(ROOT / "deploy" / "dev"))

from suite import Suite, SuiteError, say  # noqa: E402
from front_door import measure_front_door, render_front_door  # noqa: E402
from events_jobs import measure_events, measure_jobs, render_events, render_jobs  # noqa: E402
from report import figure, write_results_json  # noqa: E402

# Extra env for the gateway during the benchmark (e.g. a knob that lifts per-IP rate limits, so
# wrk's single client address measures proxying rather than 429s). Empty until the gateway has one.
# wrk is one client address: lift the per-address limits (the buckets are still consulted,
# so their cost is measured) or the table would count 429s.
GATEWAY_BENCH_ENV: dict[str, str] = {"RATE_LIMIT_BURST": "1000000", "RATE_LIMIT_PER_SECOND": "1000000"}
WARMUP = "3s"


@dataclass
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    raw: str


def parse_wrk(out: str) -> WrkResult:
    """Parses `wrk --latency` output (latencies converted to milliseconds)."""
    def number(pattern: str, default=None):
        m = re.search(pattern, out, re.M)
        if not m:
            if default is not None:
                return default
            raise SuiteError(f"cannot find {pattern!r} in wrk output:\n{out}")
        return m.groups()

    def latency(pct: str) -> float:
        value, unit = number(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$")
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    errors = number(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                    ("0", "0", "0", "0"))
    return WrkResult(
        requests_per_s=float(number(r"^Requests/sec:\s+([\d.]+)")[0]),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(number(r"^\s*(\d+) requests in")[0]),
        non_2xx=int(number(r"Non-2xx or 3xx responses:\s+(\d+)", ("0",))[0]),
        socket_errors=sum(int(e) for e in errors),
        raw=out,
    )


def wrk(url: str, *, threads: int, connections: int, duration: str, script: str | None = None,
        env: dict[str, str] | None = None, timeout: str | None = None) -> WrkResult:
    """Runs wrk; `script` names a deploy/bench/*.lua file, `env` reaches it through os.getenv
    (tokens and credentials stay off the command line)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}", "--latency"]
    if timeout:
        cmd.append(f"--timeout={timeout}")
    if script:
        cmd += ["-s", str(BENCH_DIR / script)]
    cmd.append(url)
    say(" ".join(cmd))
    seconds = _seconds(duration)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60,
                       stdin=subprocess.DEVNULL, env=dict(os.environ, **(env or {})))
    if r.returncode != 0:
        raise SuiteError(f"wrk failed ({r.returncode}): {r.stderr or r.stdout}")
    return parse_wrk(r.stdout)


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", duration)
    if not m:
        raise SystemExit(f"bad duration {duration!r} (e.g. 15s, 2m)")
    return float(m.group(1)) * {"s": 1, None: 1, "m": 60, "h": 3600}[m.group(2)]


# Identity (measure_identity). Login and refresh go straight to identity: the gateway puts
# /v1/auth/ in its `auth` rate-limit class (20 burst, 30/min per client address), and wrk is one
# address, so through the gateway the rows would count 429s.
LOGIN_CONNECTIONS = int(os.environ.get("BENCH_LOGIN_CONNECTIONS", "16"))
# A login waits for a hashing thread; wrk's default 2 s timeout would drop slow ones from the
# percentiles (wrk records a request over its timeout as an error, not as a latency).
LOGIN_TIMEOUT = "10s"
ARGON2 = "Argon2id m=19 MiB, t=2, p=1"
REFRESH_TOKENS_LINE = r"^refresh tokens: sent (\d+), rotated (\d+), resent (\d+), starved (\d+)$"


def call_json(url: str, body: dict | None = None, *, token: str | None = None, expect: int = 200, method: str | None = None) -> dict:
    """One JSON request for a bench's setup (POST when there is a body); anything but `expect` stops the bench."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            status, payload = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    if status != expect:
        raise SuiteError(f"{request.method} {url} answered {status}, not {expect}: {payload[:300]!r}")
    return json.loads(payload) if payload else {}


def _post_json(url: str, body: dict, expect: int = 200) -> dict:
    return call_json(url, body, expect=expect)


def _expect_200(url: str, token: str | None = None) -> None:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    if status != 200:
        raise SuiteError(f"GET {url} answered {status}, not 200")


def measure_identity(suite: Suite, args) -> dict:
    """Identity's costly and its frequent paths, each a warm-up then a measured wrk run.

    - login: one registered user logs in over and over from LOGIN_CONNECTIONS connections
      (login.lua). Every login succeeds (identity throttles failures only): throttle check,
      Argon2id verification on NIO's blocking thread pool (one thread per core), a new session
      and refresh token in one transaction.
    - refresh: one login per wrk connection just before each run; refresh.lua then always sends
      a session's newest refresh token, so each token is presented once (checked: its done()
      line). Rotation is one transaction (lock the token and its session, mark the token used,
      touch the session, insert the new token) and signs a new access token.
    - token verification: `GET /v1/users/me` (identity, one primary-key read) and `GET /v1/orders`
      (orders, one indexed keyset query, no orders) with a Bearer access token from a fresh
      login, straight to the service and through the gateway (which verifies the token, then the
      service verifies it again).
    """
    identity = suite.url("identity")
    credentials = {"email": "bench-user@example.com", "password": secrets.token_urlsafe(18)}
    _post_json(identity + "/v1/auth/register",
               dict(credentials, displayName="Bench User", role="buyer"), expect=201)

    def login() -> dict:
        return _post_json(identity + "/v1/auth/login", credentials)

    def measure(url: str, *, connections: int, script: str, env, timeout: str | None = None) -> WrkResult:
        """A warm-up, then the measured run; `env()` is called before each (fresh tokens)."""
        threads = min(args.threads, connections)
        wrk(url, threads=threads, connections=connections, duration=WARMUP, script=script,
            env=env(threads, connections), timeout=timeout)
        return wrk(url, threads=threads, connections=connections, duration=args.duration,
                   script=script, env=env(threads, connections), timeout=timeout)

    def sessions(threads: int, connections: int) -> dict[str, str]:
        """One login per wrk connection, plus one per thread for the request wrk builds once to
        inspect the script (see refresh.lua); its token file ("<thread> <token>" lines)."""
        path = suite.data_dir / "bench-refresh-tokens"
        count = (connections // threads + 1) * threads  # wrk gives each thread connections // threads
        path.write_text("".join(f"{i % threads} {login()['refreshToken']}\n" for i in range(count)))
        return {"BENCH_REFRESH_TOKENS": str(path)}

    rows: list[tuple[str, int, WrkResult]] = []
    say(f"identity: login ({LOGIN_CONNECTIONS} connections)")
    body = json.dumps(credentials)
    login_result = measure(identity + "/v1/auth/login", connections=LOGIN_CONNECTIONS, script="login.lua",
                           env=lambda *_: {"BENCH_LOGIN_BODY": body}, timeout=LOGIN_TIMEOUT)
    rows.append(("identity `POST /v1/auth/login` direct (Argon2id verification, new session)",
                 LOGIN_CONNECTIONS, login_result))

    say(f"identity: refresh ({args.connections} connections, one session each)")
    refresh = measure(identity + "/v1/auth/refresh", connections=args.connections, script="refresh.lua",
                      env=sessions)
    rows.append(("identity `POST /v1/auth/refresh` direct (rotation, one session per connection)",
                 args.connections, refresh))
    m = re.search(REFRESH_TOKENS_LINE, refresh.raw, re.M)
    if not m:
        raise SuiteError(f"refresh.lua printed no token summary:\n{refresh.raw}")
    sent, rotated, resent, starved = (int(g) for g in m.groups())
    if resent or starved or refresh.non_2xx or sent - rotated > args.connections + args.threads:
        raise SuiteError(f"refresh benchmark invalid: {m.group(0)}, {refresh.non_2xx} non-2xx "
                         f"(every token must be presented once and rotate)")

    pairs = []
    for what, service, path in (("identity `GET /v1/users/me`", "identity", "/v1/users/me"),
                                ("orders `GET /v1/orders`", "orders", "/v1/orders")):
        for where, base in (("direct", suite.url(service)), ("through the gateway", suite.gateway_url)):
            token = login()["accessToken"]  # 15 minutes: plenty for one warm-up and run
            _expect_200(base + path, token)
            say(f"{what} {where}")
            result = measure(base + path, connections=args.connections, script="bearer.lua",
                             env=lambda *_, token=token: {"BENCH_ACCESS_TOKEN": token})
            rows.append((f"{what} {where}", args.connections, result))
        pairs.append((what, rows[-2][2], rows[-1][2]))

    cores = os.cpu_count() or 1
    return {"rows": rows, "overheads": pairs, "cores": cores,
            "logins_per_s": login_result.requests_per_s,
            "logins_per_core": login_result.requests_per_s / cores,
            "refresh_tokens": {"sent": sent, "rotated": rotated, "resent": resent, "starved": starved}}


def machine(bin_dir: Path | None = None) -> dict[str, str]:
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    except OSError:
        pass
    # The commit of the tree the binaries were built in (a --bin-dir inside another checkout or
    # worktree names that one), else of this checkout.
    tree = ROOT
    if bin_dir is not None and bin_dir.is_dir() and subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=bin_dir, capture_output=True).returncode == 0:
        tree = bin_dir
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    # What `make bench` itself writes (the results and the README's table) does not count: the
    # areas after the first would otherwise all be marked dirty by the ones before them.
    dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!deploy/bench/*results.*", ":!README.md"], cwd=tree,
                           capture_output=True, text=True).stdout.strip()
    return {"cores": str(os.cpu_count()), "cpu": model or platform.processor() or "unknown",
            "memory": mem or "unknown", "kernel": platform.release(),
            "commit": commit + (" (with uncommitted changes)" if dirty else "")}


def _row(name: str, r: WrkResult, connections: int | None = None) -> str:
    conn = f" {connections} |" if connections is not None else ""
    return (f"| {name} |{conn} {r.requests_per_s:,.0f} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms "
            f"| {r.requests:,} | {r.non_2xx:,} | {r.socket_errors:,} |")


def _overhead(name: str, direct: WrkResult, gw: WrkResult, connections: bool = False) -> str:
    return (f"| {name} |{' |' if connections else ''} {gw.requests_per_s / direct.requests_per_s - 1:+.0%} "
            f"| {gw.p50_ms - direct.p50_ms:+.2f} ms | {gw.p99_ms - direct.p99_ms:+.2f} ms | | | |")


def render(rows, identity, outbox, jobs, *, m, args, bin_dir, when) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"- date: {when:%Y-%m-%d %H:%M} UTC",
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}",
        f"- build: {bin_dir}, commit {m['commit']}",
        f"- load: `wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency` on "
        f"loopback after a {WARMUP} warm-up; wrk shares the machine's cores with the suite",
        "",
        "| scenario | requests/s | p50 | p99 | requests | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(_row(name, r))
    if len(rows) == 2:
        (_, direct), (_, gw) = rows
        lines.append(_overhead("gateway overhead", direct, gw))
    if identity:
        t = identity["refresh_tokens"]
        lines += [
            "",
            f"Identity: passwords are {ARGON2}, verified on NIO's blocking thread pool (one thread "
            f"per core, never the event loop). Login and refresh are measured straight to identity: "
            f"the gateway rate-limits `/v1/auth/` per client address and wrk is one address. "
            f"Login runs {LOGIN_CONNECTIONS} concurrent clients (wrk timeout {LOGIN_TIMEOUT}); "
            f"the other rows `-c{args.connections}`.",
            "",
            "| identity scenario | connections | requests/s | p50 | p99 | requests | non-2xx | socket errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, connections, r in identity["rows"]:
            lines.append(_row(name, r, connections))
        for what, direct, gw in identity["overheads"]:
            lines.append(_overhead(f"gateway overhead, {what}", direct, gw, connections=True))
        lines += [
            "",
            f"- logins/s per core: {identity['logins_per_core']:,.1f} ({identity['logins_per_s']:,.1f} "
            f"logins/s ÷ {identity['cores']} cores; wrk, Postgres and the rest of the suite run on "
            f"the same cores)",
            f"- refresh tokens: sent {t['sent']:,}, rotated {t['rotated']:,}, presented twice "
            f"{t['resent']}, requests without a token {t['starved']} (each token is presented once, "
            f"so the reuse grace window never applies; the difference is the requests still in "
            f"flight when wrk stopped)",
        ]
    if outbox:
        lines += ["", *render_events(outbox)]
    if jobs:
        lines += ["", *render_jobs(jobs)]
    return "\n".join(lines) + "\n"


def headline(identity: dict, front: dict, outbox: list[dict], jobs: dict) -> list[dict]:
    """The figures of this run the README's table shows (deploy/bench/report.py), for results.json."""
    heavy, moderate = front["results"]["heavy"], front["results"]["moderate"]
    jwt, nginx = heavy["gateway, JWT verified"], heavy["nginx reverse proxy"]
    added = sorted(moderate["gateway, JWT verified"][3])  # the median round, as render_front_door
    (_, login_connections, _), (_, refresh_connections, refresh) = identity["rows"][:2]
    ten = next(run for run in outbox if run["consumers"] > 1 and "fetch wait 10 ms" in run["label"])
    return [
        figure("front-door.jwt-vs-nginx", 100 * jwt[1].requests_per_s / nginx[1].requests_per_s, connections=jwt[0]),
        figure("front-door.jwt-p99-added", added[len(added) // 2]),
        figure("identity.logins-per-core", identity["logins_per_core"], clients=login_connections,
               note=f"{identity['logins_per_s']:,.1f} logins/s on {identity['cores']} cores"),
        figure("identity.refresh", refresh.requests_per_s, connections=refresh_connections),
        figure("events.steady-p99", ten["steady"]["p99_ms"]),
        figure("events.burst", ten["burst_events"] / ten["burst"]["seconds"], events=ten["burst_events"]),
        figure("jobs.drain", jobs["jobsPerSecond"], jobs=jobs["jobs"]),
        figure("jobs.lateness-p99", jobs["latenessP99Ms"], rate=jobs["rate"]),
    ]


def _bench_token(suite: Suite) -> str:
    """An access token of a fresh buyer account (registered and logged in straight at identity)."""
    identity = suite.url("identity")
    credentials = {"email": f"bench-{secrets.token_hex(4)}@example.com", "password": secrets.token_urlsafe(18)}
    _post_json(identity + "/v1/auth/register", dict(credentials, displayName="Bench Front Door", role="buyer"), expect=201)
    return _post_json(identity + "/v1/auth/login", credentials)["accessToken"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", default=os.environ.get("BENCH_DURATION", "15s"))
    p.add_argument("--connections", type=int, default=int(os.environ.get("BENCH_CONNECTIONS", "32")))
    p.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    p.add_argument("--no-build", action="store_true", help="use existing binaries")
    p.add_argument("--bin-dir", type=Path, default=None, help="default .build/release")
    p.add_argument("--output", type=Path, default=ROOT / "deploy" / "bench" / "results.md")
    p.add_argument("--only", choices=["all", "front-door", "events", "jobs"], default="all",
                   help="one part only (results to stdout, not the file): front-door (gateway vs nginx), "
                        "events (outbox -> consumers), jobs (the job runner)")
    args = p.parse_args()
    _seconds(args.duration)

    suite = Suite.throwaway(ROOT, build_config="release", bin_dir=args.bin_dir,
                            service_env={"gateway": GATEWAY_BENCH_ENV})
    try:
        with suite:  # stops whatever started and removes the throwaway dir, whatever happens
            suite.ensure_packages()
            if shutil.which("wrk") is None:
                raise SuiteError("wrk is not installed (apt-get install wrk)")
            if not args.no_build and args.bin_dir is None:
                suite.build()
            suite.start_postgres()
            suite.start_broker()
            suite.migrate_all()
            suite.start_all()
            if args.only == "front-door":
                front = measure_front_door(suite, args, wrk=wrk, gateway_env=GATEWAY_BENCH_ENV,
                                           login_token=lambda: _bench_token(suite))
                print("\n".join(render_front_door(front, args)))
                return 0
            if args.only == "events":
                print("\n".join(render_events(measure_events(suite))))
                return 0
            if args.only == "jobs":
                print("\n".join(render_jobs(measure_jobs(suite))))
                return 0
            targets = [("billing `GET /v1/plans` direct", suite.url("billing") + "/v1/plans"),
                       ("billing `GET /v1/plans` through the gateway",
                        suite.gateway_url + "/v1/plans")]
            for _, url in targets:
                with urllib.request.urlopen(url, timeout=10) as r:
                    if r.status != 200:
                        raise SuiteError(f"GET {url} answered {r.status}, not 200")
            rows = []
            for name, url in targets:
                wrk(url, threads=args.threads, connections=args.connections, duration=WARMUP)
                rows.append((name, wrk(url, threads=args.threads, connections=args.connections,
                                       duration=args.duration)))
            identity = measure_identity(suite, args)
            front = measure_front_door(suite, args, wrk=wrk, gateway_env=GATEWAY_BENCH_ENV,
                                       login_token=lambda: _bench_token(suite))
            outbox = measure_events(suite)
            jobs = measure_jobs(suite)
    except SuiteError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130

    when = dt.datetime.now(dt.timezone.utc)
    m = machine(suite.bin_dir)
    table = render(rows, identity, outbox, jobs, m=m, args=args, bin_dir=suite.bin_dir, when=when)
    table += "\n".join(render_front_door(front, args)) + "\n"
    args.output.write_text(table)
    figures = write_results_json(args.output, "core", when=when, machine=m, figures=headline(identity, front, outbox, jobs))
    print(table, end="")
    say(f"written to {args.output} and {figures}")
    bad = [name for name, r in rows + [(n, r) for n, _, r in identity["rows"]]
           if r.non_2xx or r.socket_errors]
    if bad:
        say(f"warning: errors during {', '.join(bad)} (see the table)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
