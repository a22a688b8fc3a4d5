#!/usr/bin/env python3
"""Stand-ins for the suite's executables, to test deploy/ scripts without a Swift build.

Symlink this file under the executable names (see make_bin_dir) and point suite.py at that
directory (bin_dir= / --bin-dir / MARKETPLACE_BIN_DIR). It follows the agreed interface
(the README and each Services/<Name>/README.md) just far enough to exercise the launcher:

  devbroker --address-file F --topics ... --partitions N
      listens on a loopback port (it speaks no Kafka), writes F atomically, prints `broker: ...`
  <service> migrate
      connects with DATABASE_URL (psql) and creates <service>.standin_migrations, so the role,
      its password and its search_path are really exercised
  <service> serve
      HTTP on HTTP_HOST:HTTP_PORT: /health/live, /health/ready (503 until the broker address
      answers TCP, and, for the gateway, until JWKS_URL answers), /metrics, GET /v1/plans
      (billing), /.well-known/jwks.json (identity); the gateway proxies by the default route table
      prefixes to UPSTREAM_*. Exits 0 on SIGTERM.
      With TEST_CLOCK=on, a domain service (not the gateway) also serves the business test clock:
      GET /internal/test-clock -> {"now": RFC 3339, "offsetSeconds": n}; POST {"advanceSeconds":
      n >= 0} moves it forward first (422 otherwise). The offset lives in memory, as the real one.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

NAMES = ("gateway", "identity", "listings", "billing", "orders", "messaging", "devbroker")
ROUTES = [("/v1/auth/", "IDENTITY"), ("/.well-known/", "IDENTITY"), ("/v1/users", "IDENTITY"),
          ("/v1/categories", "LISTINGS"), ("/v1/listings", "LISTINGS"), ("/v1/plans", "BILLING"),
          ("/v1/subscriptions", "BILLING"), ("/v1/vendor/subscription", "BILLING"), ("/v1/invoices", "BILLING"),
          ("/v1/webhooks/", "BILLING"), ("/v1/admin/subscriptions", "BILLING"), ("/v1/admin/ledger", "BILLING"),
          ("/v1/orders", "ORDERS"),
          ("/v1/conversations", "MESSAGING")]
PLANS = {"items": [{"id": "0190c6c2-0000-7000-8000-000000000001", "code": "basic",
                    "name": "Basic", "description": "stand-in",
                    "price": {"amount": 990, "currency": "EUR"}, "interval": "month", "trialDays": 14,
                    "listingQuota": 10, "commissionBps": 800}], "nextCursor": None}


def make_bin_dir(path: Path) -> Path:
    """Creates path/<name> symlinks to this file for every executable; returns path."""
    path.mkdir(parents=True, exist_ok=True)
    me = Path(__file__).resolve()
    os.chmod(me, 0o755)
    for name in NAMES:
        link = path / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(me)
    return path


def devbroker(args: list[str]) -> int:
    addr_file = Path(args[args.index("--address-file") + 1])
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    address = f"127.0.0.1:{srv.getsockname()[1]}"
    time.sleep(0.3)  # like a real broker, not instantly ready
    tmp = addr_file.with_name(addr_file.name + ".tmp")
    tmp.write_text(address + "\n")
    tmp.replace(addr_file)
    print(f"broker: {address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    srv.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
            conn.close()
        except (socket.timeout, OSError):
            pass
    print(json.dumps({"message": "broker stopped"}), flush=True)
    return 0


def migrate(name: str) -> int:
    url = os.environ["DATABASE_URL"]
    r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c",
                        "CREATE TABLE IF NOT EXISTS standin_migrations (id int PRIMARY KEY);"
                        "INSERT INTO standin_migrations VALUES (1) ON CONFLICT DO NOTHING;"
                        "SELECT current_schema();"],
                       capture_output=True, text=True)
    print(json.dumps({"message": "migrate", "service": name, "rc": r.returncode,
                      "out": r.stdout.strip(), "err": r.stderr.strip()}), flush=True)
    return r.returncode


def reachable(hostport: str) -> bool:
    host, _, port = hostport.partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


class TestClock:
    """The business clock's offset from the wall clock, moved only forward."""

    def __init__(self):
        self.offset = 0
        self.lock = threading.Lock()

    def advance(self, seconds: int) -> None:
        with self.lock:
            self.offset += seconds

    def answer(self) -> dict:
        with self.lock:
            offset = self.offset
        now = datetime.now(timezone.utc) + timedelta(seconds=offset)
        return {"now": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "offsetSeconds": offset}


def serve(name: str) -> int:
    port = int(os.environ["HTTP_PORT"])
    host = os.environ.get("HTTP_HOST", "127.0.0.1")
    clock = TestClock() if name != "gateway" and os.environ.get("TEST_CLOCK") == "on" else None

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def reply(self, status, body, ctype="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-Id", "standin")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/health/live":
                return self.reply(200, {"status": "ok"})
            if path == "/health/ready":
                checks = {}
                if name == "gateway":
                    try:
                        urllib.request.urlopen(os.environ["JWKS_URL"], timeout=1).read()
                        checks["jwks"] = "ok"
                    except (urllib.error.URLError, OSError):
                        checks["jwks"] = "fail"
                else:
                    checks["postgres"] = "ok"
                    checks["migrations"] = "ok"
                    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
                    checks["kafka"] = "ok" if kafka and reachable(kafka) else "fail"
                ok = all(v == "ok" for v in checks.values())
                return self.reply(200 if ok else 503,
                                  {"status": "ready" if ok else "not_ready", "checks": checks})
            if path == "/metrics":
                return self.reply(200, b"standin_up 1\n", "text/plain")
            if name == "gateway":
                for prefix, up in ROUTES:
                    if path.startswith(prefix):
                        try:
                            with urllib.request.urlopen(os.environ[f"UPSTREAM_{up}"] + self.path,
                                                        timeout=5) as r:
                                return self.reply(r.status, r.read())
                        except urllib.error.HTTPError as e:
                            return self.reply(e.code, e.read())
                        except (urllib.error.URLError, OSError):
                            return self.reply(502, {"status": 502, "title": "Bad Gateway"})
            if clock and path == "/internal/test-clock":
                return self.reply(200, clock.answer())
            if name == "billing" and path == "/v1/plans":
                return self.reply(200, PLANS)
            if name == "identity" and path == "/.well-known/jwks.json":
                return self.reply(200, {"keys": []})
            return self.reply(404, {"status": 404, "title": "Not Found"})

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not clock or self.path.split("?")[0] != "/internal/test-clock":
                return self.reply(404, {"status": 404, "title": "Not Found"})
            try:
                seconds = json.loads(body)["advanceSeconds"]
            except (ValueError, KeyError, TypeError):
                seconds = None
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                return self.reply(422, {"status": 422, "title": "advanceSeconds: an integer >= 0"})
            clock.advance(seconds)
            return self.reply(200, clock.answer())

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 256

    srv = Server((host, port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=srv.shutdown).start())
    print(json.dumps({"message": "listening", "service": name, "port": port}), flush=True)
    srv.serve_forever(poll_interval=0.1)
    print(json.dumps({"message": "stopped", "service": name}), flush=True)
    return 0


def main() -> int:
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    if name == "devbroker":
        return devbroker(args)
    if name not in NAMES:
        print(f"standin: unknown name {name}", file=sys.stderr)
        return 2
    if args[:1] == ["migrate"]:
        return migrate(name)
    if args[:1] == ["serve"]:
        return serve(name)
    print(f"usage: {name} serve|migrate", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
