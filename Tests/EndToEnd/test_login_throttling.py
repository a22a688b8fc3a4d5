"""Repeated failed logins lock the account: 429 with Retry-After, even for the right password,
the same for an email that has no account."""

from __future__ import annotations


def test_repeated_failures_lock_the_account(gateway, register):
    account = register("buyer")
    wrong = {"email": account.email, "password": "not the password 123"}
    for _ in range(6):
        gateway.post("/v1/auth/login", json=wrong).expect_problem(401, "invalid-credentials")
    # validate=False: the shared client would otherwise wait out a 429 and retry.
    locked = gateway.post("/v1/auth/login", json={"email": account.email, "password": account.password}, validate=False)
    gateway.validate(locked).expect_problem(429, "login-throttled")
    assert 1 <= int(locked.header("retry-after")) <= 30

    unknown = {"email": "nobody-" + account.email, "password": "not the password 123"}
    for _ in range(6):
        gateway.post("/v1/auth/login", json=unknown).expect_problem(401, "invalid-credentials")
    gateway.validate(gateway.post("/v1/auth/login", json=unknown, validate=False)).expect_problem(429, "login-throttled")
