"""Privacy across the suite: a data export collects every service's part into one download, and
erasure (password again, refused while obligations are open) anonymises the user everywhere,
each service acknowledging, until identity records the erasure complete."""

from __future__ import annotations

import uuid

from e2e_support import psql, sql_literal, wait_until

PARTICIPANTS = ("listings", "billing", "orders", "messaging")


def test_an_export_gathers_every_services_part(suite, gateway, register):
    account = register("vendor")
    token = account.access_token
    wait_until(lambda: all(psql(suite.superuser_dsn, f"SELECT 1 FROM {s}.users WHERE id = {sql_literal(account.id)}::uuid") for s in PARTICIPANTS),
               timeout=10, describe="the new user in every projection")
    started = gateway.post("/v1/users/me/exports", token=token).expect(202)
    export = started.json()
    assert export["status"] == "pending" and started.header("location") == f"/v1/users/me/exports/{export['id']}"

    ready: list[dict] = []

    def is_ready() -> bool:
        view = gateway.get(f"/v1/users/me/exports/{export['id']}", token=token).expect(200).json()
        if view["status"] == "ready":
            ready.append(view)
        return bool(ready)

    # An earlier test may have just restarted identity: the dev broker hands a rejoining consumer
    # its partitions only after a rebalance delay of several seconds.
    wait_until(is_ready, timeout=30, interval=0.3, describe="every service's part of the export")
    parts = ready[0]["parts"]
    assert set(parts) == {"identity", *PARTICIPANTS} and ready[0]["pendingServices"] == []
    assert parts["identity"]["account"]["email"] == account.email
    for service in PARTICIPANTS:
        assert parts[service]["profile"]["id"] == account.id, (service, parts[service])
    assert parts["orders"]["orders"] == [] and parts["messaging"]["conversations"] == []

    gateway.get(f"/v1/users/me/exports/{uuid.uuid4()}", token=token).expect_problem(404, "not-found")
    stranger = register("buyer")
    gateway.get(f"/v1/users/me/exports/{export['id']}", token=stranger.access_token).expect_problem(404, "not-found")


def test_exports_are_limited_per_account(direct, register):
    account = register("buyer")
    for _ in range(3):
        direct["identity"].post("/v1/users/me/exports", token=account.access_token).expect(202)
    direct["identity"].post("/v1/users/me/exports", token=account.access_token).expect_problem(429, "recovery-throttled")


def test_erasure_needs_the_password_waits_for_obligations_and_reaches_every_service(suite, gateway, direct, register):
    account = register("vendor")
    tokens = account.login()
    token = tokens["accessToken"]
    wait_until(lambda: all(psql(suite.superuser_dsn, f"SELECT 1 FROM {s}.users WHERE id = {sql_literal(account.id)}::uuid") for s in PARTICIPANTS),
               timeout=10, describe="the new user in every projection")

    gateway.delete("/v1/users/me", json={}, token=token).expect_problem(422, "validation-failed")
    gateway.delete("/v1/users/me", body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    wrong = gateway.delete("/v1/users/me", json={"password": "not my password"}, token=token).expect_problem(422, "validation-failed")
    assert [e["field"] for e in wrong["errors"]] == ["password"]

    # An open order (as orders' events record it in identity's projection) blocks erasure.
    order = str(uuid.uuid4())
    psql(suite.superuser_dsn, f"INSERT INTO identity.user_obligations (kind, reference, user_id) VALUES ('order', '{order}', {sql_literal(account.id)}::uuid)")
    blocked = gateway.delete("/v1/users/me", json={"password": account.password}, token=token).expect_problem(409, "erasure-blocked")
    assert "1 open order" in blocked["detail"]
    psql(suite.superuser_dsn, f"DELETE FROM identity.user_obligations WHERE reference = '{order}'")

    accepted = gateway.delete("/v1/users/me", json={"password": account.password}, token=token).expect(202)
    assert accepted.json() == {"status": "erasure_requested"}
    gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password}).expect_problem(401, "invalid-credentials")
    gateway.post("/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    wait_until(lambda: gateway.get("/v1/orders", token=token, validate=False).status == 401, timeout=5, interval=0.1,
               describe="the gateway to refuse the erased user's token")
    for schema in PARTICIPANTS:
        wait_until(lambda: psql(suite.superuser_dsn, f"SELECT display_name, status FROM {schema}.users WHERE id = {sql_literal(account.id)}::uuid")
                   == [["Deleted user", "erased"]], timeout=10, describe=f"{schema}.users to forget the name")
    wait_until(lambda: psql(suite.superuser_dsn, f"SELECT acknowledged::text FROM identity.erasures WHERE user_id = {sql_literal(account.id)}::uuid AND completed_at IS NOT NULL"),
               timeout=15, describe="every service's acknowledgement and the completed erasure")
    row = psql(suite.superuser_dsn, f"SELECT email, display_name, status FROM identity.users WHERE id = {sql_literal(account.id)}::uuid")[0]
    assert row[0].endswith("@erased.invalid") and row[1:] == ["Deleted user", "erased"]
    assert psql(suite.superuser_dsn, f"SELECT count(*) FROM identity.vendor_profiles WHERE user_id = {sql_literal(account.id)}::uuid") == [["0"]]


def test_guessing_the_password_to_erase_locks_the_account(direct, register):
    account = register("buyer")
    token = account.login()["accessToken"]
    for _ in range(6):
        direct["identity"].delete("/v1/users/me", json={"password": "guess guess"}, token=token).expect_problem(422, "validation-failed")
    direct["identity"].delete("/v1/users/me", json={"password": account.password}, token=token).expect_problem(429, "login-throttled")
