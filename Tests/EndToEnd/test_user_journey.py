"""Register, log in, read what a new user can read, and the refresh-token rotation."""

from __future__ import annotations

import time
from datetime import datetime

from e2e_support import JWT_AUDIENCE, JWT_ISSUER, jwt_parts, verify_eddsa


# The suite runs identity with IDENTITY_REFRESH_REUSE_GRACE_SECONDS=1 (conftest.py).
REUSE_GRACE_SECONDS = 1


def without_created_at(user: dict) -> dict:
    return {k: (v.lower() if k in ("id", "email") else v) for k, v in user.items() if k != "createdAt"}


def instant(value: str) -> float:
    value = value.replace("Z", "+00:00").replace("z", "+00:00")
    if "." in value:  # datetime takes at most 6 fraction digits
        head, tail = value.split(".", 1)
        digits = len(tail) - len(tail.lstrip("0123456789"))
        value = f"{head}.{tail[:min(digits, 6)]}{tail[digits:]}"
    return datetime.fromisoformat(value).timestamp()


def test_registration_returns_the_new_user(buyer, vendor):
    for account in (buyer, vendor):
        user = account.user
        assert user["email"].lower() == account.email.lower()
        assert user["displayName"] == account.display_name
        assert user["roles"] == [account.role]
        assert user["status"] == "active"
    assert buyer.id != vendor.id


def test_a_new_user_reads_everything_it_may(gateway, buyer, vendor):
    for account in (buyer, vendor):
        token = account.access_token
        me = gateway.get("/v1/users/me", token=token).expect(200).json()
        assert without_created_at(me) == without_created_at(account.user), "GET /v1/users/me differs from registration"
        assert abs(instant(me["createdAt"]) - instant(account.user["createdAt"])) < 1.0

        for path in ("/v1/orders", "/v1/conversations"):
            page = gateway.get(path, token=token).expect(200).json()
            assert page == {"items": [], "nextCursor": None}, f"{path} of a brand-new user: {page}"
        page = gateway.get("/v1/orders", token=token, query={"limit": 100}).expect(200).json()
        assert page["items"] == []

    # Public routes, with and without a token.
    for path in ("/v1/categories", "/v1/plans"):
        anonymous = gateway.get(path).expect(200).json()
        with_token = gateway.get(path, token=buyer.access_token).expect(200).json()
        assert anonymous == with_token
        assert anonymous["nextCursor"] is None


def test_token_pair_and_access_token_claims(buyer, jwks):
    tokens = buyer.login()
    assert tokens["tokenType"] == "Bearer" and tokens["expiresIn"] == 900
    header, claims, _ = jwt_parts(tokens["accessToken"])
    assert header["alg"] == "EdDSA"
    assert header.get("kid") in {key["kid"] for key in jwks["keys"]}, f"kid {header.get('kid')} not in JWKS"
    assert "at+jwt" in (str(header.get("typ", "")).lower(), str(claims.get("typ", "")).lower())
    assert claims["iss"] == JWT_ISSUER
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert JWT_AUDIENCE in audience
    assert claims["sub"].lower() == buyer.id.lower()
    assert claims["roles"] == ["buyer"]
    assert claims["exp"] - claims["iat"] == tokens["expiresIn"]
    assert abs(claims["iat"] - time.time()) < 120, "iat is not now (clock or claim wrong)"
    assert claims.get("jti"), "jti claim missing"
    assert verify_eddsa(tokens["accessToken"], jwks), "the access token does not verify with the JWKS key"


def test_refresh_returns_a_new_pair_and_spends_the_old_refresh_token(gateway, register):
    account = register("buyer")
    first = account.login()
    second = gateway.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}).expect(200).json()
    assert second["refreshToken"] != first["refreshToken"]
    assert second["accessToken"] != first["accessToken"]
    me = gateway.get("/v1/users/me", token=second["accessToken"]).expect(200).json()
    assert me["id"] == account.id

    time.sleep(REUSE_GRACE_SECONDS + 0.5)
    gateway.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}).expect_problem(401, "invalid-refresh-token")


def test_a_double_refresh_within_the_grace_window_is_tolerated(gateway, register):
    account = register("buyer")
    first = account.login()
    # A client that refreshes twice at once (two tabs): both answers are usable.
    second = gateway.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}).expect(200).json()
    again = gateway.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}).expect(200).json()
    assert again["refreshToken"] != second["refreshToken"]
    gateway.post("/v1/auth/refresh", json={"refreshToken": again["refreshToken"]}).expect(200)


def test_reusing_a_spent_refresh_token_revokes_its_family(gateway, register):
    account = register("vendor")
    first = account.login()
    second = gateway.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}).expect(200).json()
    time.sleep(REUSE_GRACE_SECONDS + 0.5)
    gateway.post("/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    # The reuse looked like theft: the token handed out by the rotation is dead too (RFC 9700).
    gateway.post("/v1/auth/refresh", json={"refreshToken": second["refreshToken"]}).expect_problem(401, "invalid-refresh-token")
    # A fresh login starts a new family.
    third = account.login()
    gateway.post("/v1/auth/refresh", json={"refreshToken": third["refreshToken"]}).expect(200)


def test_login_failures_do_not_say_which_part_was_wrong(gateway, buyer):
    wrong_password = gateway.post(
        "/v1/auth/login", json={"email": buyer.email, "password": buyer.password + "x"}
    ).expect_problem(401, "invalid-credentials")
    unknown_email = gateway.post(
        "/v1/auth/login", json={"email": "nobody-" + buyer.email, "password": buyer.password}
    ).expect_problem(401, "invalid-credentials")
    assert (wrong_password["title"], wrong_password.get("detail")) == (unknown_email["title"], unknown_email.get("detail"))
    gateway.post("/v1/auth/refresh", json={"refreshToken": "not-a-refresh-token-" + "x" * 20}).expect_problem(
        401, "invalid-refresh-token"
    )
