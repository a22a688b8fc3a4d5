"""Durable jobs survive the process that runs them: a job scheduled, its runner killed with
SIGKILL before the job is due (or in the middle of running it), and restarted, runs exactly once.
The runner is the platform's JobRunner inside `JobProbe` (Tests/JobProbe), whose one job kind
writes a row to `probe_runs` in the job's own transaction: one row per committed run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

from e2e_support import ManagedProcess, base_env, psql, wait_until


def _probe(suite, *args: str) -> list[str]:
    return [suite.binary("JobProbe"), *args, "--database-url", suite.superuser_dsn]


def _runner(suite, schema: str, name: str) -> ManagedProcess:
    process = ManagedProcess(name, _probe(suite, "run", "--schema", schema), base_env(), suite.log_dir / f"{name}.log")
    wait_until(lambda: "ready" in process.log_path.read_text(errors="replace") or process.exited() is not None,
               timeout=30, describe=f"{name} to start")
    assert process.exited() is None, process.describe()
    return process


def _schedule(suite, schema: str, *, label: str, due_in_ms: int, hold_ms: int = 0) -> None:
    subprocess.run(_probe(suite, "schedule", "--schema", schema, "--label", label, "--due-in-ms", str(due_in_ms),
                          "--hold-ms", str(hold_ms)), check=True, capture_output=True, timeout=60)


def _runs(suite, schema: str, label: str) -> int:
    return int(psql(suite.superuser_dsn, f"SELECT count(*) FROM \"{schema}\".probe_runs WHERE label = '{label}'")[0][0])


def _waiting(suite, schema: str) -> int:
    return int(psql(suite.superuser_dsn, f"SELECT count(*) FROM \"{schema}\".jobs")[0][0])


def _kill(process: ManagedProcess) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.process.wait(10)
    process.stop()


def test_a_job_whose_runner_is_killed_before_it_is_due_runs_once_after_a_restart(suite):
    schema = f"jobs_{uuid.uuid4().hex[:8]}"
    first = _runner(suite, schema, f"{schema}-first")
    _schedule(suite, schema, label="before-due", due_in_ms=4000)
    time.sleep(1)
    _kill(first)
    assert _runs(suite, schema, "before-due") == 0 and _waiting(suite, schema) == 1, "the job waits in its table"
    second = _runner(suite, schema, f"{schema}-second")
    try:
        wait_until(lambda: _runs(suite, schema, "before-due") >= 1, timeout=20, describe="the job to run after the restart")
        time.sleep(2)
        assert _runs(suite, schema, "before-due") == 1
        assert _waiting(suite, schema) == 0
    finally:
        second.stop()


def test_a_job_whose_runner_is_killed_while_running_it_runs_once_after_a_restart(suite):
    schema = f"jobs_{uuid.uuid4().hex[:8]}"
    first = _runner(suite, schema, f"{schema}-first")
    # The handler writes its row, then holds its transaction open for 5 s before committing.
    _schedule(suite, schema, label="mid-run", due_in_ms=0, hold_ms=5000)
    wait_until(lambda: "started" in first.log_path.read_text(errors="replace"), timeout=20, describe="the job to start")
    _kill(first)
    assert _runs(suite, schema, "mid-run") == 0, "the killed run's transaction rolled back"
    second = _runner(suite, schema, f"{schema}-second")
    try:
        wait_until(lambda: _runs(suite, schema, "mid-run") >= 1, timeout=30, describe="the job to run again and commit")
        time.sleep(1)
        assert _runs(suite, schema, "mid-run") == 1
        assert _waiting(suite, schema) == 0
    finally:
        second.stop()
