"""SIGTERM is a clean stop: exit status 0, consumer offsets committed (a restarted consumer is not
handed again what it already applied), the outbox relay released, and the service comes back."""

from __future__ import annotations

import re

from e2e_support import psql, sql_literal, wait_until


def processed(api) -> int:
    text = api.get("/metrics").expect(200).text()
    match = re.search(r'^consumer_messages_processed_total\{service="[a-z]+"\} (\d+)', text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def in_projection(suite, schema: str, user_id: str) -> bool:
    return bool(psql(suite.suite.superuser_dsn, f"SELECT 1 FROM {schema}.users WHERE id = {sql_literal(user_id)}::uuid"))


def test_sigterm_stops_cleanly_and_commits_consumer_offsets(suite, direct, register):
    users = [register("buyer") for _ in range(3)]
    for user in users:
        wait_until(lambda: in_projection(suite, "messaging", user.id), timeout=10, describe="the users in messaging.users")

    status = suite.suite.stop_service("messaging")
    assert status == 0, f"messaging exited with {status} on SIGTERM"
    log = (suite.log_dir / "messaging.log").read_text(errors="replace")
    assert "outbox relay stopped" in log, "the relay released its lock on the way out"

    suite.suite.start_service("messaging")
    latest = register("vendor")
    wait_until(lambda: in_projection(suite, "messaging", latest.id), timeout=30,
               describe="a user registered after the restart in messaging.users")
    # Only the new registration's events reached the restarted consumer (user.registered, and on
    # identity.notifications.v1 its verification mail's request and its address): the earlier
    # ones were committed at shutdown.
    wait_until(lambda: processed(direct["messaging"]) >= 3, timeout=30, describe="the registration's three events at messaging")
    assert processed(direct["messaging"]) == 3
