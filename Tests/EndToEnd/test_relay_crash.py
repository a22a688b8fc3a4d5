"""Identity killed with SIGKILL while its outbox relay is publishing: after a restart every event
reaches every consumer, and each is applied once. Nothing is lost between "the broker has it" and
"the row is marked sent"; what was published twice is absorbed by the consumers' inboxes."""

from __future__ import annotations

import os
import signal
import threading
import uuid

from e2e_support import psql, sql_literal, wait_until

CONSUMERS = ("listings", "billing", "orders", "messaging")
EVENTS = 3000


def outbox_rows(marker: str, per_transaction: int, transactions: int) -> str:
    """The SQL a registration's transaction would write, `transactions` times, without Argon2."""
    return f"""
DO $$
BEGIN
  FOR i IN 1..{transactions} LOOP
    INSERT INTO identity.outbox (event_id, topic, key, type, source, subject, time, data)
    SELECT e, 'identity.users.v1', u::text, 'marketplace.identity.user.registered.v1',
           '/marketplace/identity', 'users/' || u::text, clock_timestamp(),
           convert_to(json_build_object('userId', u, 'displayName', {sql_literal(marker)},
                      'roles', json_build_array('buyer'), 'status', 'active',
                      'registeredAt', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text, 'UTF8')
    FROM (SELECT gen_random_uuid() AS e, gen_random_uuid() AS u FROM generate_series(1, {per_transaction})) g;
    COMMIT;
    PERFORM pg_notify('outbox_identity', '');
    PERFORM pg_sleep(0.01);
  END LOOP;
END $$;"""


def test_identity_killed_mid_relay_loses_and_duplicates_nothing(suite):
    dsn = suite.suite.superuser_dsn
    marker = f"relay-crash-{uuid.uuid4().hex[:8]}"
    marked = f"convert_from(data, 'UTF8')::json->>'displayName' = {sql_literal(marker)}"

    def count(sql: str) -> int:
        return int(psql(dsn, sql)[0][0])

    writer = threading.Thread(target=psql, args=(dsn, outbox_rows(marker, 50, EVENTS // 50)), kwargs={"timeout": 120})
    writer.start()
    # Kill identity while part of the outbox is published and part is not.
    wait_until(lambda: count(f"SELECT count(*) FROM identity.outbox WHERE sent_at IS NOT NULL AND {marked}") > 0,
               timeout=30, interval=0.02, describe="the relay to publish the first events")
    pid = suite.suite.pid("identity")
    os.kill(pid, signal.SIGKILL)
    suite.suite.stop_service("identity")  # reaps it
    writer.join(timeout=120)
    sent_at_crash = count(f"SELECT count(*) FROM identity.outbox WHERE sent_at IS NOT NULL AND {marked}")
    assert count(f"SELECT count(*) FROM identity.outbox WHERE {marked}") == EVENTS
    assert sent_at_crash < EVENTS, "the relay had finished before the kill; the test proved nothing"

    suite.suite.start_service("identity")
    wait_until(lambda: count(f"SELECT count(*) FROM identity.outbox WHERE sent_at IS NULL AND {marked}") == 0,
               timeout=60, describe="the restarted relay to publish the rest")
    for schema in CONSUMERS:
        wait_until(lambda: count(f"SELECT count(*) FROM {schema}.users WHERE display_name = {sql_literal(marker)}") == EVENTS,
                   timeout=60, describe=f"all {EVENTS} users in {schema}.users")
        # One inbox row per event: each was applied once, however often it was delivered.
        applied = count(f"""SELECT count(*) FROM {schema}.inbox i JOIN identity.outbox o ON o.event_id::text = i.event_id
                            WHERE {marked.replace("data", "o.data")}""")
        assert applied == EVENTS, f"{schema}: {applied} inbox rows for {EVENTS} events"
