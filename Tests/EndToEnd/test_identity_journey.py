"""The identity journey through the gateway: the first admin is made on the command line, must
enrol an authenticator before admin rights reach a token, signs in with the second factor,
changes a user's role and suspends them — and the gateway refuses that user's tokens within
5 seconds, while the other services' user projections follow."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

from e2e_support import PASSWORD, jwt_parts, psql, sql_literal, totp, unique_email, wait_until

PROJECTIONS = ("listings", "billing", "orders", "messaging")
DENIAL_DEADLINE = 5.0


def create_admin(suite, email: str, password: str) -> str:
    env = {**os.environ, **suite.suite.env_for("identity")}
    result = subprocess.run([suite.binary("identity"), "create-admin", "--email", email, "--display-name", "E2E Admin"],
                            input=password.encode() + b"\n", env=env, capture_output=True, timeout=60)
    output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    assert result.returncode == 0, output
    return result.stdout.decode().split()[-1]


def enrol_and_sign_in(gateway, email: str, password: str) -> tuple[dict, str, list[str]]:
    """Password login (no admin rights yet) → enrol TOTP → sign in with a code."""
    first = gateway.post("/v1/auth/login", json={"email": email, "password": password}).expect(200).json()
    assert first["mfaEnrollmentRequired"] is True
    assert "admin" not in jwt_parts(first["accessToken"])[1]["roles"]
    gateway.get("/v1/admin/users", token=first["accessToken"]).expect_problem(403, "forbidden")

    gateway.post("/v1/auth/mfa/totp/confirm", json={"code": "123456"}, token=first["accessToken"]).expect_problem(409, "mfa-not-enrolling")
    enrolment = gateway.post("/v1/auth/mfa/totp", token=first["accessToken"]).expect(201).json()
    assert enrolment["provisioningUri"].startswith("otpauth://totp/Marketplace:")
    secret = enrolment["secret"]
    wrong = str((int(totp(secret)) + 1) % 1_000_000).zfill(6)
    gateway.post("/v1/auth/mfa/totp/confirm", json={"code": wrong}, token=first["accessToken"]).expect_problem(422, "validation-failed")
    gateway.post("/v1/auth/mfa/totp/confirm", json={}, token=first["accessToken"]).expect_problem(422, "validation-failed")
    gateway.post("/v1/auth/mfa/totp/confirm", body=b"[", headers={"Content-Type": "application/json"},
                 token=first["accessToken"]).expect_problem(400, "malformed-request")
    codes = gateway.post("/v1/auth/mfa/totp/confirm", json={"code": totp(secret)}, token=first["accessToken"]).expect(200).json()["recoveryCodes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    gateway.post("/v1/auth/mfa/totp", token=first["accessToken"]).expect_problem(409, "mfa-already-enabled")

    challenge = gateway.post("/v1/auth/login", json={"email": email, "password": password}).expect(200).json()
    assert challenge["mfaRequired"] is True and "accessToken" not in challenge
    gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"], "code": wrong}).expect_problem(401, "invalid-mfa-code")
    gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"]}).expect_problem(422, "validation-failed")
    # The confirmation code's step is spent; the next step's code (one step of drift allowed) signs in.
    tokens = gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"], "code": totp(secret, step_offset=1)}).expect(200).json()
    gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"], "code": totp(secret, step_offset=1)}).expect_problem(401, "invalid-mfa-token")
    return tokens, secret, codes


def wait_for_projection(suite, user_id: str, column: str, expected: str) -> None:
    for schema in PROJECTIONS:
        wait_until(lambda: psql(suite.superuser_dsn, f"SELECT {column} FROM {schema}.users WHERE id = {sql_literal(user_id)}::uuid") == [[expected]],
                   timeout=10, describe=f"{schema}.users.{column} = {expected} for {user_id}")


def test_admin_with_mfa_changes_roles_and_suspends_a_user(suite, gateway, direct, register):
    admin_email, admin_password = unique_email("admin"), PASSWORD + "-admin"
    admin_id = create_admin(suite, admin_email, admin_password)
    assert create_admin(suite, admin_email, admin_password) == admin_id, "running it again changes nothing"
    tokens, secret, recovery = enrol_and_sign_in(gateway, admin_email, admin_password)
    claims = jwt_parts(tokens["accessToken"])[1]
    assert claims["roles"] == ["admin"] and claims["amr"] == ["pwd", "otp"]
    admin = tokens["accessToken"]

    # A recovery code stands in for the authenticator, once.
    challenge = gateway.post("/v1/auth/login", json={"email": admin_email, "password": admin_password}).expect(200).json()
    gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"], "recoveryCode": recovery[0]}).expect(200)

    user = register("buyer")
    user_tokens = user.login()
    gateway.get("/v1/users/me", token=user_tokens["accessToken"]).expect(200)

    # Lists and search.
    found = gateway.get("/v1/admin/users", query={"email": user.email.upper()}, token=admin).expect(200).json()
    assert [u["id"] for u in found["items"]] == [user.id]
    admins = gateway.get("/v1/admin/users", query={"role": "admin", "limit": 1}, token=admin).expect(200).json()
    assert len(admins["items"]) == 1 and all("admin" in u["roles"] for u in admins["items"])
    if admins["nextCursor"]:
        more = gateway.get("/v1/admin/users", query={"role": "admin", "limit": 1, "cursor": admins["nextCursor"]}, token=admin).expect(200).json()
        assert more["items"][0]["id"] != admins["items"][0]["id"]
    gateway.get("/v1/admin/users", query={"role": "owner"}, token=admin).expect_problem(422, "validation-failed")
    gateway.get("/v1/admin/users", query={"cursor": "%%%"}, token=admin).expect_problem(422, "validation-failed")
    gateway.get(f"/v1/admin/users/{user.id}", token=admin).expect(200)
    gateway.get(f"/v1/admin/users/{uuid.uuid4()}", token=admin).expect_problem(404, "not-found")
    # Administration is for admins only, whatever the endpoint.
    not_admin = user_tokens["accessToken"]
    gateway.get("/v1/admin/users", token=not_admin).expect_problem(403, "forbidden")
    gateway.get(f"/v1/admin/users/{admin_id}", token=not_admin).expect_problem(403, "forbidden")
    gateway.put(f"/v1/admin/users/{user.id}/roles", json={"roles": ["buyer", "admin"], "reason": "me"}, token=not_admin).expect_problem(403, "forbidden")
    gateway.post(f"/v1/admin/users/{admin_id}/suspend", json={"reason": "coup"}, token=not_admin).expect_problem(403, "forbidden")
    gateway.post(f"/v1/admin/users/{user.id}/reinstate", json={"reason": "me"}, token=not_admin).expect_problem(403, "forbidden")

    # Role change: validated, audited, and the user's old token stops working.
    roles_path = f"/v1/admin/users/{user.id}/roles"
    gateway.put(roles_path, json={"roles": ["vendor", "moderator"], "reason": "no"}, token=admin).expect_problem(422, "validation-failed")
    gateway.put(roles_path, json={"roles": ["buyer"]}, token=admin).expect_problem(422, "validation-failed")
    gateway.put(roles_path, body=b"{", headers={"Content-Type": "application/json"}, token=admin).expect_problem(400, "malformed-request")
    gateway.put(f"/v1/admin/users/{uuid.uuid4()}/roles", json={"roles": ["buyer"], "reason": "x"}, token=admin).expect_problem(404, "not-found")
    gateway.put(f"/v1/admin/users/{admin_id}/roles", json={"roles": ["buyer"], "reason": "x"}, token=admin).expect_problem(422, "validation-failed")
    changed = gateway.put(roles_path, json={"roles": ["buyer", "moderator"], "reason": "joins the moderation team"}, token=admin).expect(200).json()
    assert changed["roles"] == ["buyer", "moderator"]
    wait_for_projection(suite, user.id, "roles::text", "{buyer,moderator}")
    gateway.post("/v1/auth/refresh", json={"refreshToken": user_tokens["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    # Signed in again without a second factor, the moderator role stays out of the token.
    relogin = user.login()
    assert relogin["mfaEnrollmentRequired"] is True and jwt_parts(relogin["accessToken"])[1]["roles"] == ["buyer"]

    # Suspension: the gateway refuses the user's live token within 5 seconds.
    gateway.post(f"/v1/admin/users/{admin_id}/suspend", json={"reason": "self"}, token=admin).expect_problem(409, "cannot-suspend-self")
    gateway.post(f"/v1/admin/users/{user.id}/suspend", json={}, token=admin).expect_problem(422, "validation-failed")
    gateway.post(f"/v1/admin/users/{user.id}/suspend", body=b"x", headers={"Content-Type": "application/json"}, token=admin).expect_problem(400, "malformed-request")
    gateway.post(f"/v1/admin/users/{uuid.uuid4()}/suspend", json={"reason": "x"}, token=admin).expect_problem(404, "not-found")
    live = relogin["accessToken"]
    gateway.get("/v1/orders", token=live).expect(200)
    suspended_at = time.monotonic()
    assert gateway.post(f"/v1/admin/users/{user.id}/suspend", json={"reason": "spam reports"}, token=admin).expect(200).json()["status"] == "suspended"
    wait_until(lambda: gateway.get("/v1/orders", token=live, validate=False).status == 401, timeout=DENIAL_DEADLINE, interval=0.1,
               describe="the gateway to refuse the suspended user's token")
    assert time.monotonic() - suspended_at < DENIAL_DEADLINE
    gateway.get("/v1/orders", token=live).expect_problem(401, "unauthorized")
    gateway.post("/v1/auth/login", json={"email": user.email, "password": user.password}).expect_problem(403, "account-suspended")
    wait_for_projection(suite, user.id, "status", "suspended")

    # Reinstatement: the user signs in again; the audit log tells the story.
    gateway.post(f"/v1/admin/users/{uuid.uuid4()}/reinstate", json={"reason": "x"}, token=admin).expect_problem(404, "not-found")
    gateway.post(f"/v1/admin/users/{user.id}/reinstate", json={"reason": ""}, token=admin).expect_problem(422, "validation-failed")
    gateway.post(f"/v1/admin/users/{user.id}/reinstate", body=b"]", headers={"Content-Type": "application/json"}, token=admin).expect_problem(400, "malformed-request")
    gateway.post(f"/v1/admin/users/{user.id}/reinstate", json={"reason": "appeal upheld"}, token=admin).expect(200)
    user.login()
    wait_for_projection(suite, user.id, "status", "active")

    log = gateway.get("/v1/admin/audit-log", query={"targetId": user.id, "actorId": admin_id}, token=admin).expect(200).json()["items"]
    assert [(e["action"], e["reason"]) for e in log] == [
        ("user.reinstated", "appeal upheld"), ("user.suspended", "spam reports"), ("user.roles_changed", "joins the moderation team")]
    assert all(e["requestId"] for e in log)
    logins = gateway.get("/v1/admin/audit-log", query={"action": "login.failed", "limit": 5}, token=admin).expect(200).json()
    assert all(e["action"] == "login.failed" for e in logins["items"])
    gateway.get("/v1/admin/audit-log", query={"actorId": "me"}, token=admin).expect_problem(422, "validation-failed")
    gateway.get("/v1/admin/audit-log", query={"cursor": "!"}, token=admin).expect_problem(422, "validation-failed")
    gateway.get("/v1/admin/audit-log", token=user.access_token).expect_problem(403, "forbidden")


def test_an_admin_cannot_remove_their_own_admin_role(suite, gateway):
    email, password = unique_email("admin"), PASSWORD + "-admin"
    admin_id = create_admin(suite, email, password)
    tokens, _, recovery = enrol_and_sign_in(gateway, email, password)
    gateway.put(f"/v1/admin/users/{admin_id}/roles", json={"roles": ["moderator", "admin"], "reason": "also moderating"},
                token=tokens["accessToken"]).expect(200)
    # A role change ends the user's sessions, their own included: sign in again (with a recovery code).
    challenge = gateway.post("/v1/auth/login", json={"email": email, "password": password}).expect(200).json()
    again = gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"], "recoveryCode": recovery[1]}).expect(200).json()
    assert jwt_parts(again["accessToken"])[1]["roles"] == ["moderator", "admin"]
    gateway.put(f"/v1/admin/users/{admin_id}/roles", json={"roles": ["moderator"], "reason": "stepping down"},
                token=again["accessToken"]).expect_problem(409, "cannot-demote-self")
