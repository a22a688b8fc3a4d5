"""The gateway against its yardstick: the same upstream endpoint (billing `GET /v1/plans`)
straight to billing, through the gateway on a public route, through the gateway with JWT
verification (a second gateway whose route table makes `/v1/plans` authenticated), and
through nginx configured as a plain keep-alive reverse proxy. Each at the bench's heavy load
at four connections sending back to back, and at a moderate load: four connections that each
pause between requests (about a third of the heavy throughput), where the machine has idle CPU
and the latency the proxy adds is not hidden by queueing. Plus the JWT gateway's memory at rest
and its peak under the heavy load.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from suite import Suite, SuiteError, free_ports, say

FOUR = (1, 4)  # wrk threads, connections
# Each of the four connections waits this long after an answer before its next request.
PAUSE_MS = int(os.environ.get("BENCH_PAUSE_MS", "2"))
REPEATS = int(os.environ.get("BENCH_FRONT_DOOR_ROUNDS", "3"))
# The latency target is judged at the moderate load: more rounds there, since a p99 moves more
# between rounds than a throughput does.
MODERATE_REPEATS = max(REPEATS, int(os.environ.get("BENCH_MODERATE_ROUNDS", "5")))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Samples a process's resident memory every 50 ms while the `with` block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, _rss_kib(self.pid))
            time.sleep(0.05)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _wait_ready(url: str, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SuiteError(f"{what} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SuiteError(f"{what} did not answer 200 on {url} within {timeout:.0f}s")


def _stop(process: subprocess.Popen) -> None:
    """Stops a process this module started, by its pid (SIGTERM, then SIGKILL)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def nginx_config(directory: Path, listen: int, upstream_port: int) -> str:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes auto;
pid {directory}/nginx.pid;
error_log {directory}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {directory}/nginx-access.log;
    client_body_temp_path {directory}/client-body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    upstream billing {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://billing;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


def measure_front_door(suite: Suite, args, *, wrk, gateway_env: dict[str, str], login_token) -> dict:
    """`wrk(url, threads=, connections=, duration=, script=, env=)` runs one measurement;
    `login_token()` returns a fresh access token."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        raise SuiteError("nginx is not installed (apt-get install nginx)")
    work = suite.data_dir / "front-door"
    work.mkdir(parents=True, exist_ok=True)
    nginx_port, jwt_port = free_ports(2)
    billing_port = int(suite.url("billing").rsplit(":", 1)[1])
    (work / "nginx.conf").write_text(nginx_config(work, nginx_port, billing_port))
    routes = work / "routes.json"
    routes.write_text(json.dumps([{"prefix": "/v1/plans", "upstream": "billing", "access": "authenticated"}]))
    env = {**os.environ, **suite.env_for("gateway"), **gateway_env, "HTTP_PORT": str(jwt_port), "ROUTES_FILE": str(routes)}
    started: list[subprocess.Popen] = []
    try:
        with open(work / "nginx.out", "wb") as out:
            started.append(subprocess.Popen([nginx, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        with open(suite.log_dir / "gateway-jwt.log", "wb") as out:
            jwt_gateway = subprocess.Popen([str(suite.bin_dir / "gateway"), "serve"], env=env, stdout=out,
                                           stderr=subprocess.STDOUT, start_new_session=True)
        started.append(jwt_gateway)
        nginx_url, jwt_url = f"http://127.0.0.1:{nginx_port}/v1/plans", f"http://127.0.0.1:{jwt_port}/v1/plans"
        _wait_ready(nginx_url, started[0], "nginx")
        _wait_ready(f"http://127.0.0.1:{jwt_port}/health/ready", jwt_gateway, "the JWT gateway")
        time.sleep(1)
        rest_kib = _rss_kib(jwt_gateway.pid)
        token = login_token()
        targets = [
            ("direct to billing", suite.url("billing") + "/v1/plans", None),
            ("gateway, public route", suite.gateway_url + "/v1/plans", None),
            ("gateway, JWT verified", jwt_url, token),
            ("nginx reverse proxy", nginx_url, None),
        ]
        results: dict[str, dict] = {}
        load_kib = 0
        loads = (("heavy", (args.threads, args.connections), None), ("4 connections", FOUR, None), ("moderate", FOUR, PAUSE_MS))
        for load, (threads, connections), pause in loads:
            runs: dict[str, list] = {name: [] for name, _, _ in targets}
            # Rounds interleave the four rows, so drift on a shared machine hits them alike; each
            # row reports its median round.
            rounds = REPEATS if pause is None else MODERATE_REPEATS
            for round_number in range(1, rounds + 1):
                for name, url, bearer in targets:
                    say(f"front door: {name}, {load} load ({connections} connections), round {round_number}/{rounds}")
                    env = {"BENCH_ACCESS_TOKEN": bearer} if bearer else {}
                    if pause is not None:
                        env["BENCH_PAUSE_MS"] = str(pause)
                    script = "paced.lua" if pause is not None else "bearer.lua" if bearer else None
                    kwargs = dict(threads=threads, connections=connections, script=script, env=env or None)
                    if round_number == 1:
                        wrk(url, duration="3s", **kwargs)
                    if bearer and load == "heavy":
                        with PeakMemory(jwt_gateway.pid) as peak:
                            runs[name].append(wrk(url, duration=args.duration, **kwargs))
                        load_kib = max(load_kib, peak.peak_kib)
                    else:
                        runs[name].append(wrk(url, duration=args.duration, **kwargs))
            for name, _, _ in targets:
                ordered = sorted(runs[name], key=lambda r: r.requests_per_s)
                # p99 added, paired within each round (the same minute of machine noise).
                added = [run.p99_ms - direct.p99_ms for run, direct in zip(runs[name], runs["direct to billing"])]
                results.setdefault(load, {})[name] = (connections, ordered[len(ordered) // 2], [r.requests_per_s for r in runs[name]], added)
        return {"results": results, "rest_kib": rest_kib, "load_kib": load_kib, "pause_ms": PAUSE_MS,
                "rounds": REPEATS, "moderate_rounds": MODERATE_REPEATS,
                "nginx_version": subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()}
    finally:
        for process in reversed(started):
            _stop(process)


def render_front_door(front: dict, args) -> list[str]:
    lines = ["", "## The front door: gateway vs nginx (billing `GET /v1/plans`)", "",
             f"Same upstream endpoint for every row. nginx ({front['nginx_version'].replace('nginx version: ', '')}) "
             "is a plain reverse proxy with a keep-alive upstream pool and an access log; the gateway also "
             "logs every request, rate-limits, sets request ids and trace context, and in the JWT row "
             "verifies an EdDSA access token (and its revocation) before proxying.", "",
             f"Loads: heavy = {args.threads} wrk threads, {args.connections} connections back to back; "
             f"4 connections = one thread, 4 connections back to back (still saturates the 2 cores); "
             f"moderate = the same 4 connections, each pausing {front['pause_ms']} ms between requests.", "",
             f"Each row is the median of {front['rounds']} interleaved rounds ({front['moderate_rounds']} at the moderate load; "
             "every round's requests/s in brackets); "
             "p50 and p99 are that round's. \"p99 added\" is the route's p99 minus direct's p99 in the same "
             "round: the median of the rounds, every round's in brackets.", "",
             "| load | route | connections | requests/s | p50 | p99 | vs nginx | vs direct | p99 added vs direct | non-2xx |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for load, rows in front["results"].items():
        nginx_rps = rows["nginx reverse proxy"][1].requests_per_s
        direct = rows["direct to billing"][1]
        for name, (connections, r, rounds, added) in rows.items():
            spread = " / ".join(f"{value:,.0f}" for value in rounds)
            if name == "direct to billing":
                added_text = "—"
            else:
                added_text = f"{sorted(added)[len(added) // 2]:+.2f} ms ({' / '.join(f'{value:+.2f}' for value in added)})"
            lines.append(f"| {load} | {name} | {connections} | {r.requests_per_s:,.0f} ({spread}) | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms "
                         f"| {r.requests_per_s / nginx_rps:.0%} | {r.requests_per_s / direct.requests_per_s:.0%} "
                         f"| {added_text} | {r.non_2xx:,} |")
    lines += ["", f"- JWT gateway memory (RSS): {front['rest_kib'] / 1024:.1f} MiB at rest, "
              f"{front['load_kib'] / 1024:.1f} MiB peak under the heavy load"]
    return lines
