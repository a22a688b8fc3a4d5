"""`identity keys rotate`: new tokens are signed with the new key and accepted by the gateway after
it re-fetches the JWKS for the unknown kid; tokens signed before the rotation stay valid."""

from __future__ import annotations

import os
import subprocess

from e2e_support import jwt_parts


def run_identity(suite, *args: str) -> str:
    env = {**os.environ, **suite.suite.env_for("identity")}
    result = subprocess.run([suite.binary("identity"), *args], env=env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
    return result.stdout.decode()


def test_rotated_keys_sign_new_tokens_and_old_tokens_stay_valid(suite, gateway, register):
    account = register("buyer")
    old = account.login()["accessToken"]
    old_kid = jwt_parts(old)[0]["kid"]

    output = run_identity(suite, "keys", "rotate")
    new_kid = next(line.split(": ", 1)[1] for line in output.splitlines() if line.startswith("current: "))
    assert new_kid != old_kid
    listed = run_identity(suite, "keys", "list")
    assert f"{new_kid} created" in listed and f"{old_kid} created" in listed and "retired" not in listed

    # Replicas pick the new key up within a minute; a restart does at once.
    suite.suite.stop_service("identity")
    suite.suite.start_service("identity")
    fresh = account.login()["accessToken"]
    assert jwt_parts(fresh)[0]["kid"] == new_kid
    gateway.get("/v1/users/me", token=fresh).expect(200)  # the gateway learns the new kid from the JWKS
    gateway.get("/v1/users/me", token=old).expect(200)    # the previous key is still published
    kids = {key["kid"] for key in gateway.get("/.well-known/jwks.json").expect(200).json()["keys"]}
    assert {old_kid, new_kid} <= kids
