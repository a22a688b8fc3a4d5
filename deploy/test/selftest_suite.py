#!/usr/bin/env python3
"""Self-test of deploy/dev/suite.py against a real Postgres and stand-in executables.

Run as root (like CI): `python3 deploy/test/selftest_suite.py -v` (or `make harness-selftest`).
Needs no Swift build: deploy/test/standins/standin.py plays the executables (and a stand-in
apt-get, written by PackageLockTests, plays apt).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "dev"))
sys.path.insert(0, str(REPO / "deploy" / "test" / "standins"))

import standin  # noqa: E402
import suite as S  # noqa: E402

SUITE_PY = REPO / "deploy" / "dev" / "suite.py"
AS_ROOT = unittest.skipUnless(os.geteuid() == 0, "as root only (Postgres as the postgres user, apt)")


def postgres_uid() -> int:
    return int(subprocess.check_output(["id", "-u", S.PG_OS_USER]).strip())


def suite_cli(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SUITE_PY), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def wait_gone(pids, timeout=10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if S.pid_alive(p)]
        if not alive:
            return []
        time.sleep(0.1)
    return [p for p in pids if S.pid_alive(p)]


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="suite-selftest-"))
        os.chmod(cls.tmp, 0o755)
        cls.bin = standin.make_bin_dir(cls.tmp / "bin")

    @classmethod
    def tearDownClass(cls):
        # Clusters kept outside a data dir of ours that a failed test left behind.
        for home in S.pg_clusters_dir().glob("*"):
            if (S.cluster_owner(home) or "").startswith(f"{cls.tmp}/"):
                subprocess.run(["rm", "-rf", str(home)])
        subprocess.run(["rm", "-rf", str(cls.tmp)])

    def new_dir(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir()
        return d

    def private_dir(self, name: str) -> Path:
        """A directory only its owner (root) may enter, as /root or a 0700 home."""
        d = self.new_dir(name)
        os.chmod(d, 0o700)
        return d

    def suite_on(self, data_dir: Path, **kw) -> S.Suite:
        ports = S.free_ports(7)
        kw.setdefault("pg_port", ports[0])
        return S.Suite(REPO, data_dir, gateway_port=ports[1],
                       service_ports=dict(zip(S.SERVICES, ports[2:])), bin_dir=self.bin,
                       pg_settings=S.FAST_PG_SETTINGS, **kw)


class PostgresTests(Base):
    def test_start_stop_restart_keeps_data_and_bootstrap_is_idempotent(self):
        data = self.new_dir("pg-keep")
        s = self.suite_on(data)
        with s:
            s.start_postgres()
            self.assertEqual(os.stat(s.pg_data_dir).st_uid, postgres_uid())
            self.assertFalse((data / "postgres").is_symlink())  # reachable: the cluster stays inside
            self.assertEqual(s.psql("SELECT current_user"), "postgres\n")
            schemas = s.psql("SELECT nspname || ':' || nspowner::regrole FROM pg_namespace "
                             "WHERE nspname = ANY('{identity,listings,billing,orders,messaging}') "
                             "ORDER BY 1").split()
            self.assertEqual(schemas, sorted(f"{n}:{n}" for n in S.SERVICES))
            s.bootstrap_database()  # second run: no error
            s.bootstrap_database()
            s.psql("CREATE TABLE public.keepme (v text); INSERT INTO keepme VALUES ('kept')")
            postmaster = s.postgres_pid()
            pg_pids = [postmaster] + children_of(postmaster)
            self.assertGreater(len(pg_pids), 3)
            version_mtime = (s.pg_data_dir / "PG_VERSION").stat().st_mtime
        self.assertEqual(wait_gone(pg_pids), [], "postgres processes left after stop()")
        self.assertFalse((data / "postgres" / "postmaster.pid").exists())

        # Restart on a different port with the same data: no initdb, data kept, bootstrap ok.
        s2 = self.suite_on(data)
        with s2:
            s2.start_postgres()
            self.assertEqual((s2.pg_data_dir / "PG_VERSION").stat().st_mtime, version_mtime)
            self.assertEqual(s2.psql("SELECT v FROM keepme"), "kept\n")
            self.assertEqual(s2.psql("SELECT count(*) FROM pg_roles WHERE rolname = "
                                     "ANY('{identity,listings,billing,orders,messaging}')"), "5\n")
            pids = [s2.postgres_pid()] + children_of(s2.postgres_pid())
        self.assertEqual(wait_gone(pids), [])

    def test_role_isolation(self):
        with self.suite_on(self.new_dir("pg-iso")) as s:
            s.start_postgres()
            # identity creates a table in its own schema (search_path = identity).
            s.psql("CREATE TABLE sometable (secret text); INSERT INTO sometable VALUES ('x')",
                   user="identity")
            self.assertEqual(s.psql("SELECT schemaname FROM pg_tables WHERE tablename = 'sometable'"),
                             "identity\n")
            with self.assertRaisesRegex(S.SuiteError, "permission denied for schema identity"):
                s.psql("SELECT * FROM identity.sometable", user="listings")
            with self.assertRaisesRegex(S.SuiteError, "permission denied for schema public"):
                s.psql("CREATE TABLE public.intruder (x int)", user="listings")
            with self.assertRaisesRegex(S.SuiteError, "password authentication failed"):
                s.psql("SELECT 1", user="listings", password="wrong")
            s.psql("CREATE TABLE own (x int); DROP TABLE own", user="listings")
            self.assertEqual(s.psql("SHOW search_path", user="listings"), "listings\n")
            s.psql("DROP TABLE identity.sometable", user="identity")

    def test_lock_refuses_second_launcher(self):
        data = self.new_dir("pg-lock")
        with self.suite_on(data) as s:
            s.start_postgres()
            other = self.suite_on(data)
            with self.assertRaisesRegex(S.SuiteError, "another suite.py"):
                other.start_postgres()

    @AS_ROOT
    def test_data_dir_under_a_private_directory_keeps_its_cluster_outside(self):
        """A clone under /root (0700): the postgres user cannot reach <clone>/.data."""
        data = self.private_dir("private") / "clone" / ".data"
        data.mkdir(parents=True)
        s = self.suite_on(data)
        with s:
            s.start_postgres()
            link = data / "postgres"
            self.assertTrue(link.is_symlink())
            home = s.pg_data_dir.parent
            self.assertEqual(s.pg_data_dir, home / "pgdata")
            self.assertEqual(home.parent, S.pg_clusters_dir())
            self.assertEqual(S.cluster_owner(home), str(data))
            self.assertEqual(os.stat(s.pg_data_dir).st_uid, postgres_uid())
            self.assertEqual(s.psql("SELECT 1"), "1\n")
            s.psql("CREATE TABLE public.keepme (v text); INSERT INTO keepme VALUES ('kept')")
            version_mtime = (s.pg_data_dir / "PG_VERSION").stat().st_mtime
            self.assertEqual(list(home.glob("pgpw-*")), [])  # initdb's password file is gone
        self.assertIn("database system is ready", s.log_path("postgres").read_text())
        self.assertFalse((link / "postmaster.pid").exists())

        s2 = self.suite_on(data)  # a second run: the same cluster, data kept
        with s2:
            s2.start_postgres()
            self.assertEqual(s2.pg_data_dir, home / "pgdata")
            self.assertEqual((s2.pg_data_dir / "PG_VERSION").stat().st_mtime, version_mtime)
            self.assertEqual(s2.psql("SELECT v FROM keepme"), "kept\n")

        r = suite_cli("clean-data", "--data-dir", data)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"and its cluster in {home}", r.stderr)
        self.assertFalse(data.exists())
        self.assertFalse(home.exists())

    @AS_ROOT
    def test_a_cluster_inside_a_data_dir_postgres_can_no_longer_reach_is_a_clear_error(self):
        parent = self.new_dir("closed-later")
        with self.suite_on(parent / "data") as s:
            s.start_postgres()  # reachable then: the cluster is data/postgres itself
        os.chmod(parent, 0o700)
        with self.suite_on(parent / "data") as s:
            with self.assertRaisesRegex(S.SuiteError, "cannot reach .*clean-data"):
                s.start_postgres()

    @AS_ROOT
    def test_remove_data_dir_removes_only_the_cluster_that_names_it(self):
        for owner_is_us in (True, False):
            with self.subTest(owner_is_us=owner_is_us):
                data = self.new_dir(f"rm-{owner_is_us}")
                home = self.new_dir(f"rm-{owner_is_us}-home")
                (home / "pgdata").mkdir()
                (home / S.CLUSTER_OWNER_FILE).write_text(
                    f"{data if owner_is_us else self.tmp / 'someone-else'}\n")
                (data / "postgres").symlink_to(home / "pgdata")
                self.suite_on(data).remove_data_dir()
                self.assertFalse(data.exists())
                self.assertEqual(home.exists(), not owner_is_us)

    @AS_ROOT
    def test_an_earlier_cluster_at_the_same_path_is_left_alone(self):
        data = self.new_dir("earlier")
        s = self.suite_on(data)
        earlier = S.pg_clusters_dir() / S.cluster_name(s.data_dir)
        earlier.mkdir(parents=True)
        (earlier / S.CLUSTER_OWNER_FILE).write_text(f"{data}\n")  # e.g. a moved-away .data's
        try:
            home = s._new_cluster_home()
            self.assertEqual(home, earlier.with_name(earlier.name + ".2"))
            self.assertTrue(earlier.exists())
        finally:
            subprocess.run(["rm", "-rf", str(earlier)])


class SuiteTests(Base):
    def test_full_suite_with_standins_and_clean_shutdown(self):
        s = S.Suite.throwaway(REPO, bin_dir=self.bin)
        with s:
            s.start_postgres()
            s.start_broker()
            s.migrate_all()
            s.start_all()
            body = urllib.request.urlopen(s.gateway_url + "/v1/plans", timeout=5).read()
            self.assertIn(b'"currency": "EUR"', body)
            env = s.env_for("gateway")
            self.assertNotIn("DATABASE_URL", env)
            self.assertEqual(env["UPSTREAM_BILLING"], s.url("billing"))
            self.assertNotIn("UPSTREAM_BILLING", s.env_for("orders"), "upstreams are the gateway's alone")
            self.assertEqual(s.env_for("orders")["DATABASE_URL"],
                             f"postgres://orders:orders@127.0.0.1:{s.pg_port}/marketplace")
            self.assertEqual(s.env_for("orders")["KAFKA_BOOTSTRAP_SERVERS"],
                             s.kafka_bootstrap_servers)
            self.assertEqual({n: s.env_for(n).get("TEST_CLOCK") for n in S.ALL_SERVICES},
                             {**{n: "on" for n in S.SERVICES}, "gateway": None})
            self.assertEqual(json.loads((s.run_dir / "ports.json").read_text()),
                             {**s.ports, "postgres": s.pg_port})
            moved = s.advance_clock(3600)
            self.assertEqual(list(moved), list(S.SERVICES))
            self.assertEqual({a["offsetSeconds"] for a in moved.values()}, {3600})
            self.assertEqual({a["offsetSeconds"] for a in s.clock().values()}, {3600})
            business = datetime.fromisoformat(moved["orders"]["now"])
            self.assertLess(abs(business - datetime.now(timezone.utc) - timedelta(hours=1)),
                            timedelta(seconds=60))
            for bad in (-1, 1.5, True, "60"):
                with self.assertRaises(ValueError):
                    s.advance_clock(bad)
            pids = [s.pid(n) for n in S.EXECUTABLES]
            self.assertTrue(all(pids))
            for n in S.EXECUTABLES:
                self.assertEqual(S._read_pid(s.run_dir / f"{n}.pid"), s.pid(n))
            pids += [s.postgres_pid()] + children_of(s.postgres_pid())
            # restart one service
            s.stop_service("billing")
            s.start_service("billing")
        self.assertEqual(wait_gone(pids), [])
        self.assertEqual(set(s.exit_codes.values()), {0}, s.exit_codes)
        self.assertFalse(s.data_dir.exists(), "throwaway data dir not removed")

    @AS_ROOT
    def test_throwaway_under_a_private_temp_base(self):
        base = self.private_dir("private-tmp")
        old = os.environ.get("MARKETPLACE_TMP")
        os.environ["MARKETPLACE_TMP"] = str(base)
        try:
            s = S.Suite.throwaway(REPO, bin_dir=self.bin)
        finally:
            os.environ.pop("MARKETPLACE_TMP") if old is None else os.environ.update(
                MARKETPLACE_TMP=old)
        with s:
            s.start_postgres()
            self.assertEqual(s.data_dir.parent, base.resolve())
            self.assertEqual(s.psql("SELECT 1"), "1\n")
            home = s.pg_data_dir.parent
            self.assertEqual(home.parent, S.pg_clusters_dir())
        self.assertFalse(s.data_dir.exists(), "throwaway data dir not removed")
        self.assertFalse(home.exists(), "throwaway cluster outside the data dir not removed")

    def test_advance_clock_names_each_service_that_does_not_answer(self):
        s = S.Suite.throwaway(REPO, bin_dir=self.bin, service_env={"orders": {"TEST_CLOCK": "off"}})
        with s:
            s.start_broker()  # the stand-ins need no Postgres to serve
            s.start_service("billing")
            s.start_service("orders")
            with self.assertRaises(S.SuiteError) as cm:
                s.advance_clock(60)
            msg = str(cm.exception)
            self.assertRegex(msg, r"orders: HTTP 404 .*no test clock there")
            for name in ("identity", "listings", "messaging"):
                self.assertRegex(msg, rf"{name}: no answer from {s.url(name)}/internal/test-clock")
            self.assertNotIn("billing", msg)
            self.assertEqual(S.clock_request(s.url("billing"))["offsetSeconds"], 60)

    def test_service_that_dies_reports_its_log(self):
        bad = self.tmp / "badbin"
        standin.make_bin_dir(bad)
        (bad / "listings").unlink()
        (bad / "listings").write_text("#!/bin/sh\necho 'fatal: cannot parse DATABASE_URL' >&2\nexit 3\n")
        os.chmod(bad / "listings", 0o755)
        s = S.Suite.throwaway(REPO, bin_dir=bad)
        with s:
            s.start_postgres()
            s.start_broker()
            with self.assertRaises(S.SuiteError) as cm:
                s.start_all()
            msg = str(cm.exception)
            self.assertIn("listings exited with code 3", msg)
            self.assertIn("cannot parse DATABASE_URL", msg)
            with self.assertRaisesRegex(S.SuiteError, "listings migrate failed"):
                s.migrate("listings")

    def test_missing_binary_is_a_clear_error(self):
        with S.Suite.throwaway(REPO, bin_dir=self.tmp / "nowhere") as s:
            with self.assertRaisesRegex(S.SuiteError, "not found; build first"):
                s.start_broker()

    def test_leftovers_of_a_killed_launcher_are_stopped(self):
        data = self.new_dir("stale")
        ports = S.free_ports(7)
        code = f"""
import sys; sys.path.insert(0, {str(REPO / 'deploy' / 'dev')!r})
import suite as S
from pathlib import Path
s = S.Suite(Path({str(REPO)!r}), Path({str(data)!r}), pg_port={ports[0]}, gateway_port={ports[1]},
            service_ports=dict(zip(S.SERVICES, {ports[2:]!r})), bin_dir=Path({str(self.bin)!r}))
s.start_postgres(); s.start_broker(); s.start_service("identity")
print("UP", flush=True)
import time; time.sleep(600)
"""
        launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            self.assertEqual(launcher.stdout.readline().strip(), "UP")
            broker = S._read_pid(data / "run" / "devbroker.pid")
            identity = S._read_pid(data / "run" / "identity.pid")
            pg = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        finally:
            launcher.kill()  # the launcher dies without cleaning up
            launcher.wait()
        self.assertTrue(all(S.pid_alive(p) for p in (broker, identity, pg)))
        s = self.suite_on(data)
        with s:
            s.start_postgres()  # takes the lock, stops the leftovers, starts afresh
            self.assertEqual(wait_gone([broker, identity, pg]), [])
            self.assertNotEqual(s.postgres_pid(), pg)


class CliTests(Base):
    def start_cli(self, *args):
        proc = subprocess.Popen([sys.executable, str(SUITE_PY), *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        proc.lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                proc.lines.put(line)
            proc.lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        return proc

    def read_until(self, proc, pattern, timeout=120):
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            try:
                line = proc.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            lines.append(line)
            if re.search(pattern, line):
                return lines
        proc.kill()
        raise AssertionError(f"no {pattern!r} in stdout {lines}; stderr: {proc.stderr.read()}")

    def finish(self, proc, timeout):
        """Waits for exit; returns stderr (stdout is drained by the pump thread)."""
        proc.wait(timeout)
        return proc.stderr.read()

    def run_args(self, data):
        ports = S.free_ports(9)
        return ["run", "--no-build", "--no-install", "--bin-dir", str(self.bin), "--data-dir",
                str(data), "--pg-port", str(ports[0]), "--gateway-port", str(ports[1]),
                "--smtp-port", str(ports[7]), "--mail-port", str(ports[8])] + [
                    a for n, p in zip(S.SERVICES, ports[2:]) for a in ("--service-port", f"{n}={p}")]

    def test_run_prints_gateway_and_stops_cleanly_on_sigterm_and_reuses_data(self):
        data = self.new_dir("cli-run")
        args = self.run_args(data)
        for attempt in (1, 2):
            proc = self.start_cli(*args)
            lines = self.read_until(proc, r"^logs: ")
            gw = [l for l in lines if l.startswith("gateway: ")]
            self.assertEqual(len(gw), 1, lines)
            self.assertRegex(gw[0], r"^gateway: http://127\.0\.0\.1:\d+\n$")
            urllib.request.urlopen(gw[0].split(": ", 1)[1].strip() + "/health/ready", timeout=5)
            mail = [l for l in lines if l.startswith("mail: ")]
            self.assertEqual(mail, [f"mail: http://127.0.0.1:{args[args.index('--mail-port') + 1]}\n"], lines)
            urllib.request.urlopen(mail[0].split(": ", 1)[1].strip() + "/api/v1/messages", timeout=5)
            pids = [S._read_pid(data / "run" / f"{n}.pid") for n in (*S.EXECUTABLES, S.MAILCATCHER)]
            pg = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
            pids += [pg] + children_of(pg)
            self.assertTrue(all(pids))
            os.kill(proc.pid, signal.SIGTERM)
            err = self.finish(proc, 120)
            self.assertEqual(proc.returncode, 0, err)
            self.assertEqual(wait_gone(pids), [], err)
            self.assertEqual(list((data / "run").glob("*.pid")), [])
            if attempt == 2:
                self.assertNotIn("initdb", err)  # second run reuses the cluster

    def test_stop_subcommand_stops_a_running_launcher(self):
        data = self.new_dir("cli-stop")
        proc = self.start_cli(*self.run_args(data))
        self.read_until(proc, r"^gateway: ")
        r = subprocess.run([sys.executable, str(SUITE_PY), "stop", "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(proc.wait(30), 0)
        r = subprocess.run([sys.executable, str(SUITE_PY), "clean-data", "--data-dir", str(data)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(data.exists())

    def test_clean_data_refuses_while_running(self):
        data = self.new_dir("cli-clean")
        proc = self.start_cli(*self.run_args(data))
        try:
            self.read_until(proc, r"^gateway: ")
            r = subprocess.run([sys.executable, str(SUITE_PY), "clean-data", "--data-dir",
                                str(data)], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 1)
            self.assertIn("another suite.py", r.stderr)
            self.assertTrue((data / "postgres" / "PG_VERSION").exists())
        finally:
            os.kill(proc.pid, signal.SIGINT)
            self.assertEqual(proc.wait(60), 0)

    def test_infra_writes_env_and_stops(self):
        self.check_infra(self.new_dir("cli-infra"))

    @AS_ROOT
    def test_infra_under_a_private_directory(self):
        data = self.private_dir("private-infra") / "infra"
        home = self.check_infra(data)
        self.assertTrue((data / "postgres").is_symlink())
        r = suite_cli("clean-data", "--data-dir", data)  # as run-tests.sh does
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertFalse(home.exists())

    def check_infra(self, data: Path) -> Path:
        """Runs `suite.py infra` on data, checks its env file, stops it; returns its PGDATA's parent."""
        env_file = data.parent / f"{data.name}.env"
        proc = self.start_cli("infra", "--data-dir", str(data), "--env-file", str(env_file),
                              "--bin-dir", str(self.bin))
        deadline = time.monotonic() + 120
        while not env_file.exists():
            self.assertIsNone(proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
        env = dict(re.match(r"export (\w+)=(.*)", l).groups()
                   for l in env_file.read_text().splitlines())
        self.assertEqual(set(env), set(S.INFRA_ENV_KEYS))
        r = subprocess.run(["bash", "-c", f"source {env_file} && psql -XAt "
                            "\"$TEST_DATABASE_URL_BILLING\" -c 'select current_user' && "
                            "psql -XAt \"$TEST_DATABASE_ADMIN_URL\" -c 'select current_database()'"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.stdout, "billing\npostgres\n", r.stderr)
        pg = int((data / "postgres" / "postmaster.pid").read_text().split()[0])
        with urllib.request.urlopen(env["TEST_MAIL_URL"].strip("'") + "/api/v1/messages", timeout=5) as answer:
            self.assertEqual(json.load(answer)["total"], 0)
        pids = [pg, S._read_pid(data / "run" / "devbroker.pid"), S._read_pid(data / "run" / "mailcatcher.pid")] + children_of(pg)
        self.assertTrue(all(pids))
        os.kill(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(60), 0)
        self.assertEqual(wait_gone(pids), [])
        return S.Suite(REPO, data, pg_port=S.free_port()).pg_data_dir.parent

    def test_clock_advance_and_show_reach_every_service_of_a_running_launcher(self):
        data = self.new_dir("cli-clock")
        args = self.run_args(data)  # every port a free one, none the default
        proc = self.start_cli(*args)
        try:
            self.read_until(proc, r"^gateway: ")
            ports = json.loads((data / "run" / "ports.json").read_text())
            passed = dict(a.split("=") for a in args if "=" in a)
            passed["gateway"] = args[args.index("--gateway-port") + 1]
            self.assertEqual({n: ports[n] for n in S.ALL_SERVICES},
                             {n: int(passed[n]) for n in S.ALL_SERVICES})

            self.assert_clock_lines(suite_cli("clock", "advance", "2d", "--data-dir", data),
                                    "2d", timedelta(days=2))
            self.assert_clock_lines(suite_cli("clock", "show", "--data-dir", data),
                                    "2d", timedelta(days=2))
            self.assert_clock_lines(suite_cli("clock", "advance", "1d12h", "--data-dir", data),
                                    "3d12h", timedelta(days=3, hours=12))

            messaging = S._read_pid(data / "run" / "messaging.pid")
            os.kill(messaging, signal.SIGKILL)  # one service stops answering
            self.assertEqual(wait_gone([messaging]), [])
            r = suite_cli("clock", "advance", "90s", "--data-dir", data)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            lines = r.stdout.splitlines()
            self.assertEqual([l.split(":")[0] for l in lines], list(S.SERVICES))
            for line in lines[:-1]:
                self.assertTrue(line.endswith("(offset 3d12h1m30s)"), line)
            self.assertRegex(lines[-1], r"^messaging: FAILED: no answer from http://127\.0\.0\.1:"
                                        rf"{ports['messaging']}/internal/test-clock")
            self.assertIn("1 of 5 services did not answer: messaging", r.stderr)
        finally:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(120)
        self.assertFalse((data / "run" / "ports.json").exists())
        r = suite_cli("clock", "show", "--data-dir", data)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no `make run` is running on", r.stderr)

    def assert_clock_lines(self, r, offset: str, ahead: timedelta):
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual([l.split(":")[0] for l in lines], list(S.SERVICES), r.stdout)
        for line in lines:
            m = re.fullmatch(r"\w+: (\S+) \(offset (\w+)\)", line)
            self.assertIsNotNone(m, line)
            self.assertEqual(m[2], offset)
            drift = datetime.fromisoformat(m[1]) - datetime.now(timezone.utc) - ahead
            self.assertLess(abs(drift), timedelta(seconds=60), line)


class DurationTests(unittest.TestCase):
    def test_parse_and_format(self):
        for text, seconds in (("30d", 2592000), ("12h", 43200), ("15m", 900), ("90s", 90),
                              ("1d12h", 129600), ("2d3h4m5s", 183845), ("3600", 3600), ("0", 0)):
            self.assertEqual(S.parse_duration(text), seconds, text)
        for text in ("", "-5", "1.5", "12x", "1h1d", "d", "1 d", "5 s"):
            with self.assertRaises(ValueError, msg=text):
                S.parse_duration(text)
        self.assertEqual([S.format_duration(n) for n in (0, 90, 172800, 302490, 61.9)],
                         ["0s", "1m30s", "2d", "3d12h1m30s", "1m1s"])


@AS_ROOT
class MailCatcherTests(unittest.TestCase):
    """deploy/dev/mailcatcher.py: mails taken over SMTP, shown through Mailpit's API, faults on demand."""

    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="catcher-"))
        self.start()

    def start(self, *extra):
        address = self.tmp / "mail.address"
        address.unlink(missing_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(REPO / "deploy" / "dev" / "mailcatcher.py"), "--smtp-port", "0",
                                      "--http-port", "0", "--address-file", str(address), *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not address.exists():
            self.assertIsNone(self.proc.poll(), "the catcher exited")
            self.assertLess(time.monotonic(), deadline, "no address file")
            time.sleep(0.05)
        ports = json.loads(address.read_text())
        self.smtp_port, self.url = ports["smtp"], f"http://127.0.0.1:{ports['http']}"

    def tearDown(self):
        self.proc.terminate()
        self.assertEqual(self.proc.wait(10), 0, "stops cleanly on SIGTERM")
        self.proc.stderr.close()
        for entry in self.tmp.iterdir():
            entry.unlink()
        self.tmp.rmdir()

    def api(self, path, method="GET", body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=5) as answer:
            raw = answer.read()
            return json.loads(raw) if answer.headers.get_content_type() == "application/json" else raw.decode()

    def send(self, to, subject, text="Hello", html=None, headers=None, bcc=()):
        import smtplib
        from email.message import EmailMessage
        message = EmailMessage()
        message["From"] = "Marketplace <no-reply@marketplace.test>"
        message["To"] = to
        message["Subject"] = subject
        for name, value in (headers or {}).items():
            message[name] = value
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=5) as smtp:
            smtp.send_message(message, to_addrs=[to, *bcc])

    def test_mails_are_listed_newest_first_with_mailpits_fields(self):
        self.send("Ada <ada@example.com>", "First", text="one")
        self.send("bob@example.com", "Second: café", text="two", html="<p>two</p>",
                  headers={"List-Unsubscribe": "<https://marketplace.test/u/1>"}, bcc=["audit@example.com"])
        listed = self.api("/api/v1/messages")
        self.assertEqual(listed["total"], 2)
        self.assertEqual([m["Subject"] for m in listed["messages"]], ["Second: café", "First"])
        first = listed["messages"][1]
        self.assertEqual(first["From"], {"Name": "Marketplace", "Address": "no-reply@marketplace.test"})
        self.assertEqual(first["To"], [{"Name": "Ada", "Address": "ada@example.com"}])
        self.assertRegex(first["Created"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        second = self.api(f"/api/v1/message/{listed['messages'][0]['ID']}")
        self.assertEqual((second["Text"].strip(), second["HTML"].strip()), ("two", "<p>two</p>"))
        self.assertEqual(second["Bcc"], [{"Name": "", "Address": "audit@example.com"}], "envelope-only recipients")
        self.assertEqual(self.api("/api/v1/message/latest")["ID"], second["ID"])
        headers = self.api(f"/api/v1/message/{second['ID']}/headers")
        self.assertEqual(headers["List-Unsubscribe"], ["<https://marketplace.test/u/1>"])
        self.assertIn("Subject: Second", self.api(f"/api/v1/message/{second['ID']}/raw"))
        found = self.api("/api/v1/search?query=" + urllib.request.quote("to:ada@example.com"))
        self.assertEqual([m["Subject"] for m in found["messages"]], ["First"])
        self.assertEqual(self.api("/api/v1/search?query=" + urllib.request.quote('subject:"second: caf"'))["total"], 1)
        self.assertEqual(self.api("/api/v1/messages?start=1&limit=1")["messages"][0]["Subject"], "First")

    def test_delete_some_or_all(self):
        for n in range(3):
            self.send("a@example.com", f"mail {n}")
        ids = [m["ID"] for m in self.api("/api/v1/messages")["messages"]]
        self.api("/api/v1/messages", "DELETE", {"IDs": ids[:1]})
        self.assertEqual([m["ID"] for m in self.api("/api/v1/messages")["messages"]], ids[1:])
        self.api("/api/v1/messages", "DELETE")
        self.assertEqual(self.api("/api/v1/messages")["total"], 0)
        with self.assertRaises(urllib.error.HTTPError) as missing:
            self.api(f"/api/v1/message/{ids[0]}")
        self.assertEqual(missing.exception.code, 404)

    def test_faults_answer_a_code_at_their_stage_for_the_times_asked(self):
        import smtplib
        self.api("/api/dev/faults", "PUT", {"faults": [{"stage": "rcpt", "code": 451, "match": "slow@", "times": 1},
                                                     {"stage": "data", "code": 554, "match": "gone@"}]})
        with self.assertRaises(smtplib.SMTPRecipientsRefused) as refused:
            self.send("slow@example.com", "temporary")
        self.assertEqual(refused.exception.recipients["slow@example.com"][0], 451)
        self.send("slow@example.com", "temporary", text="the second try")  # times: 1
        with self.assertRaises(smtplib.SMTPDataError) as rejected:
            self.send("gone@example.com", "permanent")
        self.assertEqual(rejected.exception.smtp_code, 554)
        self.send("other@example.com", "unaffected")
        self.assertEqual([m["Subject"] for m in self.api("/api/v1/messages")["messages"]], ["unaffected", "temporary"])
        self.api("/api/dev/faults", "PUT", {"faults": []})
        self.send("gone@example.com", "now taken")
        self.assertEqual(self.api("/api/v1/messages")["total"], 3)
        with self.assertRaises(urllib.error.HTTPError) as bad:
            self.api("/api/dev/faults", "PUT", {"faults": [{"stage": "helo", "code": 200}]})
        self.assertEqual(bad.exception.code, 400)

    def test_memory_is_bounded_and_the_page_escapes_what_mails_say(self):
        self.tearDown()
        self.tmp.mkdir()
        self.start("--max-messages", "3")
        for n in range(5):
            self.send("a@example.com", f"<script>alert({n})</script>")
        listed = self.api("/api/v1/messages")
        self.assertEqual(listed["total"], 3, "the oldest go first")
        page = self.api("/")
        self.assertIn("&lt;script&gt;alert(4)&lt;/script&gt;", page)
        self.assertNotIn("<script>", page)


class PackageLockTests(Base):
    """ensure_packages while another install holds Debian's package locks: lock files of our own,
    held (fcntl, as apt holds them) by another process, and a stand-in apt-get that fails as apt
    does when it cannot take them."""

    FAKE_APT = """#!{python}
import fcntl, os, sys
args = sys.argv[1:]
locks = {locks!r}["update" if "update" in args else "install"]
if os.path.exists({fail_once!r}):
    os.unlink({fail_once!r})  # lost the race for a lock that was free when the launcher looked
    print("E: Could not get lock " + locks[0] + ". It is held by process 1 (apt-get)")
    sys.exit(100)
for path in locks:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("E: Could not get lock " + path)
        sys.exit(100)
with open({log!r}, "a") as f:
    f.write(" ".join(args) + "\\n")
"""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(dir=self.tmp))
        self.log = self.dir / "apt.log"
        self.fail_once = self.dir / "fail-once"
        self.lists = (self.dir / "lists-lock",)
        self.dpkg = (self.dir / "lock-frontend", self.dir / "lock")
        apt = self.dir / "apt-get"
        apt.write_text(self.FAKE_APT.format(
            python=sys.executable, log=str(self.log), fail_once=str(self.fail_once),
            locks={"update": [str(p) for p in self.lists], "install": [str(p) for p in self.dpkg]}))
        apt.chmod(0o755)
        self.suite = s = self.suite_on(self.new_dir(self.dir.name + "-data"))
        s.apt_get, s.apt_lists_locks, s.dpkg_locks = str(apt), self.lists, self.dpkg
        s.debian_packages = ("marketplace-selftest-absent",)  # dpkg-query: not installed

    def hold(self, path: Path) -> subprocess.Popen:
        """Another process holding path's lock until its stdin closes."""
        proc = subprocess.Popen([sys.executable, "-c", (
            "import fcntl, os, sys\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.lockf(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()\n")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.assertEqual(proc.stdout.readline(), "held\n")
        self.addCleanup(lambda: (proc.stdin.close(), proc.wait(10)))
        return proc

    def ensure_in_background(self):
        """ensure_packages on a thread, its messages (stderr) captured: (thread, output, errors)."""
        out, errors = io.StringIO(), []

        def ensure():
            try:
                self.suite.ensure_packages()
            except S.SuiteError as e:
                if "`swift` is not on PATH" not in str(e):  # the last check; not ours here
                    errors.append(e)
        redirect = contextlib.redirect_stderr(out)
        redirect.__enter__()
        self.addCleanup(redirect.__exit__, None, None, None)
        thread = threading.Thread(target=ensure, daemon=True)
        thread.start()
        return thread, out, errors

    def apt_calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def test_ensure_waits_for_a_held_lock_then_installs(self):
        for held, calls_while_held in ((self.lists[0], []), (self.dpkg[0], ["update"])):
            with self.subTest(held=held.name):
                self.log.unlink(missing_ok=True)
                holder = self.hold(held)
                thread, out, errors = self.ensure_in_background()
                deadline = time.monotonic() + 20
                while "waiting for the Debian package lock" not in out.getvalue():
                    self.assertLess(time.monotonic(), deadline, out.getvalue())
                    time.sleep(0.1)
                self.assertRegex(out.getvalue(), rf"held by another install \(pid {holder.pid}, "
                                                 rf"python3[.\d]*; {held}\) …")
                time.sleep(1.5)  # still waiting
                self.assertTrue(thread.is_alive())
                self.assertEqual([c.split()[-1] for c in self.apt_calls()], calls_while_held)
                holder.stdin.close()  # the other install finishes
                holder.wait(10)
                thread.join(30)
                self.assertFalse(thread.is_alive())
                self.assertEqual(errors, [])
                calls = self.apt_calls()
                self.assertEqual(len(calls), 2, calls)
                self.assertRegex(calls[0], r"^-o DPkg::Lock::Timeout=\d+ update$")
                self.assertRegex(calls[1], r"^-o DPkg::Lock::Timeout=\d+ install -y "
                                           r"--no-install-recommends marketplace-selftest-absent$")
                self.assertEqual(out.getvalue().count("waiting for the Debian package lock"), 1)

    def test_a_lock_still_held_after_the_bound_is_a_clear_error(self):
        holder = self.hold(self.dpkg[1])
        self.suite.package_lock_timeout = 2
        with contextlib.redirect_stderr(io.StringIO()):
            with self.assertRaisesRegex(S.SuiteError, rf"{self.dpkg[1]} is still held by another "
                                                      rf"install \(pid {holder.pid}, python3[.\d]*\)"):
                self.suite.ensure_packages()
        self.assertEqual([c.split()[-1] for c in self.apt_calls()], ["update"])

    def test_apt_losing_the_race_for_a_lock_waits_again(self):
        self.fail_once.touch()
        thread, out, errors = self.ensure_in_background()
        thread.join(30)
        self.assertEqual(errors, [])
        self.assertFalse(self.fail_once.exists())
        self.assertEqual([c.split()[2] for c in self.apt_calls()], ["update", "install"])


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("note: not root; Postgres runs as the current user", file=sys.stderr)
    unittest.main(warnings="ignore")
