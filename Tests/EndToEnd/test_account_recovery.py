"""Email verification, password reset and change, signing out everywhere: the links arrive as
`notification.requested` events (read here from Kafka, as messaging reads them) and as mails in
the dev mail catcher (messaging sends them), are single use, and every revocation reaches the
refresh tokens at once."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
import uuid

from e2e_support import jwt_parts, notifications, wait_for_notification, wait_until

NEW_PASSWORD = "a brand new e2e pass phrase"


def test_registration_mails_a_verification_link_that_works_once(suite, gateway, register):
    broker = suite.suite.kafka_bootstrap_servers
    account = register("buyer")
    assert account.user["emailVerified"] is False
    note = wait_for_notification(broker, account.id, "email-verification")
    assert note["to"] == account.email and note["channel"] == "email"
    assert note["data"]["displayName"] == account.display_name and note["data"]["expiresAt"]

    tokens = account.login()
    assert jwt_parts(tokens["accessToken"])[1]["email_verified"] is False
    gateway.post("/v1/auth/verify-email", json={"token": note["data"]["token"]}).expect(204)
    problem = gateway.post("/v1/auth/verify-email", json={"token": note["data"]["token"]}).expect_problem(422, "validation-failed")
    assert [e["field"] for e in problem["errors"]] == ["token"]
    gateway.post("/v1/auth/verify-email", json={}).expect_problem(422, "validation-failed")

    assert gateway.get("/v1/users/me", token=tokens["accessToken"]).expect(200).json()["emailVerified"] is True
    refreshed = gateway.post("/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).expect(200).json()
    assert jwt_parts(refreshed["accessToken"])[1]["email_verified"] is True, "the next token carries the proof"
    gateway.post("/v1/auth/verify-email/resend", token=refreshed["accessToken"]).expect_problem(409, "email-already-verified")


def catcher_mails(suite, address: str) -> list[dict]:
    """The dev mail catcher's mails to `address` (its Mailpit-shaped API), newest first."""
    query = urllib.parse.quote(f"to:{address}")
    with urllib.request.urlopen(f"{suite.mail_url}/api/v1/search?query={query}", timeout=5) as answer:
        return json.load(answer)["messages"]


def catcher_mail(suite, mail_id: str) -> dict:
    with urllib.request.urlopen(f"{suite.mail_url}/api/v1/message/{mail_id}", timeout=5) as answer:
        return json.load(answer)


def test_the_verification_mail_arrives_and_its_link_verifies_the_address(suite, gateway, register):
    account = register("buyer", display_name="Mail Reader")
    mails = wait_until(lambda: catcher_mails(suite, account.email), timeout=30, describe="the verification mail in the catcher")
    assert [m["Subject"] for m in mails] == ["Confirm your email address"]
    assert mails[0]["To"] == [{"Name": "Mail Reader", "Address": account.email}]
    mail = catcher_mail(suite, mails[0]["ID"])
    assert "Hello Mail Reader," in mail["Text"] and "<a href=" in mail["HTML"]
    link = re.search(r"Confirm my address: (\S+)", mail["Text"]).group(1)
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
    # The link opens the client, which posts its token: what a browser following it does.
    gateway.post("/v1/auth/verify-email", json={"token": token}).expect(204)
    assert gateway.get("/v1/users/me", token=account.login()["accessToken"]).expect(200).json()["emailVerified"] is True
    # Sent once, however the event travelled.
    assert len(catcher_mails(suite, account.email)) == 1


def test_a_new_link_replaces_the_old_and_resends_are_limited(suite, gateway, direct, register):
    broker = suite.suite.kafka_bootstrap_servers
    account = register("buyer")
    first = wait_for_notification(broker, account.id, "email-verification")
    token = account.access_token
    assert gateway.post("/v1/auth/verify-email/resend", token=token).expect(202).json() == {"status": "accepted"}
    second = wait_for_notification(broker, account.id, "email-verification", after=1)
    assert second["data"]["token"] != first["data"]["token"]
    gateway.post("/v1/auth/verify-email", json={"token": first["data"]["token"]}).expect_problem(422, "validation-failed")
    # Three per account per 15 minutes: two more are fine, the next is refused.
    for _ in range(2):
        gateway.post("/v1/auth/verify-email/resend", token=token).expect(202)
    refused = direct["identity"].post("/v1/auth/verify-email/resend", token=token)
    refused.expect_problem(429, "recovery-throttled")
    assert 1 <= int(refused.header("retry-after")) <= 900
    gateway.post("/v1/auth/verify-email", json={"token": wait_for_notification(broker, account.id, "email-verification", after=3)["data"]["token"]}).expect(204)


def test_password_reset_answers_the_same_and_ends_every_session(suite, gateway, register):
    broker = suite.suite.kafka_bootstrap_servers
    account = register("vendor")
    phone = account.login()
    laptop = gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password}).expect(200).json()

    gateway.post("/v1/auth/password-reset", json={}).expect_problem(422, "validation-failed")
    unknown = gateway.post("/v1/auth/password-reset", json={"email": "nobody-" + account.email}).expect(202)
    known = gateway.post("/v1/auth/password-reset", json={"email": account.email.upper()}).expect(202)
    assert unknown.json() == known.json() == {"status": "accepted"}
    note = wait_for_notification(broker, account.id, "password-reset")
    token = note["data"]["token"]

    weak = gateway.post("/v1/auth/password-reset/confirm", json={"token": token, "newPassword": "password1234"})
    assert [e["field"] for e in weak.expect_problem(422, "validation-failed")["errors"]] == ["newPassword"]
    gateway.post("/v1/auth/password-reset/confirm", json={"token": token, "newPassword": NEW_PASSWORD}).expect(204)
    gateway.post("/v1/auth/password-reset/confirm", json={"token": token, "newPassword": NEW_PASSWORD + "!"}).expect_problem(422, "validation-failed")
    gateway.post("/v1/auth/password-reset/confirm", json={"token": "x" * 43, "newPassword": NEW_PASSWORD}).expect_problem(422, "validation-failed")

    for old in (phone, laptop):
        gateway.post("/v1/auth/refresh", json={"refreshToken": old["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password}).expect_problem(401, "invalid-credentials")
    fresh = gateway.post("/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD}).expect(200).json()
    assert jwt_parts(fresh["accessToken"])[1]["email_verified"] is True, "the reset link proved the address"
    assert any(n["template"] == "password-changed" for n in notifications(broker, account.id))


def test_reset_requests_are_limited_per_account_and_per_address(direct, register):
    identity = direct["identity"]
    account = register("buyer")
    for _ in range(3):
        identity.post("/v1/auth/password-reset", json={"email": account.email}).expect(202)
    identity.post("/v1/auth/password-reset", json={"email": account.email}).expect_problem(429, "recovery-throttled")
    # Identity trusts X-Forwarded-For (only the gateway reaches it): a made-up address of our own.
    address = {"X-Forwarded-For": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    for _ in range(100):
        identity.post("/v1/auth/password-reset/confirm", json={"token": "junk", "newPassword": NEW_PASSWORD}, headers=address).expect(422)
    identity.post("/v1/auth/password-reset/confirm", json={"token": "junk", "newPassword": NEW_PASSWORD},
                  headers=address).expect_problem(429, "recovery-throttled")
    for _ in range(100):
        identity.post("/v1/auth/verify-email", json={"token": "junk"}, headers=address).expect(422)
    identity.post("/v1/auth/verify-email", json={"token": "junk"}, headers=address).expect_problem(429, "recovery-throttled")


def test_password_change_keeps_this_session_and_ends_the_others(gateway, direct, register):
    account = register("buyer")
    here = account.login()
    elsewhere = gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password}).expect(200).json()
    change = {"currentPassword": account.password, "newPassword": NEW_PASSWORD}

    wrong = gateway.post("/v1/auth/password-change", json={**change, "currentPassword": "not it at all"}, token=here["accessToken"])
    assert [e["field"] for e in wrong.expect_problem(422, "validation-failed")["errors"]] == ["currentPassword"]
    gateway.post("/v1/auth/password-change", json={"currentPassword": account.password}, token=here["accessToken"]).expect_problem(422, "validation-failed")
    gateway.post("/v1/auth/password-change", body=b"{", headers={"Content-Type": "application/json"}, token=here["accessToken"]).expect_problem(400, "malformed-request")
    gateway.post("/v1/auth/password-change", json=change, token=here["accessToken"]).expect(204)

    gateway.post("/v1/auth/refresh", json={"refreshToken": elsewhere["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    gateway.post("/v1/auth/refresh", json={"refreshToken": here["refreshToken"]}).expect(200)
    gateway.post("/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD}).expect(200)

    # Guessing the current password counts as failed logins: the account locks.
    victim = register("buyer")
    token = victim.login()["accessToken"]
    for _ in range(6):
        direct["identity"].post("/v1/auth/password-change", json={"currentPassword": "guess guess 1", "newPassword": NEW_PASSWORD},
                                token=token).expect_problem(422, "validation-failed")
    direct["identity"].post("/v1/auth/password-change", json={"currentPassword": victim.password, "newPassword": NEW_PASSWORD},
                            token=token).expect_problem(429, "login-throttled")


def test_signing_out_everywhere_ends_every_session(gateway, register):
    account = register("buyer")
    one = account.login()
    two = gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password}).expect(200).json()
    gateway.delete("/v1/sessions", token=two["accessToken"]).expect(204)
    for tokens in (one, two):
        gateway.post("/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).expect_problem(401, "invalid-refresh-token")


def test_account_endpoints_need_a_live_session_at_identity(direct, register):
    identity = direct["identity"]
    for method, path in (("POST", "/v1/auth/verify-email/resend"), ("POST", "/v1/auth/password-change"), ("POST", "/v1/auth/mfa/totp"),
                         ("POST", "/v1/auth/mfa/totp/confirm"), ("DELETE", "/v1/sessions"), ("GET", "/v1/users/me/export"),
                         ("GET", "/v1/admin/users"), ("GET", f"/v1/admin/users/{uuid.uuid4()}"), ("PUT", f"/v1/admin/users/{uuid.uuid4()}/roles"),
                         ("POST", f"/v1/admin/users/{uuid.uuid4()}/suspend"), ("POST", f"/v1/admin/users/{uuid.uuid4()}/reinstate"),
                         ("GET", "/v1/admin/audit-log"), ("POST", "/v1/users/me/exports"), ("GET", f"/v1/users/me/exports/{uuid.uuid4()}"),
                         ("DELETE", "/v1/users/me")):
        identity.request(method, path).expect_problem(401, "unauthorized")
    # A token whose session ended is refused by identity's account endpoints before it expires.
    account = register("buyer")
    tokens = account.login()
    identity.delete("/v1/sessions", token=tokens["accessToken"]).expect(204)
    identity.get("/v1/users/me/export", token=tokens["accessToken"]).expect_problem(401, "unauthorized")


def test_the_export_holds_the_account_and_no_secrets(gateway, register):
    account = register("vendor")
    tokens = account.login()
    response = gateway.get("/v1/users/me/export", token=tokens["accessToken"]).expect(200)
    assert "attachment" in (response.header("content-disposition") or "")
    export = response.json()
    assert export["service"] == "identity" and export["account"]["email"] == account.email
    assert export["account"]["businessProfile"]["businessName"] == f"{account.display_name} Kennels"
    assert any(s["signInMethods"] == ["pwd"] for s in export["sessions"])
    assert any(e["action"] == "login.succeeded" for e in export["auditEntries"])
    text = response.text()
    assert "argon2" not in text and tokens["refreshToken"] not in text
