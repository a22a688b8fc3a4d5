#!/usr/bin/env python3
"""Self-test of deploy/dev/suite.py against a real Postgres and stand-in executables.

Run as root (like CI): `python3 deploy/test/selftest_suite.py -v` (or `make harness-selftest`).
Needs no Swift build: deploy/test/standins/standin.py plays the executables.
"""
from __future__ import annotations

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
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "deploy" / "dev"))
sys.path.insert(0, str(REPO / "deploy" / "test" / "standins"))

import standin  # noqa: E402
import suite as S  # noqa: E402

SUITE_PY = REPO / "deploy" / "dev" / "suite.py"


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
        subprocess.run(["rm", "-rf", str(cls.tmp)])

    def new_dir(self, name: str) -> Path:
        d = self.tmp / name
        d.mkdir()
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
            self.assertEqual(os.stat(s.pg_data_dir).st_uid, int(
                subprocess.check_output(["id", "-u", "postgres"]).strip()))
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

    def test_data_dir_not_traversable_is_a_clear_error(self):
        closed = self.new_dir("closed")
        os.chmod(closed, 0o700)
        inner = closed / "data"
        inner.mkdir()
        with self.suite_on(inner) as s:
            with self.assertRaisesRegex(S.SuiteError, "cannot traverse"):
                s.start_postgres()


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
            self.assertEqual(s.env_for("orders")["DATABASE_URL"],
                             f"postgres://orders:orders@127.0.0.1:{s.pg_port}/marketplace")
            self.assertEqual(s.env_for("orders")["KAFKA_BOOTSTRAP_SERVERS"],
                             s.kafka_bootstrap_servers)
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
        ports = S.free_ports(7)
        return ["run", "--no-build", "--no-install", "--bin-dir", str(self.bin), "--data-dir",
                str(data), "--pg-port", str(ports[0]), "--gateway-port", str(ports[1])] + [
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
            pids = [S._read_pid(data / "run" / f"{n}.pid") for n in S.EXECUTABLES]
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
        data = self.new_dir("cli-infra")
        env_file = self.tmp / "infra.env"
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
        pids = [pg, S._read_pid(data / "run" / "devbroker.pid")] + children_of(pg)
        os.kill(proc.pid, signal.SIGTERM)
        self.assertEqual(proc.wait(60), 0)
        self.assertEqual(wait_gone(pids), [])


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("note: not root; Postgres runs as the current user", file=sys.stderr)
    unittest.main(warnings="ignore")
