"""A third-party client against the whole suite: schemathesis (pinned, from PyPI) runs every check
and every phase against the gateway's merged `/openapi.json`, signed in as each role, and must
find nothing. Our own tests write the requests we thought of; this writes the ones we did not
(undeclared methods, boundary values, schema-valid bodies we might refuse, missing headers).

The run uses a gateway of its own in front of the suite's services, with the rate limits raised
by configuration: the fuzzer sends thousands of requests from one address, and the limits
themselves are tested elsewhere (test_gateway_edges.py, test_upstream_failures.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e_support import PASSWORD, ManagedProcess, base_env, free_ports, gateway_env, totp, unique_email, wait_until, http_ok
from test_identity_journey import create_admin

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = "4.32.5"
# Examples per operation and phase: enough to reach each operation's boundaries, small enough
# that the four roles finish in a few minutes on two cores.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "25"))
SEED = os.environ.get("FUZZ_SEED", "20261204")


def schemathesis_dir() -> Path:
    """schemathesis and its dependencies in a directory of their own (not the test runner's)."""
    target = ROOT / ".data" / "tools" / f"schemathesis-{SCHEMATHESIS}-py{sys.version_info.major}{sys.version_info.minor}"
    marker = target / ".installed"
    if marker.exists():
        return target
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-conflicts",
                    "--no-warn-script-location", "--target", str(target), f"schemathesis=={SCHEMATHESIS}"],
                   check=True, capture_output=True, timeout=900)
    marker.write_text(SCHEMATHESIS + "\n")
    return target


@pytest.fixture(scope="module")
def fuzz_gateway(suite):
    port = free_ports(1)[0]
    upstreams = {name: suite.service_url(name) for name in ("identity", "listings", "billing", "orders", "messaging")}
    env = {**base_env(), **gateway_env(port, upstreams=upstreams, jwks_url=suite.jwks_url),
           "RATE_LIMIT_BURST": "1000000", "RATE_LIMIT_PER_SECOND": "1000000",
           "RATE_LIMIT_AUTH_BURST": "1000000", "RATE_LIMIT_AUTH_PER_MINUTE": "6000000"}
    process = ManagedProcess("fuzz-gateway", [suite.binary("gateway"), "serve"], env, suite.log_dir / "extra-fuzz-gateway.log")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/health/ready"), timeout=60, describe=lambda: process.describe())
    yield url
    process.stop()


def _signed_in_staff(gateway, email: str) -> str:
    """Password → enrol an authenticator → sign in with a code: a token that carries staff roles."""
    first = gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).expect(200).json()
    secret = gateway.post("/v1/auth/mfa/totp", token=first["accessToken"]).expect(201).json()["secret"]
    gateway.post("/v1/auth/mfa/totp/confirm", json={"code": totp(secret)}, token=first["accessToken"]).expect(200)
    challenge = gateway.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).expect(200).json()
    tokens = gateway.post("/v1/auth/mfa/verify", json={"mfaToken": challenge["mfaToken"], "code": totp(secret, step_offset=1)}).expect(200).json()
    return tokens["accessToken"]


@pytest.fixture(scope="module")
def role_tokens(suite, gateway, register) -> dict[str, str]:
    admin_email = unique_email("fuzz-admin")
    create_admin(suite, admin_email, PASSWORD)
    admin = _signed_in_staff(gateway, admin_email)
    moderator = register("buyer", display_name="Fuzz Moderator")
    gateway.put(f"/v1/admin/users/{moderator.id}/roles", json={"roles": ["buyer", "moderator"], "reason": "fuzzing"}, token=admin).expect(200)
    return {
        "anonymous": "",
        "buyer": register("buyer", display_name="Fuzz Buyer").access_token,
        "vendor": register("vendor", display_name="Fuzz Vendor").access_token,
        "moderator": _signed_in_staff(gateway, moderator.email),
        "admin": admin,
    }


@pytest.mark.parametrize("role", ["anonymous", "buyer", "vendor", "moderator", "admin"])
def test_schemathesis_finds_nothing(suite, fuzz_gateway, role_tokens, role):
    tools = schemathesis_dir()
    reports = suite.log_dir / f"schemathesis-{role}"
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(Path(__file__).with_name("schemathesis.toml")),
               "run", f"{fuzz_gateway}/openapi.json",
               "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
               "--max-examples", str(MAX_EXAMPLES), "--seed", SEED,
               # One worker: CPython 3.11 can fail parsing source in two threads at once (hypothesis does).
               "--workers", "1",
               "--request-timeout", "20", "--report", "ndjson", "--report-dir", str(reports), "--no-color"]
    if role_tokens[role]:
        command += ["--header", f"Authorization: Bearer {role_tokens[role]}"]
    # Revoking one's own sessions (the stateful phase finds the session id in GET /v1/sessions)
    # ends the fuzzer's session halfway through, after which every answer is rightly a 401;
    # those two operations are fuzzed by the anonymous run only.
    if role != "anonymous":
        command += ["--exclude-operation-id", "revokeAllSessions", "--exclude-operation-id", "revokeSession"]
    # The suite's billing runs the sandbox provider, so its Stripe webhook path answers 404 to
    # everything; a billing configured for Stripe is exercised in test_subscriptions.py.
    command += ["--exclude-operation-id", "receiveStripeWebhook"]
    # The event stream answers for as long as the client stays: every request would run into the
    # fuzzer's timeout. Its contract (status, headers, events, Last-Event-ID) is tested in test_messaging.py.
    command += ["--exclude-operation-id", "openEventStream"]
    env = {**base_env(), "PYTHONPATH": str(tools), "SCHEMATHESIS_HOOKS": ""}
    done = subprocess.run(command, cwd=suite.log_dir, env=env, capture_output=True, text=True, timeout=1500)
    output = done.stdout + done.stderr
    (suite.log_dir / f"schemathesis-{role}.log").write_text(output)
    lines = output.splitlines()
    # The failures' own section says which request got which status; the summary only counts them.
    start = next((i for i, line in enumerate(lines) if "FAILURES" in line), max(0, len(lines) - 60))
    summary = "\n".join(lines[start:start + 120])
    assert done.returncode == 0, f"schemathesis as {role} found problems (log {suite.log_dir}/schemathesis-{role}.log):\n{summary}"
