#!/usr/bin/env python3
"""Local launcher for the marketplace suite: Postgres, the dev broker and the six services.

Stdlib only (Python 3.11). Used by `make run`, by `deploy/test/run-tests.sh` (the `infra`
subcommand), by `deploy/bench/bench.py`, and imported by the end-to-end tests. Keep this API
stable; it is the contract with Tests/EndToEnd.

Python API
----------
    from suite import Suite, SuiteError          # sys.path.insert(0, "<repo>/deploy/dev")

    with Suite.throwaway(repo_root) as s:        # temp data dir, free ports, fast fsync-less Postgres
        s.start_postgres()                       # initdb if needed, start, bootstrap roles/schemas
        s.start_broker()                         # devbroker, waits for its address file
        s.migrate_all()                          # `<svc> migrate` for the five database services
        s.start_all()                            # identity, then the other four, then gateway
        s.gateway_url                            # "http://127.0.0.1:<port>"
    # leaving the block stops everything (reverse order) and removes the throwaway data dir

    Suite(root, data_dir, *, pg_port, gateway_port=8080, service_ports=None,
          build_config="debug", log_dir=None, bin_dir=None, pg_settings=None,
          extra_env=None, service_env=None, kafka_bootstrap_servers=None,
          ready_timeout=90.0, stop_timeout=15.0, remove_data_dir_on_stop=False)
      root          repository root (has Package.swift).
      data_dir      state root: data_dir/postgres (PGDATA, owned by the postgres user, kept
                    between runs), data_dir/run (pid files, broker.address, ports.json, lock),
                    and data_dir/logs (default log_dir). As root, Postgres runs as the postgres
                    user, who must reach PGDATA: when a directory above data_dir lets only its
                    owner through (a clone under /root, pytest's tmp_path), the cluster lives in
                    /var/lib/postgresql/marketplace-clusters/<parent>-<name>-<hash of the path>/
                    pgdata, data_dir/postgres is a symlink to it, and that directory's
                    `data-dir` file names data_dir (remove_data_dir(), `clean-data` and a
                    throwaway's stop() remove it with data_dir). Decided at the first initdb.
      service_ports overrides for the five backend services ("identity".."messaging");
                    the gateway's port is gateway_port. Defaults: DEFAULT_PORTS.
      bin_dir       where the executables are; default $MARKETPLACE_BIN_DIR, else
                    <root>/.build/<build_config>.
      pg_settings   extra postgresql.conf settings, e.g. FAST_PG_SETTINGS.
      extra_env     env added to every process it starts (wins over the defaults);
      service_env   {"billing": {"KEY": "VALUE"}} per-service env (wins over extra_env).
      kafka_bootstrap_servers  use an external broker: start_broker() then does nothing.

    Suite.throwaway(root, *, build_config="debug", bin_dir=None, log_dir=None, keep=False, **kw)
      temp data dir (mode 0755) under $MARKETPLACE_TMP (any directory, see data_dir) or /tmp,
      free ports for Postgres and all six services, FAST_PG_SETTINGS; the data dir (and a
      cluster kept outside it) is removed on stop() unless keep=True or
      $MARKETPLACE_KEEP_DATA=1. Logs go to $MARKETPLACE_LOG_DIR/<data-dir-name>/ when that is
      set (kept), else into the data dir.

    Methods and properties
      ensure_packages(pip_packages=())  apt-get install missing DEBIAN_PACKAGES (dpkg-query
                                        first), waiting up to 15 min (and saying so) while
                                        another install holds Debian's package locks;
                                        pip-install missing distributions
      build(products=None, tests=False) `swift build [-c release] [--build-tests]`, or one
                                        `--product X` per listed product
      start_postgres()                  idempotent bootstrap with deploy/postgres/bootstrap.sql
      superuser_dsn / admin_dsn         postgres://postgres:postgres@127.0.0.1:<pg>/marketplace
                                        (admin_dsn: same, maintenance database `postgres`)
      service_dsn(name)                 postgres://<svc>:<svc>@127.0.0.1:<pg>/marketplace
      psql(sql=None, *, file=None, user="postgres", password=None, database="marketplace") -> str
                                        runs SQL with psql (-At output), raises SuiteError
      restart_postgres()                `pg_ctl stop -m fast` (connections dropped), then
                                        start_postgres() again on the same data dir and port;
                                        the running services are left to reconnect by themselves
      start_broker() / kafka_bootstrap_servers
      start_mail() / mail_url / smtp_address
                                        the dev mail catcher (deploy/dev/mailcatcher.py): SMTP
                                        sink, Mailpit's HTTP API at mail_url; `run` uses ports
                                        1025 and 8025 (mail_ports=), a throwaway free ones
      broker_outage(down)               SIGUSR1 (down=True) / SIGUSR2 (False) to the devbroker it
                                        started: the broker refuses connections / is back with
                                        every record and committed offset kept (fault tests)
      migrate(name) / migrate_all()     output in <log_dir>/<name>.migrate.log
      start_service(name) / start_all() each waits for GET /health/ready == 200
      wait_ready(name, timeout=None)
      stop_service(name) -> exit code   SIGTERM to its process group, SIGKILL after stop_timeout
      stop() -> bool                    everything it started, reverse order; Postgres with
                                        `pg_ctl stop -m fast`; never raises for one failure
      env_for(name) -> dict             the environment of that process (README, Configuration) (only those keys;
                                        processes also inherit os.environ minus config keys)
      url(name) / gateway_url / ports / pid(name) / log_path(name) / exit_codes
      bootstrap_database() / postgres_pid() / exited() (started processes that have exited: codes)
      advance_clock(seconds) -> {name: {"now", "offsetSeconds"}}
                                        POST /internal/test-clock {"advanceSeconds": seconds} to
                                        each domain service (started with TEST_CLOCK=on; the
                                        gateway has no clock); SuiteError naming any that did
                                        not answer. clock(): the same, GET, nothing moved
      remove_data_dir()                 data_dir and its cluster outside, if any (nothing running)
      run_dir / log_dir / pg_data_dir (the real PGDATA) / bin_dir
    Signals: when it first starts something, if SIGTERM still has its default action (and this
    is the main thread), SIGTERM is made to raise KeyboardInterrupt, so `with` blocks and pytest
    fixture finalizers still run stop() when a CI timeout terminates the process.
    A lock (data_dir/run/suite.lock) keeps two launchers off one data dir; the next launcher
    stops what a killed one left (pids from the pid files, verified by an env marker).

CLI
---
    suite.py run [--data-dir .data] [--pg-port 55432] [--gateway-port 8080] [--mail-port 8025]
                 [--smtp-port 1025] [--release]
                 [--no-build] [--no-install] [--bin-dir DIR] [--service-port NAME=PORT ...]
        what `make run` does; prints `gateway: http://127.0.0.1:8080`, `mail: http://127.0.0.1:8025`
        (the mail catcher) and the log directory,
        then waits; SIGINT/SIGTERM stops everything and exits 0. Env: MARKETPLACE_PG_PORT,
        MARKETPLACE_GATEWAY_PORT, MARKETPLACE_MAIL_PORT, MARKETPLACE_SMTP_PORT, LOG_LEVEL.
    suite.py infra --data-dir DIR --env-file FILE [--pg-port N] [--bin-dir DIR] [--log-dir DIR]
                   [--no-broker] [--no-mail]
        throwaway Postgres + dev broker + mail catcher for integration tests; writes `export KEY='value'`
        lines (see INFRA_ENV_KEYS below), then waits until SIGINT/SIGTERM.
    suite.py clock advance DURATION [--data-dir .data] | clock show [--data-dir .data]
        the business test clock of the `run` on that data dir (its ports from run/ports.json):
        POSTs (GET for show) /internal/test-clock on each domain service's own port and prints
        `<service>: <business time> (offset <total>)`; exit 1 after trying all if any did not
        answer. DURATION: 30d, 12h, 15m, 90s, 1d12h (units in that order) or plain seconds.
    suite.py ensure [--test] [--pip PKG ...] | build [--release] [--tests] | migrate | stop | clean-data
        | env NAME
        (clean-data also removes the data dir's cluster kept outside it, see data_dir)

Every domain service the launcher starts (run, and the Suite of the tests) gets TEST_CLOCK=on:
the business test clock is for local runs and tests; k8s/ never sets it.

Infra env file keys: TEST_DATABASE_URL (superuser, database marketplace),
TEST_DATABASE_ADMIN_URL (superuser, database postgres), TEST_DATABASE_URL_<SERVICE> (the
service's own role, e.g. TEST_DATABASE_URL_LISTINGS), TEST_POSTGRES_HOST, TEST_POSTGRES_PORT,
KAFKA_BOOTSTRAP_SERVERS and TEST_KAFKA_BOOTSTRAP_SERVERS (absent with --no-broker),
TEST_SMTP_HOST, TEST_SMTP_PORT and TEST_MAIL_URL: the mail catcher's SMTP and HTTP API (absent
with --no-mail).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import itertools
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SERVICES = ("identity", "listings", "billing", "orders", "messaging")  # each has a schema
GATEWAY = "gateway"
ALL_SERVICES = SERVICES + (GATEWAY,)
BROKER = "devbroker"
EXECUTABLES = ALL_SERVICES + (BROKER,)
# The dev mail catcher (deploy/dev/mailcatcher.py): an SMTP sink with Mailpit's HTTP API.
MAILCATCHER = "mailcatcher"
DEFAULT_MAIL_PORTS = {"smtp": 1025, "http": 8025}
DEFAULT_PORTS = {"gateway": 8080, "identity": 8081, "listings": 8082, "billing": 8083,
                 "orders": 8084, "messaging": 8085}
DEFAULT_PG_PORT = 55432
HOST = "127.0.0.1"
DATABASE = "marketplace"
PG_SUPERUSER = "postgres"
PG_SUPERUSER_PASSWORD = "postgres"  # loopback-only dev and test clusters
PG_OS_USER = "postgres"

# The dev broker pre-creates every topic of the suite itself (Shared/Contracts, Topics.all).
KAFKA_PARTITIONS = 3

JWT_ISSUER = "marketplace-identity"
JWT_AUDIENCE = "marketplace"

DEBIAN_PACKAGES = ("librdkafka-dev", "libargon2-dev", "postgresql", "postgresql-contrib",
                   "wrk", "kcat", "nginx-light")
# What the launcher itself runs: the mail catcher's SMTP server.
RUN_PIP_PACKAGES = ("aiosmtpd",)
# What Tests/EndToEnd and Tests/Contract import (`suite.py ensure --test`).
TEST_PIP_PACKAGES = RUN_PIP_PACKAGES + ("pytest", "jsonschema", "pyyaml", "openapi-schema-validator",
                                        "openapi-spec-validator", "cryptography")
# For throwaway clusters only: data that a crash may lose is data nobody keeps.
FAST_PG_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

# Debian's package locks, fcntl write locks as apt and dpkg take them: `apt-get update` takes
# the lists lock, `apt-get install` dpkg's two. Another install holding one (unattended-upgrades
# on a fresh machine, a second terminal) is waited for, up to PACKAGE_LOCK_TIMEOUT.
APT_LISTS_LOCKS = (Path("/var/lib/apt/lists/lock"),)
DPKG_LOCKS = (Path("/var/lib/dpkg/lock-frontend"), Path("/var/lib/dpkg/lock"))
PACKAGE_LOCK_TIMEOUT = 15 * 60.0
# What apt says when it lost the race for a lock that was free when we looked.
APT_LOCK_BUSY = re.compile(r"Could not get lock|Unable to acquire the dpkg frontend lock|"
                           r"Unable to lock (the administration )?directory")

# The business test clock every domain service serves when started with TEST_CLOCK=on (the
# launcher's runs and tests only; never in k8s/): GET -> {"now", "offsetSeconds"}, POST
# {"advanceSeconds": n} -> the same after moving the clock forward by n seconds.
TEST_CLOCK_PATH = "/internal/test-clock"

# Service configuration keys never inherited from the caller's environment.
CONFIG_KEYS = frozenset({
    "CONFIG_FILE", "HTTP_HOST", "HTTP_PORT", "DATABASE_URL", "DATABASE_POOL_SIZE",
    "KAFKA_BOOTSTRAP_SERVERS", "JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE", "LOG_LEVEL",
    "LOG_FORMAT", "IDENTITY_KEY_ENCRYPTION_KEY", "TEST_CLOCK",
})
CONFIG_PREFIXES = ("UPSTREAM_",)

INFRA_ENV_KEYS = ("TEST_DATABASE_URL", "TEST_DATABASE_ADMIN_URL", "TEST_POSTGRES_HOST",
                  "TEST_POSTGRES_PORT", "KAFKA_BOOTSTRAP_SERVERS",
                  "TEST_KAFKA_BOOTSTRAP_SERVERS", "TEST_SMTP_HOST", "TEST_SMTP_PORT", "TEST_MAIL_URL") + tuple(
                      f"TEST_DATABASE_URL_{s.upper()}" for s in SERVICES)

REPO_ROOT = Path(__file__).resolve().parents[2]


class SuiteError(RuntimeError):
    """A step of the suite failed; the message says which and why (with log lines)."""


def say(msg: str) -> None:
    print(f"suite: {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- helpers

def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct loopback TCP ports that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


RUN_DIR_MARKER = "MARKETPLACE_SUITE_RUN_DIR"  # set in every process the suite spawns
PORTS_FILE = "ports.json"  # in run_dir while a launcher holds its lock: {name: port}


def started_by_us(pid: int, run_dir: Path) -> bool:
    """True if pid's environment carries our run-dir marker (so it is ours, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            entries = f.read().split(b"\0")
    except OSError:
        return False
    return f"{RUN_DIR_MARKER}={run_dir}".encode() in entries


def run(cmd: list[str], *, timeout: float, env: dict | None = None, cwd: Path | None = None,
        capture: bool = True, what: str | None = None) -> str:
    """Runs cmd, returns its output; raises SuiteError with the output on failure/timeout."""
    what = what or shlex.join(cmd)
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if capture else None,
                            stderr=subprocess.STDOUT if capture else None, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise SuiteError(f"{what}: timed out after {timeout:.0f}s\n{(out or '')[-4000:]}")
    except BaseException:
        # Interrupted (SIGINT/SIGTERM): do not leave the child behind.
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        raise
    if proc.returncode != 0:
        raise SuiteError(f"{what}: exit code {proc.returncode}\n{(out or '')[-4000:]}")
    return out or ""


def pg_bin_dir() -> Path:
    """$PG_BIN_DIR, else /usr/lib/postgresql/15/bin, else the newest installed version."""
    if os.environ.get("PG_BIN_DIR"):
        return Path(os.environ["PG_BIN_DIR"])
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "initdb").exists():
        return preferred
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not found:
        raise SuiteError("PostgreSQL server binaries not found under /usr/lib/postgresql "
                         "(apt-get install postgresql, or set PG_BIN_DIR)")
    return found[-1].parent


def dsn(user: str, password: str, port: int, database: str = DATABASE) -> str:
    return f"postgres://{user}:{password}@{HOST}:{port}/{database}"


def filtered_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k not in CONFIG_KEYS and not k.startswith(CONFIG_PREFIXES)}


# ----------------------------------------------------------------------------- package locks

def lock_holder(path: Path) -> int | None:
    """Who holds an fcntl write lock on path (as apt and dpkg lock): its pid, 0 when the lock
    names no pid (an open file description lock), None when the lock is free, or when path is
    absent or unreadable (apt then has its own say)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        layout = "hhqqi4x"  # struct flock: type, whence, start, len, pid
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(layout, fcntl.F_WRLCK, 0, 0, 0, 0))
    finally:
        os.close(fd)
    kind, _, _, _, pid = struct.unpack(layout, answer)
    return None if kind == fcntl.F_UNLCK else max(pid, 0)


def describe_pid(pid: int) -> str:
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        name = ""
    return "pid unknown" if not pid else f"pid {pid}" + (f", {name}" if name else "")


def wait_for_package_locks(paths, deadline: float, poll: float = 1.0) -> None:
    """Returns once no other process holds any of paths; says who holds one (once per holder);
    SuiteError when one is still held at deadline (a time.monotonic() value)."""
    announced = None
    while True:
        held = [(path, pid) for path in paths if (pid := lock_holder(path)) is not None]
        if not held:
            return
        path, pid = held[0]
        if time.monotonic() >= deadline:
            raise SuiteError(f"the Debian package lock {path} is still held by another install "
                             f"({describe_pid(pid)}); let it finish (or stop it), then run again")
        if announced != (path, pid):
            announced = (path, pid)
            say(f"waiting for the Debian package lock held by another install "
                f"({describe_pid(pid)}; {path}) …")
        time.sleep(poll)


# ----------------------------------------------------------------------------- cluster placement

def pg_clusters_dir() -> Path:
    """Where the clusters of data dirs the postgres user cannot reach live: a directory of the
    postgres user's home (/var/lib/postgresql on Debian; kept across reboots, unlike /tmp)."""
    try:
        home = Path(pwd.getpwnam(PG_OS_USER).pw_dir)
    except KeyError:
        home = Path("/var/tmp")
    return (home if home.is_dir() else Path("/var/tmp")) / "marketplace-clusters"


def cluster_name(data_dir: Path) -> str:
    """A readable directory name for data_dir's cluster: `<parent>-<name>-<hash of the path>`."""
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._]+", "-", "-".join(data_dir.parts[-2:])).strip("-")[:40]
    return f"{slug}-{digest}"


def postgres_can_traverse(path: Path) -> bool:
    """True if the postgres user can reach path (every ancestor lets it through)."""
    if os.geteuid() != 0:
        return True  # Postgres then runs as the current user
    return subprocess.run(["runuser", "-u", PG_OS_USER, "--", "test", "-x", str(path)],
                          stdin=subprocess.DEVNULL, cwd="/").returncode == 0


CLUSTER_OWNER_FILE = "data-dir"  # in a cluster's directory outside: whose cluster it is


def cluster_owner(home: Path) -> str | None:
    try:
        return (home / CLUSTER_OWNER_FILE).read_text().strip()
    except OSError:
        return None


# ----------------------------------------------------------------------------- test clock

DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def parse_duration(text: str) -> int:
    """Seconds in `30d`, `12h`, `15m`, `90s`, `1d12h` (units in that order) or plain `3600`."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    m = DURATION.fullmatch(text)
    if not text or not m:
        raise ValueError(f"not a duration: {text!r} (examples: 30d, 12h, 15m, 90s, 1d12h, 3600)")
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for printing: 172800 -> 2d, 5430 -> 1h30m30s, 0 -> 0s."""
    rest = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


def clock_request(base_url: str, advance: int | None = None, timeout: float = 5.0) -> dict:
    """GET (advance None) or POST {"advanceSeconds": advance} <base_url>/internal/test-clock;
    returns the answer {"now": RFC 3339, "offsetSeconds": n}; SuiteError saying why not."""
    url = base_url + TEST_CLOCK_PATH
    data = None if advance is None else json.dumps({"advanceSeconds": advance}).encode()
    req = urllib.request.Request(url, data=data, method="GET" if data is None else "POST",
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        hint = (": no test clock there (a build without one, or not started with TEST_CLOCK=on)"
                if e.code == 404 else f": {e.read(300).decode('utf-8', 'replace')}")
        raise SuiteError(f"HTTP {e.code} from {url}{hint}") from None
    except (urllib.error.URLError, OSError) as e:
        raise SuiteError(f"no answer from {url} ({getattr(e, 'reason', e)})") from None
    try:
        answer = json.loads(body)
        if isinstance(answer["now"], str) and isinstance(answer["offsetSeconds"], (int, float)):
            return answer
    except (ValueError, KeyError, TypeError):
        pass
    raise SuiteError(f"unexpected answer from {url}: {body[:300]!r}")


def clock_all(urls: dict[str, str], advance: int | None = None) -> tuple[dict, dict]:
    """clock_request on every service (name -> base URL), all tried whatever fails:
    (answers by name, error messages by name)."""
    answers, errors = {}, {}
    for name, url in urls.items():
        try:
            answers[name] = clock_request(url, advance)
        except SuiteError as e:
            errors[name] = str(e)
    return answers, errors


def _advance_seconds(seconds) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"advance the clock by a whole number of seconds >= 0, not {seconds!r}")
    return seconds


# ----------------------------------------------------------------------------- Suite

class Suite:
    """Starts and stops the local suite; see the module docstring for the API."""

    # What ensure_packages installs and which locks it waits for: attributes, so that the
    # self-test can point them at a stand-in apt-get and lock files of its own.
    debian_packages = DEBIAN_PACKAGES
    apt_get = "apt-get"
    apt_lists_locks = APT_LISTS_LOCKS
    dpkg_locks = DPKG_LOCKS
    package_lock_timeout = PACKAGE_LOCK_TIMEOUT

    def __init__(self, root: Path, data_dir: Path, *, pg_port: int, gateway_port: int = 8080,
                 service_ports: dict | None = None, build_config: str = "debug",
                 log_dir: Path | None = None, bin_dir: Path | None = None,
                 pg_settings: dict | None = None, extra_env: dict | None = None,
                 service_env: dict | None = None, kafka_bootstrap_servers: str | None = None,
                 ready_timeout: float = 90.0, stop_timeout: float = 15.0,
                 remove_data_dir_on_stop: bool = False, mail_ports: dict | None = None):
        if build_config not in ("debug", "release"):
            raise ValueError(f"build_config must be debug or release, not {build_config!r}")
        self.root = Path(root).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.pg_port = int(pg_port)
        self.build_config = build_config
        self.ports = dict(DEFAULT_PORTS)
        for name, port in (service_ports or {}).items():
            if name not in SERVICES:
                raise ValueError(f"service_ports: unknown service {name!r} (gateway: use gateway_port)")
            self.ports[name] = int(port)
        self.ports[GATEWAY] = int(gateway_port)
        if len(set(self.ports.values()) | {self.pg_port}) != len(self.ports) + 1:
            raise ValueError(f"ports must be distinct: {self.ports}, postgres {self.pg_port}")
        env_bin = os.environ.get("MARKETPLACE_BIN_DIR")
        self.bin_dir = Path(bin_dir or env_bin or self.root / ".build" / build_config).resolve()
        self.run_dir = self.data_dir / "run"
        self.log_dir = Path(log_dir).resolve() if log_dir else self.data_dir / "logs"
        self.pg_settings = dict(pg_settings or {})
        self.extra_env = dict(extra_env or {})
        self.service_env = {k: dict(v) for k, v in (service_env or {}).items()}
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.remove_data_dir_on_stop = remove_data_dir_on_stop
        self.exit_codes: dict[str, int | None] = {}
        self._external_kafka = kafka_bootstrap_servers
        self._procs: dict[str, subprocess.Popen] = {}
        self._opened_logs: set[str] = set()
        self._lock_fd: int | None = None
        self._pg_started = False
        self._broker_address: str | None = None
        self.mail_ports = dict(mail_ports or DEFAULT_MAIL_PORTS)
        self._mail: dict[str, int] | None = None

    @classmethod
    def throwaway(cls, root: Path, *, build_config: str = "debug", bin_dir: Path | None = None,
                  log_dir: Path | None = None, keep: bool = False, **kwargs) -> "Suite":
        """A suite in a fresh temp dir on free ports; its data dir is removed on stop()."""
        base = os.environ.get("MARKETPLACE_TMP") or None
        data_dir = Path(tempfile.mkdtemp(prefix="marketplace-suite-", dir=base))
        os.chmod(data_dir, 0o755)  # so the cluster stays inside when the postgres user can reach it
        if log_dir is None and os.environ.get("MARKETPLACE_LOG_DIR"):
            log_dir = Path(os.environ["MARKETPLACE_LOG_DIR"]) / data_dir.name
        ports = free_ports(len(ALL_SERVICES) + 1)
        keep = keep or os.environ.get("MARKETPLACE_KEEP_DATA") == "1"
        kwargs.setdefault("pg_settings", FAST_PG_SETTINGS)
        kwargs.setdefault("mail_ports", {"smtp": 0, "http": 0})  # the catcher picks free ones
        return cls(root, data_dir, pg_port=ports[0], gateway_port=ports[1],
                   service_ports=dict(zip(SERVICES, ports[2:])), build_config=build_config,
                   bin_dir=bin_dir, log_dir=log_dir, remove_data_dir_on_stop=not keep, **kwargs)

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "Suite":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ packages and build
    def ensure_packages(self, pip_packages=()) -> None:
        """Installs missing Debian packages (DEBIAN_PACKAGES) and pip distributions."""
        missing = [p for p in self.debian_packages if not _dpkg_installed(p)]
        pip_missing = [p for p in pip_packages if not _pip_installed(p)]
        if pip_missing and not _has_pip():
            missing.append("python3-pip")
        if missing:
            if os.geteuid() != 0:
                raise SuiteError(f"missing Debian packages {missing}; run as root or: "
                                 f"sudo apt-get install -y {' '.join(missing)}")
            say(f"installing Debian packages: {' '.join(missing)}")
            self._apt_get(["update"], self.apt_lists_locks, timeout=600)
            self._apt_get(["install", "-y", "--no-install-recommends", *missing],
                          self.dpkg_locks, timeout=1800)
        if pip_missing:
            say(f"installing pip packages: {' '.join(pip_missing)}")
            cmd = [sys.executable, "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", *pip_missing]
            try:
                run(cmd, timeout=900)
            except SuiteError as e:
                if "externally-managed" not in str(e):
                    raise
                run(cmd + ["--break-system-packages"], timeout=900)  # Debian's PEP 668 python
            importlib.invalidate_caches()
        if shutil.which("swift") is None:
            raise SuiteError("`swift` is not on PATH (Swift 6.3 toolchain required)")

    def _apt_get(self, args: list[str], locks, timeout: float) -> str:
        """apt-get ARGS once no other install holds locks (waiting up to package_lock_timeout).

        apt 2.x waits for dpkg's locks itself when given DPkg::Lock::Timeout, but not for the
        lists lock of `apt-get update`, and says nothing while it waits: hence our own wait and
        message first. A lock taken between our look and apt's ("Could not get lock") sends us
        back to waiting."""
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        deadline = time.monotonic() + self.package_lock_timeout
        while True:
            wait_for_package_locks(locks, deadline)
            remaining = max(1, int(deadline - time.monotonic()))
            try:
                return run([self.apt_get, "-o", f"DPkg::Lock::Timeout={remaining}", *args],
                           timeout=timeout + remaining, env=env)
            except SuiteError as e:
                if not APT_LOCK_BUSY.search(str(e)) or time.monotonic() >= deadline:
                    raise
            time.sleep(1)

    def build(self, products=None, tests: bool = False, timeout: float = 2700) -> None:
        """swift build for every product (one invocation), or one --product per name."""
        base = ["swift", "build"] + (["-c", "release"] if self.build_config == "release" else [])
        cmds = [base + ["--product", p] for p in products] if products else \
            [base + (["--build-tests"] if tests else [])]
        for cmd in cmds:
            say(shlex.join(cmd))
            run(cmd, timeout=timeout, cwd=self.root, capture=False)

    # ------------------------------------------------------------------ postgres
    @property
    def superuser_dsn(self) -> str:
        return dsn(PG_SUPERUSER, PG_SUPERUSER_PASSWORD, self.pg_port)

    @property
    def admin_dsn(self) -> str:
        return dsn(PG_SUPERUSER, PG_SUPERUSER_PASSWORD, self.pg_port, "postgres")

    def service_dsn(self, name: str) -> str:
        if name not in SERVICES:
            raise ValueError(f"{name!r} has no database role")
        return dsn(name, name, self.pg_port)

    def start_postgres(self) -> None:
        """initdb (first time only), start on 127.0.0.1:pg_port, wait, bootstrap."""
        if self._pg_started:
            return
        self._acquire()
        pgbin = pg_bin_dir()
        if not port_is_free(self.pg_port):
            raise SuiteError(f"postgres port {self.pg_port} is already in use on {HOST} "
                             f"(choose another, e.g. MARKETPLACE_PG_PORT=...)")
        self._place_cluster()
        self._check_postgres_can_traverse()
        if not (self.pg_data_dir / "PG_VERSION").exists():
            self._initdb(pgbin)
        conf = [f"listen_addresses = '{HOST}'", f"port = {self.pg_port}",
                "unix_socket_directories = ''", "max_connections = 200",
                "log_min_messages = warning", "log_line_prefix = '%m [%p] %q%u@%d '"]
        conf += [f"{k} = '{v}'" for k, v in self.pg_settings.items()]
        suite_conf = self.pg_data_dir / "suite.conf"
        suite_conf.write_text("# written by deploy/dev/suite.py on every start\n"
                              + "\n".join(conf) + "\n")
        self._chown_pg(suite_conf)
        say(f"starting postgres on {HOST}:{self.pg_port} ({self.pg_data_dir})")
        log = self._open_log("postgres")
        self._pg_started = True  # from here on stop() must stop it, even if interrupted
        try:
            # Without -l the server inherits our log file descriptor: no path permissions needed.
            proc = subprocess.Popen(
                self._as_pg([str(pgbin / "pg_ctl"), "-D", str(self.pg_data_dir), "-w",
                             "-t", "60", "start"]),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd="/")
        finally:
            log.close()
        try:
            rc = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = None
        except BaseException:
            try:
                proc.wait(90)  # let pg_ctl finish so that stop() finds postmaster.pid
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        if rc != 0:
            raise SuiteError(f"postgres did not start (pg_ctl exit {rc}); last lines of "
                             f"{self.log_path('postgres')}:\n{tail(self.log_path('postgres'))}")
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run([str(pgbin / "pg_isready"), "-q", "-h", HOST, "-p",
                                str(self.pg_port), "-t", "2"], stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise SuiteError(f"postgres not accepting connections on {self.pg_port} after "
                                 f"60s:\n{tail(self.log_path('postgres'))}")
            time.sleep(0.2)
        self.bootstrap_database()

    def restart_postgres(self) -> None:
        """Restarts the suite's own Postgres in place (fault-injection tests): `pg_ctl stop -m
        fast`, which drops every open connection, then start_postgres() on the same data dir and
        port. The services keep running; their pooled connections must reconnect by themselves."""
        if not self._pg_started:
            raise SuiteError("postgres was not started by this suite; nothing to restart")
        self._stop_postgres()
        self._pg_started = False
        self.start_postgres()

    def bootstrap_database(self) -> None:
        """Runs deploy/postgres/bootstrap.sql as superuser (idempotent)."""
        sql_file = self.root / "deploy" / "postgres" / "bootstrap.sql"
        if not sql_file.exists():
            sql_file = REPO_ROOT / "deploy" / "postgres" / "bootstrap.sql"
        self.psql(file=sql_file, database="postgres")

    def psql(self, sql: str | None = None, *, file: Path | None = None,
             user: str = PG_SUPERUSER, password: str | None = None,
             database: str = DATABASE, timeout: float = 60) -> str:
        """Runs SQL (or a file) through psql; returns unaligned tuples-only output."""
        if password is None:
            password = PG_SUPERUSER_PASSWORD if user == PG_SUPERUSER else user
        cmd = [str(pg_bin_dir() / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
               "-h", HOST, "-p", str(self.pg_port), "-U", user, "-d", database]
        cmd += ["-f", str(file)] if file else ["-c", sql or ""]
        env = dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="10", PGAPPNAME="suite.py")
        return run(cmd, timeout=timeout, env=env, what=f"psql as {user} on {database}")

    def _initdb(self, pgbin: Path) -> None:
        if self.pg_data_dir.exists() and any(self.pg_data_dir.iterdir()):
            raise SuiteError(f"{self.pg_data_dir} is not empty but holds no Postgres cluster "
                             f"(no PG_VERSION); remove it or choose another data dir")
        self.pg_data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pg_data_dir, 0o700)
        self._chown_pg(self.pg_data_dir)
        say(f"initdb {self.pg_data_dir}")
        # Next to PGDATA: read by initdb as the postgres user, who may not reach run_dir.
        fd, pwfile = tempfile.mkstemp(prefix="pgpw-", dir=self.pg_data_dir.parent)
        try:
            os.write(fd, PG_SUPERUSER_PASSWORD.encode() + b"\n")
            os.close(fd)
            self._chown_pg(Path(pwfile))
            locale_args = ["--locale=C.UTF-8"] if _has_c_utf8() else ["--no-locale"]
            run(self._as_pg([str(pgbin / "initdb"), "-D", str(self.pg_data_dir),
                             "-U", PG_SUPERUSER, f"--pwfile={pwfile}", "-E", "UTF8",
                             *locale_args, "--auth-local=peer",
                             "--auth-host=scram-sha-256"]), timeout=180, cwd=Path("/"))
        finally:
            Path(pwfile).unlink(missing_ok=True)
        with open(self.pg_data_dir / "postgresql.conf", "a") as f:
            f.write("\n# deploy/dev/suite.py: port, listen address, sockets, tuning\n"
                    "include_if_exists = 'suite.conf'\n")

    def _stop_postgres(self) -> None:
        pgbin = pg_bin_dir()
        pidfile = self.pg_data_dir / "postmaster.pid"
        if not pidfile.exists():
            return
        postmaster = self.postgres_pid()
        say("stopping postgres" + (f" (pid {postmaster})" if postmaster else ""))
        cmd = [str(pgbin / "pg_ctl"), "-D", str(self.pg_data_dir), "-w", "-t", "60"]
        try:
            run(self._as_pg(cmd + ["-m", "fast", "stop"]), timeout=90, cwd=Path("/"))
        except SuiteError as e:
            say(f"pg_ctl stop -m fast failed, trying immediate: {e}")
            run(self._as_pg(cmd + ["-m", "immediate", "stop"]), timeout=90, cwd=Path("/"))
        # pg_ctl returns once postmaster.pid is gone, a moment before the process itself.
        deadline = time.monotonic() + 15
        while postmaster and pid_alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.05)
        if postmaster and pid_alive(postmaster):
            raise SuiteError(f"postgres (pid {postmaster}) still running after pg_ctl stop")

    def _postgres_running(self) -> bool:
        if not (self.pg_data_dir / "postmaster.pid").exists():
            return False
        r = subprocess.run(self._as_pg([str(pg_bin_dir() / "pg_ctl"), "-D",
                                        str(self.pg_data_dir), "status"]),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30, cwd="/")
        return r.returncode == 0

    def postgres_pid(self) -> int | None:
        """The postmaster's pid, from postmaster.pid (None when not running)."""
        try:
            pid = int((self.pg_data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def _as_pg(self, cmd: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", PG_OS_USER, "--", *cmd]
        return cmd  # not root: Postgres runs as the current user

    def _chown_pg(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, PG_OS_USER, PG_OS_USER)

    @property
    def pg_data_dir(self) -> Path:
        """PGDATA: data_dir/postgres, or where that symlink points (see _place_cluster)."""
        link = self.data_dir / "postgres"
        return link.parent / os.readlink(link) if link.is_symlink() else link

    def _place_cluster(self) -> None:
        """Decides where a new cluster goes. PostgreSQL refuses to run as root, so as root it
        runs as the postgres user, who must reach PGDATA: data_dir/postgres when every ancestor
        of data_dir lets it through (/tmp, a world-readable home); otherwise (a clone under
        /root or another 0700 home) a directory of the postgres user's own, under
        pg_clusters_dir(), named after data_dir, with data_dir/postgres a symlink to its
        pgdata/. Its `data-dir` file names data_dir, so that clean-data removes it only for
        the data dir it belongs to. A cluster already placed stays where it is."""
        link = self.data_dir / "postgres"
        if link.is_symlink():
            if not self.pg_data_dir.parent.exists():  # someone removed it: a new cluster there
                self._prepare_cluster_home(self.pg_data_dir.parent)
            return
        if link.exists() or postgres_can_traverse(self.data_dir):
            return
        home = self._new_cluster_home()
        self._prepare_cluster_home(home)
        link.symlink_to(home / "pgdata")
        say(f"the {PG_OS_USER} user cannot reach {self.data_dir}: the cluster lives in "
            f"{home / 'pgdata'} ({link} points there; `make clean-data` removes both)")

    def _new_cluster_home(self) -> Path:
        """pg_clusters_dir()/<cluster_name>, or .2, .3 … when an earlier data dir at the same
        path left one (kept: a moved-away copy of this data dir may still point there)."""
        base, name = pg_clusters_dir(), cluster_name(self.data_dir)
        for n in itertools.count(1):
            home = base / (name if n == 1 else f"{name}.{n}")
            if not home.exists():
                return home
            say(f"note: {home} holds the cluster of an earlier data dir at "
                f"{cluster_owner(home) or '?'}; not touching it (remove it by hand when "
                f"nothing points there)")
        raise AssertionError("unreachable")

    def _prepare_cluster_home(self, home: Path) -> None:
        for d in (home.parent, home):
            d.mkdir(mode=0o700, exist_ok=True)
            shutil.chown(d, PG_OS_USER, PG_OS_USER)
        if cluster_owner(home) is None:
            (home / CLUSTER_OWNER_FILE).write_text(f"{self.data_dir}\n")

    def _check_postgres_can_traverse(self) -> None:
        where = self.pg_data_dir.parent
        if not postgres_can_traverse(where):
            raise SuiteError(f"the {PG_OS_USER} user cannot reach {where}, which holds this data "
                             f"dir's cluster ({self.pg_data_dir}): a directory above it lets only "
                             f"its owner through. Give it o+x, or start afresh with `make "
                             f"clean-data` (a new cluster goes where the {PG_OS_USER} user can "
                             f"reach it)")

    def remove_data_dir(self) -> None:
        """Removes data_dir and, when its cluster lives outside (see _place_cluster), that
        cluster's directory: only one whose `data-dir` file names this data dir."""
        link = self.data_dir / "postgres"
        if link.is_symlink():
            home = self.pg_data_dir.parent
            owner = cluster_owner(home)
            if owner == str(self.data_dir):
                shutil.rmtree(home, ignore_errors=True)
            elif home.exists():
                say(f"not removing {home}: it records {owner or 'no data dir'} as its owner, "
                    f"not {self.data_dir}")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # ------------------------------------------------------------------ broker
    @property
    def broker_address_file(self) -> Path:
        return self.run_dir / "broker.address"

    @property
    def kafka_bootstrap_servers(self) -> str:
        if self._external_kafka:
            return self._external_kafka
        if self._broker_address is None:
            raise SuiteError("the dev broker is not started (call start_broker())")
        return self._broker_address

    def start_broker(self, timeout: float = 60) -> None:
        """Runs devbroker (which pre-creates the suite's topics); waits for its address file."""
        if self._external_kafka or self._broker_address:
            return
        self._acquire()
        self.broker_address_file.unlink(missing_ok=True)
        argv = [str(self._binary(BROKER)), "--address-file", str(self.broker_address_file),
                "--partitions", str(KAFKA_PARTITIONS)]
        env = filtered_environ()
        env.update(LOG_FORMAT="json", LOG_LEVEL="info")
        env.update(self.extra_env)
        proc = self._spawn(BROKER, argv, env)
        deadline = time.monotonic() + timeout
        while True:
            try:
                address = self.broker_address_file.read_text().strip()
            except FileNotFoundError:
                address = ""
            if address:
                self._broker_address = address
                say(f"broker: {address}")
                return
            if proc.poll() is not None:
                self._forget(BROKER)
                raise SuiteError(f"devbroker exited with code {proc.returncode} before writing "
                                 f"{self.broker_address_file}; last lines of "
                                 f"{self.log_path(BROKER)}:\n{tail(self.log_path(BROKER))}")
            if time.monotonic() > deadline:
                raise SuiteError(f"devbroker wrote no address to {self.broker_address_file} "
                                 f"within {timeout:.0f}s; last lines:\n{tail(self.log_path(BROKER))}")
            time.sleep(0.1)

    def start_mail(self, timeout: float = 30) -> None:
        """Runs the dev mail catcher (deploy/dev/mailcatcher.py); waits for its address file."""
        if self._mail:
            return
        self._acquire()
        address_file = self.run_dir / "mail.address"
        address_file.unlink(missing_ok=True)
        argv = [sys.executable, str(self.root / "deploy" / "dev" / "mailcatcher.py"), "--host", HOST,
                "--smtp-port", str(self.mail_ports["smtp"]), "--http-port", str(self.mail_ports["http"]),
                "--address-file", str(address_file)]
        proc = self._spawn(MAILCATCHER, argv, filtered_environ())
        deadline = time.monotonic() + timeout
        while True:
            try:
                ports = json.loads(address_file.read_text())
            except (FileNotFoundError, ValueError):
                ports = None
            if ports:
                self._mail = {"smtp": int(ports["smtp"]), "http": int(ports["http"])}
                # A catcher stopped and started again (an SMTP outage in a test) takes the same ports.
                self.mail_ports = dict(self._mail)
                return
            if proc.poll() is not None:
                self._forget(MAILCATCHER)
                raise SuiteError(f"the mail catcher exited with code {proc.returncode}; last lines of "
                                 f"{self.log_path(MAILCATCHER)}:\n{tail(self.log_path(MAILCATCHER))}")
            if time.monotonic() > deadline:
                raise SuiteError(f"the mail catcher wrote no address within {timeout:.0f}s; last lines:\n"
                                 f"{tail(self.log_path(MAILCATCHER))}")
            time.sleep(0.1)

    @property
    def mail_url(self) -> str:
        """The catcher's HTTP API and page (Mailpit's API: /api/v1/messages ...)."""
        if not self._mail:
            raise SuiteError("the mail catcher is not running (start_mail())")
        return f"http://{HOST}:{self._mail['http']}"

    @property
    def smtp_address(self) -> tuple[str, int]:
        """Where the catcher takes mail over SMTP (plaintext, no AUTH)."""
        if not self._mail:
            raise SuiteError("the mail catcher is not running (start_mail())")
        return HOST, self._mail["smtp"]

    def broker_outage(self, down: bool) -> None:
        """Takes the dev broker this suite started down (SIGUSR1: connections dropped and
        refused) or brings it back (SIGUSR2: every record and committed offset kept), as a real
        broker's restart looks to clients (Shared/DevBroker/main.swift). Its log says when it has."""
        pid = self.pid(BROKER)
        if self._external_kafka or pid is None:
            raise SuiteError("no dev broker started by this suite is running")
        os.kill(pid, signal.SIGUSR1 if down else signal.SIGUSR2)

    # ------------------------------------------------------------------ services
    def env_for(self, name: str) -> dict[str, str]:
        """The service's environment (the README's configuration keys the suite sets)."""
        if name not in ALL_SERVICES:
            raise ValueError(f"unknown service {name!r}")
        env = {
            "HTTP_HOST": HOST,
            "HTTP_PORT": str(self.ports[name]),
            "JWKS_URL": f"{self.url('identity')}/.well-known/jwks.json",
            "JWT_ISSUER": JWT_ISSUER,
            "JWT_AUDIENCE": JWT_AUDIENCE,
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",  # stdout/stderr always go to <log_dir>/<name>.log
        }
        if self._external_kafka or self._broker_address:
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.kafka_bootstrap_servers
        if self._broker_address and not self._external_kafka:
            # The dev broker holds every fetch for the whole wait where a real broker answers as
            # soon as data arrives: a short wait keeps its delivery latency near a real broker's.
            env["KAFKA_FETCH_WAIT_MAX_MS"] = "10"
        if name in SERVICES:
            env["DATABASE_URL"] = self.service_dsn(name)
            env["TEST_CLOCK"] = "on"  # POST /internal/test-clock: local runs and tests only
        else:
            for svc in SERVICES:
                env[f"UPSTREAM_{svc.upper()}"] = self.url(svc)
        if name == "messaging" and self._mail:
            # Mail goes to the suite's catcher; the links in it open the gateway.
            env["SMTP_URL"] = f"smtp://{HOST}:{self._mail['smtp']}"
            env["PUBLIC_API_URL"] = self.gateway_url
        env.update(self.extra_env)
        env.update(self.service_env.get(name, {}))
        return env

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.ports[name]}"

    @property
    def gateway_url(self) -> str:
        return self.url(GATEWAY)

    def advance_clock(self, seconds: int) -> dict[str, dict]:
        """Moves every domain service's business clock forward by seconds (the gateway has
        none); returns each one's answer {"now": RFC 3339, "offsetSeconds": total}. SuiteError
        naming every service that did not answer (all are tried)."""
        return self._clock_all(_advance_seconds(seconds))

    def clock(self) -> dict[str, dict]:
        """Every domain service's business clock, as advance_clock answers, unchanged."""
        return self._clock_all(None)

    def _clock_all(self, advance: int | None) -> dict[str, dict]:
        answers, errors = clock_all({n: self.url(n) for n in SERVICES}, advance)
        if errors:
            raise SuiteError("test clock: " + "; ".join(f"{n}: {e}" for n, e in errors.items()))
        return answers

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        proc = self._procs.get(name)
        return proc.pid if proc and proc.poll() is None else None

    def migrate(self, name: str, timeout: float = 300) -> None:
        """Runs `<bin> migrate` with the service env; output in <log_dir>/<name>.migrate.log."""
        if name not in SERVICES:
            raise ValueError(f"{name!r} has no migrations")
        log_name = f"{name}.migrate"
        log = self._open_log(log_name)
        say(f"migrate {name}")
        try:
            proc = subprocess.Popen([str(self._binary(name)), "migrate"], cwd=self.root,
                                    env=self._process_env(name), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise SuiteError(f"{name} migrate timed out after {timeout:.0f}s; last lines:\n"
                             f"{tail(self.log_path(log_name))}")
        except BaseException:
            _terminate_group(proc, 10)
            raise
        if rc != 0:
            raise SuiteError(f"{name} migrate failed with exit code {rc}; last lines of "
                             f"{self.log_path(log_name)}:\n{tail(self.log_path(log_name))}")

    def migrate_all(self) -> None:
        for name in SERVICES:
            self.migrate(name)

    def start_service(self, name: str, wait: bool = True) -> None:
        """Starts `<bin> serve` (stdout/stderr to <log_dir>/<name>.log); waits for readiness."""
        if name not in ALL_SERVICES:
            raise ValueError(f"unknown service {name!r}")
        if self.pid(name):
            raise SuiteError(f"{name} is already running (pid {self.pid(name)})")
        self._acquire()
        port = self.ports[name]
        if not port_is_free(port):
            raise SuiteError(f"{name}: port {port} is already in use on {HOST} (another "
                             f"`make run`? choose other ports)")
        self._spawn(name, [str(self._binary(name)), "serve"], self._process_env(name))
        say(f"started {name} on {self.url(name)} (pid {self._procs[name].pid})")
        if wait:
            self.wait_ready(name)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Polls GET /health/ready until 200; SuiteError with the log tail otherwise."""
        timeout = self.ready_timeout if timeout is None else timeout
        proc = self._procs.get(name)
        url = f"{self.url(name)}/health/ready"
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            if proc is not None and proc.poll() is not None:
                self._forget(name)
                raise SuiteError(f"{name} exited with code {proc.returncode} before becoming "
                                 f"ready; last lines of {self.log_path(name)}:\n"
                                 f"{tail(self.log_path(name))}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:
                last = f"HTTP {e.code}: {e.read(500).decode('utf-8', 'replace')}"
            except (urllib.error.URLError, OSError) as e:
                last = str(getattr(e, "reason", e))
            if time.monotonic() > deadline:
                raise SuiteError(f"{name} not ready at {url} after {timeout:.0f}s (last: {last}); "
                                 f"last lines of {self.log_path(name)}:\n"
                                 f"{tail(self.log_path(name))}")
            time.sleep(0.2)

    def start_all(self) -> None:
        """identity first (ready), then the other four (in parallel, each ready), gateway last."""
        self.start_service("identity")
        others = [s for s in SERVICES if s != "identity"]
        for name in others:
            self.start_service(name, wait=False)
        for name in others:
            self.wait_ready(name)
        self.start_service(GATEWAY)

    def stop_service(self, name: str, timeout: float | None = None) -> int | None:
        """SIGTERM to its process group, SIGKILL after timeout; returns the exit code."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc = self._procs.pop(name, None)
        if name == MAILCATCHER:
            self._mail = None
        if proc is None:
            return self.exit_codes.get(name)
        if proc.poll() is None:
            say(f"stopping {name} (pid {proc.pid})")
        rc = _terminate_group(proc, timeout)
        if rc == -signal.SIGKILL:
            say(f"{name} did not stop within {timeout:.0f}s after SIGTERM: killed")
        self.exit_codes[name] = rc
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)
        return rc

    def stop(self) -> bool:
        """Stops everything it started, in reverse order; True if all went cleanly."""
        ok = True
        order = [GATEWAY] + [s for s in reversed(SERVICES)] + [BROKER, MAILCATCHER]
        for name in order + [n for n in list(self._procs) if n not in order]:
            try:
                self.stop_service(name)
            except Exception as e:  # keep stopping the rest
                ok = False
                say(f"error stopping {name}: {e}")
        self._broker_address = None
        self._mail = None
        if self._pg_started:
            try:
                self._stop_postgres()
            except Exception as e:
                ok = False
                say(f"error stopping postgres: {e}")
            self._pg_started = False
        self._release()
        if self.remove_data_dir_on_stop and self.data_dir.exists():
            self.remove_data_dir()
        return ok

    def exited(self) -> dict[str, int | None]:
        """Exit codes of started processes that have exited unexpectedly (name -> code)."""
        return {n: p.returncode for n, p in self._procs.items() if p.poll() is not None}

    # ------------------------------------------------------------------ internals
    def _binary(self, name: str) -> Path:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise SuiteError(f"executable {path} not found; build first (`make build`, or "
                             f"`swift build{' -c release' if self.build_config == 'release' else ''}`)"
                             f" or set MARKETPLACE_BIN_DIR")
        return path

    def _process_env(self, name: str) -> dict[str, str]:
        env = filtered_environ()
        env.update(self.env_for(name))
        return env

    def _open_log(self, name: str):
        """Truncates a log on first use by this Suite, appends afterwards."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        mode = "ab" if name in self._opened_logs else "wb"
        self._opened_logs.add(name)
        return open(self.log_path(name), mode)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        env = dict(env, **{RUN_DIR_MARKER: str(self.run_dir)})
        log = self._open_log(name)
        try:
            proc = subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            log.close()
        self._procs[name] = proc
        (self.run_dir / f"{name}.pid").write_text(f"{proc.pid}\n")
        return proc

    def _forget(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is not None:
            self.exit_codes[name] = _terminate_group(proc, 5)
        (self.run_dir / f"{name}.pid").unlink(missing_ok=True)

    def _acquire(self) -> None:
        """Takes data_dir/run/suite.lock; cleans what a crashed previous launcher left."""
        if self._lock_fd is not None:
            return
        _sigterm_as_interrupt()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.run_dir / "suite.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = _read_pid(self.run_dir / "suite.pid")
            raise SuiteError(f"another suite.py (pid {owner}) is using {self.data_dir}; stop it "
                             f"first (Ctrl-C, or `python3 deploy/dev/suite.py stop "
                             f"--data-dir {self.data_dir}`)") from None
        self._lock_fd = fd
        self._cleanup_stale()
        (self.run_dir / "suite.pid").write_text(f"{os.getpid()}\n")
        # For `suite.py clock`, which finds this launcher's services by data dir.
        (self.run_dir / PORTS_FILE).write_text(
            json.dumps({**self.ports, "postgres": self.pg_port}) + "\n")

    def _release(self) -> None:
        if self._lock_fd is None:
            return
        (self.run_dir / "suite.pid").unlink(missing_ok=True)
        (self.run_dir / PORTS_FILE).unlink(missing_ok=True)
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        os.close(self._lock_fd)
        self._lock_fd = None

    def _cleanup_stale(self) -> None:
        """Stops processes recorded in pid files by a launcher that died (we hold the lock)."""
        for pidfile in sorted(self.run_dir.glob("*.pid")):
            name = pidfile.stem
            if name == "suite" or name in self._procs:
                continue
            pid = _read_pid(pidfile)
            if pid and pid_alive(pid) and started_by_us(pid, self.run_dir):
                say(f"stopping {name} (pid {pid}) left by a previous run")
                _terminate_pid_group(pid, self.stop_timeout)
            pidfile.unlink(missing_ok=True)
        if self._postgres_running():
            say(f"stopping postgres (pid {self.postgres_pid()}) left by a previous run")
            self._stop_postgres()

    def stop_stale(self) -> None:
        """What `suite.py stop` does when no launcher holds the lock."""
        self._acquire()
        self._release()


# ----------------------------------------------------------------------------- process utils

def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _terminate_group(proc: subprocess.Popen, timeout: float) -> int | None:
    """SIGTERM to proc's process group (it leads one), wait, SIGKILL; returns exit code."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def _terminate_pid_group(pid: int, timeout: float) -> None:
    """Same as _terminate_group for a process that is not our child."""
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _signal_group(pid, signal.SIGKILL)


def _signal_group(pid: int, sig: int) -> None:
    """Signals pid's process group if pid leads one (our children do), else pid alone.

    Only called while pid is alive or an unreaped zombie, so it cannot have been reused."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _sigterm_as_interrupt() -> None:
    """If SIGTERM would kill us outright, make it raise KeyboardInterrupt instead, so that
    `with Suite(...)` / finally blocks (pytest fixtures) still stop Postgres and the services."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def raise_interrupt(signum, frame):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            raise KeyboardInterrupt("SIGTERM")
        signal.signal(signal.SIGTERM, raise_interrupt)


def _dpkg_installed(pkg: str) -> bool:
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return r.returncode == 0 and r.stdout.strip() == "installed"


def _pip_installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def _has_pip() -> bool:
    return subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True,
                          stdin=subprocess.DEVNULL).returncode == 0


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return any(l.strip().lower() in ("c.utf8", "c.utf-8") for l in out.splitlines())


# ----------------------------------------------------------------------------- CLI

class _Stop(Exception):
    pass


def _install_stop_signals() -> None:
    def handler(signum, frame):
        # Later signals are ignored while we shut down.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        say(f"{signal.Signals(signum).name}: stopping")
        raise _Stop()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _parse_service_ports(items) -> dict[str, int]:
    out = {}
    for item in items or []:
        name, _, port = item.partition("=")
        if name not in SERVICES or not port.isdigit():
            raise SystemExit(f"--service-port wants NAME=PORT with NAME in {SERVICES}, not {item!r}")
        out[name] = int(port)
    return out


def cmd_run(args) -> int:
    suite = Suite(args.root, args.data_dir, pg_port=args.pg_port, gateway_port=args.gateway_port,
                  service_ports=_parse_service_ports(args.service_port),
                  build_config="release" if args.release else "debug", bin_dir=args.bin_dir,
                  mail_ports={"smtp": args.smtp_port, "http": args.mail_port},
                  extra_env={"LOG_LEVEL": os.environ["LOG_LEVEL"]}
                  if os.environ.get("LOG_LEVEL") else None)
    _install_stop_signals()
    rc = 0
    try:
        if not args.no_install:
            suite.ensure_packages(RUN_PIP_PACKAGES)
        if not args.no_build:
            suite.build()
        suite.start_postgres()
        suite.start_broker()
        suite.start_mail()
        suite.migrate_all()
        suite.start_all()
        print(f"gateway: {suite.gateway_url}", flush=True)
        print(f"mail: {suite.mail_url}", flush=True)
        print(f"logs: {suite.log_dir}/<service>.log (postgres: {suite.log_path('postgres')}); "
              f"Ctrl-C stops everything", flush=True)
        reported: set[str] = set()
        while True:
            for name, code in suite.exited().items():
                if name not in reported:
                    reported.add(name)
                    say(f"{name} exited unexpectedly with code {code}; last lines of "
                        f"{suite.log_path(name)}:\n{tail(suite.log_path(name), 20)}")
            time.sleep(1)
    except _Stop:
        pass
    except SuiteError as e:
        _ignore_signals()
        say(f"error: {e}")
        rc = 1
    finally:
        _ignore_signals()
        if not suite.stop():
            rc = rc or 1
    say("stopped")
    return rc


def cmd_infra(args) -> int:
    ports = free_ports(len(ALL_SERVICES) + 1)  # services are not started; ports just distinct
    pg_port = args.pg_port or ports[0]
    suite = Suite(args.root, args.data_dir, pg_port=pg_port, bin_dir=args.bin_dir,
                  log_dir=args.log_dir, pg_settings=FAST_PG_SETTINGS, gateway_port=ports[1],
                  service_ports=dict(zip(SERVICES, ports[2:])), mail_ports={"smtp": 0, "http": 0})
    _install_stop_signals()
    rc = 0
    env_file = Path(args.env_file)
    try:
        suite.start_postgres()
        values = {
            "TEST_DATABASE_URL": suite.superuser_dsn,
            "TEST_DATABASE_ADMIN_URL": suite.admin_dsn,
            "TEST_POSTGRES_HOST": HOST,
            "TEST_POSTGRES_PORT": str(pg_port),
        }
        for s in SERVICES:
            values[f"TEST_DATABASE_URL_{s.upper()}"] = suite.service_dsn(s)
        if not args.no_broker:
            suite.start_broker()
            values["KAFKA_BOOTSTRAP_SERVERS"] = suite.kafka_bootstrap_servers
            values["TEST_KAFKA_BOOTSTRAP_SERVERS"] = suite.kafka_bootstrap_servers
        if not args.no_mail:
            suite.start_mail()
            values["TEST_SMTP_HOST"], smtp_port = suite.smtp_address
            values["TEST_SMTP_PORT"] = str(smtp_port)
            values["TEST_MAIL_URL"] = suite.mail_url
        tmp = env_file.with_name(env_file.name + ".tmp")
        tmp.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
        tmp.replace(env_file)
        say(f"infra ready: postgres {HOST}:{pg_port}"
            + ("" if args.no_broker else f", broker {suite.kafka_bootstrap_servers}")
            + ("" if args.no_mail else f", mail {suite.mail_url}")
            + f"; env in {env_file}")
        while True:
            if suite.exited():
                raise SuiteError(f"infra process exited: {suite.exited()}; "
                                 f"{tail(suite.log_path(BROKER), 20)}")
            time.sleep(1)
    except _Stop:
        pass
    except SuiteError as e:
        _ignore_signals()
        say(f"error: {e}")
        rc = 1
    finally:
        _ignore_signals()
        if not suite.stop():
            rc = rc or 1
    return rc


def cmd_migrate(args) -> int:
    suite = Suite(args.root, args.data_dir, pg_port=args.pg_port, bin_dir=args.bin_dir)
    _install_stop_signals()
    try:
        suite.start_postgres()
        suite.migrate_all()
        say("migrations applied")
        return 0
    except (SuiteError, _Stop) as e:
        say(f"error: {e}" if isinstance(e, SuiteError) else "interrupted")
        return 1
    finally:
        _ignore_signals()
        suite.stop()


def cmd_stop(args) -> int:
    """Stops a running launcher on data_dir (SIGTERM to its pid) or leftovers of a dead one."""
    suite = Suite(args.root, args.data_dir, pg_port=args.pg_port)
    if not suite.run_dir.exists():
        say(f"nothing to stop ({suite.run_dir} does not exist)")
        return 0
    owner = _read_pid(suite.run_dir / "suite.pid")
    try:
        suite.stop_stale()
        say("nothing left running")
        return 0
    except SuiteError:
        pass
    if not owner or not pid_alive(owner):
        say(f"{suite.run_dir}/suite.lock is held but no launcher pid is recorded")
        return 1
    say(f"sending SIGTERM to the launcher (pid {owner})")
    os.kill(owner, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while pid_alive(owner) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(owner):
        say(f"launcher pid {owner} still running after 120s")
        return 1
    return 0


def cmd_clean_data(args) -> int:
    suite = Suite(args.root, args.data_dir, pg_port=args.pg_port)
    if not suite.data_dir.exists():
        say(f"{suite.data_dir} does not exist")
        return 0
    try:
        suite._acquire()  # fails if a launcher is running; stops leftovers of a dead one
    except SuiteError as e:
        say(f"not removing: {e}")
        return 1
    still = [n for n in EXECUTABLES if _read_pid(suite.run_dir / f"{n}.pid")]
    if still or suite._postgres_running():
        suite._release()
        say(f"not removing {suite.data_dir}: processes still running ({still or 'postgres'})")
        return 1
    suite._release()
    outside = suite.pg_data_dir.parent if (suite.data_dir / "postgres").is_symlink() else None
    suite.remove_data_dir()
    say(f"removed {suite.data_dir}" + (f" and its cluster in {outside}"
                                       if outside and not outside.exists() else ""))
    return 0 if not suite.data_dir.exists() else 1


def running_ports(data_dir: Path) -> dict[str, int]:
    """The ports of the launcher running on data_dir (run/ports.json); SuiteError if none."""
    run_dir = data_dir / "run"
    owner = _read_pid(run_dir / "suite.pid")
    try:
        ports = json.loads((run_dir / PORTS_FILE).read_text())
    except (OSError, ValueError):
        ports = None
    if not ports or not owner or not pid_alive(owner):
        raise SuiteError(f"no `make run` is running on {data_dir} (start one, or pass the "
                         f"--data-dir it runs on)")
    return {name: int(port) for name, port in ports.items()}


def cmd_clock(args) -> int:
    """`clock advance D` / `clock show`: every domain service of the launcher running on
    --data-dir, on its own port; one line each; exit 1 if any did not answer."""
    advance = parse_duration(args.duration) if args.clock_cmd == "advance" else None
    ports = running_ports(args.data_dir.resolve())
    answers, errors = clock_all({n: f"http://{HOST}:{ports[n]}" for n in SERVICES}, advance)
    for name in SERVICES:
        if name in answers:
            a = answers[name]
            print(f"{name}: {a['now']} (offset {format_duration(a['offsetSeconds'])})", flush=True)
        else:
            print(f"{name}: FAILED: {errors[name]}", flush=True)
    if errors:
        say(f"{len(errors)} of {len(SERVICES)} services did not answer: {', '.join(errors)}")
        return 1
    return 0


def _duration_arg(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="suite.py", description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp, data_default=True):
        sp.add_argument("--data-dir", type=Path,
                        default=(REPO_ROOT / ".data") if data_default else None,
                        required=not data_default)
        sp.add_argument("--pg-port", type=int,
                        default=int(os.environ.get("MARKETPLACE_PG_PORT", DEFAULT_PG_PORT))
                        if data_default else None)
        sp.add_argument("--bin-dir", type=Path, default=None)

    sp = sub.add_parser("run", help="make run: everything, until Ctrl-C")
    common(sp)
    sp.add_argument("--gateway-port", type=int,
                    default=int(os.environ.get("MARKETPLACE_GATEWAY_PORT", DEFAULT_PORTS[GATEWAY])))
    sp.add_argument("--service-port", action="append", metavar="NAME=PORT")
    sp.add_argument("--mail-port", type=int, help="the mail catcher's web page and API",
                    default=int(os.environ.get("MARKETPLACE_MAIL_PORT", DEFAULT_MAIL_PORTS["http"])))
    sp.add_argument("--smtp-port", type=int, help="the mail catcher's SMTP port",
                    default=int(os.environ.get("MARKETPLACE_SMTP_PORT", DEFAULT_MAIL_PORTS["smtp"])))
    sp.add_argument("--release", action="store_true")
    sp.add_argument("--no-build", action="store_true")
    sp.add_argument("--no-install", action="store_true")
    sp.set_defaults(fn=cmd_run)

    sp = sub.add_parser("infra", help="throwaway Postgres + broker for integration tests")
    common(sp, data_default=False)
    sp.add_argument("--env-file", type=Path, required=True)
    sp.add_argument("--log-dir", type=Path, default=None, help="default: DATA_DIR/logs")
    sp.add_argument("--no-broker", action="store_true")
    sp.add_argument("--no-mail", action="store_true", help="without the mail catcher")
    sp.set_defaults(fn=cmd_infra)

    sp = sub.add_parser("ensure", help="install missing Debian (and pip) packages")
    sp.add_argument("--pip", nargs="*", default=[], help="pip distributions")
    sp.add_argument("--test", action="store_true", help="also TEST_PIP_PACKAGES")
    sp.set_defaults(fn=lambda a: (Suite(a.root, REPO_ROOT / ".data", pg_port=DEFAULT_PG_PORT)
                                  .ensure_packages([*a.pip, *(TEST_PIP_PACKAGES if a.test else ())]),
                                  0)[1])

    sp = sub.add_parser("build", help="swift build")
    sp.add_argument("--release", action="store_true")
    sp.add_argument("--tests", action="store_true")
    sp.set_defaults(fn=lambda a: (Suite(a.root, REPO_ROOT / ".data", pg_port=DEFAULT_PG_PORT,
                                        build_config="release" if a.release else "debug")
                                  .build(tests=a.tests), 0)[1])

    sp = sub.add_parser("migrate", help="start Postgres, run every migrate, stop")
    common(sp)
    sp.set_defaults(fn=cmd_migrate)

    sp = sub.add_parser("stop", help="stop a launcher running on --data-dir, or its leftovers")
    common(sp)
    sp.set_defaults(fn=cmd_stop)

    sp = sub.add_parser("clean-data", help="remove --data-dir once nothing runs on it")
    common(sp)
    sp.set_defaults(fn=cmd_clean_data)

    sp = sub.add_parser("clock", help="advance or show the business test clock of a running "
                        "`make run` (every domain service)")
    clock_sub = sp.add_subparsers(dest="clock_cmd", required=True)
    leaf = clock_sub.add_parser("advance", help="move every service's business time forward")
    leaf.add_argument("duration", type=_duration_arg,
                      help="30d, 12h, 15m, 90s, 1d12h, or a number of seconds")
    common(leaf)
    leaf = clock_sub.add_parser("show", help="print every service's business time")
    common(leaf)
    sp.set_defaults(fn=cmd_clock)

    sp = sub.add_parser("env", help="print a service's environment")
    common(sp)
    sp.add_argument("name", choices=ALL_SERVICES)
    sp.set_defaults(fn=lambda a: (print("\n".join(
        f"{k}={v}" for k, v in Suite(a.root, a.data_dir, pg_port=a.pg_port)
        .env_for(a.name).items())), 0)[1])

    args = p.parse_args(argv)
    try:
        return args.fn(args)
    except SuiteError as e:
        say(f"error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
