"""Sessions through the gateway: each login is a session the user can see and end; logout and
revocation stop its refresh tokens at once."""

from __future__ import annotations

import uuid

from e2e_support import wait_until


def login(gateway, account, user_agent: str) -> dict:
    response = gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password},
                            headers={"User-Agent": user_agent})
    return response.expect(200).json()


def test_sessions_are_listed_and_revocable(gateway, register):
    account = register("buyer")
    phone = login(gateway, account, "e2e-phone/1.0")
    laptop = login(gateway, account, "e2e-laptop/2.0")

    sessions = gateway.get("/v1/sessions", token=laptop["accessToken"]).expect(200).json()["items"]
    assert {s["userAgent"] for s in sessions} == {"e2e-phone/1.0", "e2e-laptop/2.0"}
    current = [s for s in sessions if s["current"]]
    assert [s["userAgent"] for s in current] == ["e2e-laptop/2.0"], sessions
    phone_session = next(s["id"] for s in sessions if s["userAgent"] == "e2e-phone/1.0")

    # Sign the phone out from the laptop: the phone's refresh token stops working at once.
    gateway.delete(f"/v1/sessions/{phone_session}", token=laptop["accessToken"]).expect(204)
    gateway.post("/v1/auth/refresh", json={"refreshToken": phone["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    # The phone's access token is refused at the gateway too, long before it would expire.
    wait_until(lambda: gateway.get("/v1/orders", token=phone["accessToken"], validate=False).status == 401, timeout=5, interval=0.1,
               describe="the gateway to refuse the signed-out phone's access token")
    gateway.get("/v1/orders", token=laptop["accessToken"]).expect(200)
    gateway.delete(f"/v1/sessions/{phone_session}", token=laptop["accessToken"]).expect_problem(404, "not-found")
    gateway.delete("/v1/sessions/not-a-session", token=laptop["accessToken"]).expect_problem(404, "not-found")
    remaining = gateway.get("/v1/sessions", token=laptop["accessToken"]).expect(200).json()["items"]
    assert [s["userAgent"] for s in remaining] == ["e2e-laptop/2.0"]

    # Another user cannot see or end this user's sessions.
    stranger = register("vendor")
    stranger_tokens = login(gateway, stranger, "e2e-stranger")
    laptop_session = remaining[0]["id"]
    gateway.delete(f"/v1/sessions/{laptop_session}", token=stranger_tokens["accessToken"]).expect_problem(404, "not-found")
    assert all(s["id"] != laptop_session for s in gateway.get("/v1/sessions", token=stranger_tokens["accessToken"]).expect(200).json()["items"])
    gateway.post("/v1/auth/refresh", json={"refreshToken": laptop["refreshToken"]}).expect(200)


def test_logout_ends_the_session_and_is_idempotent(gateway, register):
    account = register("buyer")
    tokens = login(gateway, account, "e2e-logout")
    gateway.post("/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]}).expect(204)
    wait_until(lambda: gateway.get("/v1/orders", token=tokens["accessToken"], validate=False).status == 401, timeout=5, interval=0.1,
               describe="the gateway to refuse the logged-out session's access token")
    gateway.post("/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    gateway.post("/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]}).expect(204)
    gateway.post("/v1/auth/logout", json={"refreshToken": "never-issued-" + uuid.uuid4().hex}).expect(204)
    gateway.post("/v1/auth/logout", json={}).expect_problem(422, "validation-failed")
    gateway.post("/v1/auth/logout", body=b"{not json", headers={"Content-Type": "application/json"}).expect_problem(400, "malformed-request")


def test_session_endpoints_need_a_token_at_the_gateway_and_at_identity(gateway, direct):
    some_id = str(uuid.uuid4())
    for api in (gateway, direct["identity"]):
        api.get("/v1/sessions").expect_problem(401, "unauthorized")
        api.delete(f"/v1/sessions/{some_id}").expect_problem(401, "unauthorized")
