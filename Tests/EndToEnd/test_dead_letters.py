"""A message no consumer can read is dead-lettered by every consuming service, carries its
failure in headers, and `<service> dlq redrive` puts it back on its original topic. Meanwhile
the healthy events behind it keep flowing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from e2e_support import SERVICES, psql, sql_literal, wait_until

CONSUMERS = [name for name in SERVICES if name != "identity"]


def dead_lettered(api) -> int:
    text = api.get("/metrics").expect(200).text()
    match = re.search(r'^consumer_messages_dead_lettered_total\{service="[a-z]+"\} (\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def kcat(*args: str, stdin: bytes | None = None, timeout: float = 20) -> str:
    result = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=timeout)
    assert result.returncode == 0, f"kcat {' '.join(args)} failed: {result.stderr.decode(errors='replace')}"
    return result.stdout.decode(errors="replace")


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (make test installs it)")
def test_a_poison_message_is_dead_lettered_and_redriven(suite, direct, register):
    broker = suite.suite.kafka_bootstrap_servers
    before = {name: dead_lettered(direct[name]) for name in CONSUMERS}

    # Not a CloudEvent: no ce_* headers. Nobody can apply it, so retrying would not help either.
    kcat("-b", broker, "-P", "-t", "identity.users.v1", "-k", "poison-key", stdin=b"this is not an event")
    wait_until(lambda: all(dead_lettered(direct[n]) >= before[n] + 1 for n in CONSUMERS), timeout=20,
               describe="every consumer to dead-letter the poison message")

    # The copy on listings' dead-letter topic says where it came from and why it failed.
    dump = kcat("-b", broker, "-C", "-t", "listings.dlq.v1", "-o", "beginning", "-e", "-q",
                "-f", "%k|%s|%h\n")
    line = next(l for l in dump.splitlines() if l.startswith("poison-key|"))
    assert "this is not an event" in line
    assert "dlq_original_topic=identity.users.v1" in line
    assert "dlq_consumer_group=listings" in line
    assert re.search(r"dlq_error=[^,]*ce_specversion", line), line

    # The events behind it were not held up.
    user = register("buyer")
    for schema in CONSUMERS:
        wait_until(lambda: psql(suite.suite.superuser_dsn, f"SELECT 1 FROM {schema}.users WHERE id = {sql_literal(user.id)}::uuid"),
                   timeout=10, describe=f"the new user in {schema}.users")

    # Redrive: back to identity.users.v1, where (still unreadable) it is dead-lettered once more.
    env = {**os.environ, **suite.suite.env_for("listings")}
    result = subprocess.run([suite.binary("listings"), "dlq", "redrive", "--idle-seconds", "4"],
                            env=env, capture_output=True, timeout=90)
    assert result.returncode == 0, result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert "redriven: 1" in result.stdout.decode(), result.stdout.decode()
    wait_until(lambda: all(dead_lettered(direct[n]) >= before[n] + 2 for n in CONSUMERS), timeout=20,
               describe="the redriven message to be consumed (and dead-lettered) again")

    # A second redrive finds nothing new: the first one's progress was committed.
    again = subprocess.run([suite.binary("listings"), "dlq", "redrive", "--idle-seconds", "4"],
                           env=env, capture_output=True, timeout=90)
    assert again.returncode == 0
    assert "redriven: 1" in again.stdout.decode(), "the message dead-lettered by the redrive itself is the only new one"
