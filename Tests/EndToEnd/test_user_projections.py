"""identity's user.registered event reaches every service's users projection."""

from __future__ import annotations

import time

from e2e_support import psql, sql_literal

PROJECTIONS = ("listings", "billing", "orders", "messaging")
DEADLINE_SECONDS = 5.0


def test_a_new_user_appears_in_every_users_projection_within_5_seconds(suite, register):
    account = register("vendor")
    pending = set(PROJECTIONS)
    rows: dict[str, list[str]] = {}
    last_error = None
    while pending and time.monotonic() - account.registered_at < DEADLINE_SECONDS:
        for schema in sorted(pending):
            try:
                found = psql(
                    suite.superuser_dsn,
                    f"SELECT display_name, status, roles::text FROM {schema}.users "
                    f"WHERE id = {sql_literal(account.id)}::uuid",
                )
            except RuntimeError as error:  # e.g. the table is not there: report it if it stays so
                last_error = error
                continue
            if found:
                rows[schema] = found[0]
                pending.discard(schema)
        if pending:
            time.sleep(0.1)
    assert not pending, (
        f"user {account.id} not in {', '.join(f'{s}.users' for s in sorted(pending))} "
        f"{DEADLINE_SECONDS:.0f}s after registration"
        + (f"; last psql error: {last_error}" if last_error else "")
    )
    for schema, (display_name, status, roles) in rows.items():
        assert display_name == account.display_name, f"{schema}.users.display_name = {display_name!r}"
        assert status == "active", f"{schema}.users.status = {status!r}"
        assert "vendor" in roles, f"{schema}.users.roles = {roles!r}"
