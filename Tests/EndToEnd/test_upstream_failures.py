"""The gateway's answers when an upstream is down, hangs, or a client floods it.

The stopped-service test uses the suite's own gateway. Timeouts, unreachable upstreams and
rate limiting use a second gateway process of our own (own port, own memory), whose
upstreams are stand-ins, so the shared suite is never left rate-limited or degraded.
"""

from __future__ import annotations

import time

import pytest

from e2e_http import Api
from e2e_support import (
    SERVICES,
    CannedHttpServer,
    ManagedProcess,
    StalledServer,
    base_env,
    closed_port,
    free_ports,
    gateway_env,
    psql,
    sql_literal,
    wait_for_answer,
    wait_until,
)

QUICK = 2.0  # seconds within which an upstream failure must be answered
UPSTREAM_TIMEOUT_MS = 1000
RATE_LIMIT_ATTEMPTS = 1000


def test_stopped_service_is_answered_quickly_and_recovers(suite, gateway, buyer, register):
    token = buyer.access_token
    gateway.get("/v1/orders", token=token).expect(200)
    suite.suite.stop_service("orders")
    try:
        for attempt in range(3):
            response = gateway.get("/v1/orders", token=token, timeout=QUICK + 5)
            assert response.status in (502, 503), f"attempt {attempt + 1}: {response.describe()}"
            response.expect_problem((502, 503))
            assert response.elapsed < QUICK, f"attempt {attempt + 1} took {response.elapsed:.2f}s (limit {QUICK}s)"
        # Other upstreams are not affected.
        gateway.get("/v1/conversations", token=token).expect(200)
    finally:
        suite.suite.start_service("orders")

    def orders_answer():
        response = gateway.get("/v1/orders", token=token, timeout=5)
        return response.status == 200

    wait_until(orders_answer, timeout=60, interval=0.25, describe="GET /v1/orders to be 200 again after restart")
    # Recovered means consuming again too: its consumer rejoined the group and applies new events.
    newcomer = register("buyer")
    wait_until(lambda: psql(suite.suite.superuser_dsn, f"SELECT 1 FROM orders.users WHERE id = {sql_literal(newcomer.id)}::uuid"),
               timeout=60, describe="a user registered after the restart in orders.users")


@pytest.fixture(scope="module")
def edge_gateway(suite, contracts):
    """A second gateway: orders hangs, messaging is unreachable, identity is a stand-in;
    tokens are verified with the suite's real JWKS."""
    stalled = StalledServer()
    identity_stand_in = CannedHttpServer(
        401, {"type": "https://marketplace.example/problems/unauthorized", "title": "Unauthorized", "status": 401}
    )
    upstreams = {name: suite.service_url(name) for name in SERVICES}
    upstreams["orders"] = stalled.url
    upstreams["messaging"] = f"http://127.0.0.1:{closed_port()}"
    upstreams["identity"] = identity_stand_in.url
    (port,) = free_ports(1)
    process = ManagedProcess(
        "edge-gateway",
        [suite.binary("gateway"), "serve"],
        {**base_env(), **gateway_env(port, upstreams=upstreams, jwks_url=suite.jwks_url, timeout_ms=UPSTREAM_TIMEOUT_MS)},
        suite.log_dir / "extra-edge-gateway.log",
    )
    api = Api(f"http://127.0.0.1:{port}", "gateway", contracts, timeout=10)
    try:
        first = wait_for_answer(api, process, "/health/live", timeout=30)
        api.validate(first).expect(200)
        wait_until(
            lambda: api.get("/health/ready", validate=False).status == 200,
            timeout=30,
            describe=f"the edge gateway to be ready: {process.log_path}",
        )
        yield api
    finally:
        process.stop()
        stalled.close()
        identity_stand_in.close()


def test_upstream_that_hangs_is_504(edge_gateway, buyer):
    response = edge_gateway.get("/v1/orders", token=buyer.access_token, timeout=UPSTREAM_TIMEOUT_MS / 1000 + 10)
    response.expect_problem(504, "gateway-timeout")
    assert response.elapsed < UPSTREAM_TIMEOUT_MS / 1000 + 3, f"took {response.elapsed:.2f}s"


def test_unreachable_upstream_is_502_or_503_quickly(edge_gateway, buyer):
    for _ in range(3):
        response = edge_gateway.get("/v1/conversations", token=buyer.access_token, timeout=QUICK + 5)
        response.expect_problem((502, 503))
        assert response.elapsed < QUICK, f"took {response.elapsed:.2f}s"


def test_auth_routes_are_rate_limited(edge_gateway):
    body = {"email": "flood@example.com", "password": "wrong-password-123"}
    started = time.monotonic()
    for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
        # Answers relayed from the stand-in are not the real identity's: not contract-checked.
        response = edge_gateway.post("/v1/auth/login", json=body, validate=False, timeout=5)
        if response.status == 429:
            edge_gateway.validate(response).expect_problem(429, "rate-limited")
            wait = int(response.header("retry-after"))
            assert 1 <= wait <= 60 and response.header("ratelimit-remaining") == "0"
            # Recovery: after the advertised wait the bucket has a token again.
            time.sleep(wait)
            again = edge_gateway.post("/v1/auth/login", json=body, validate=False, timeout=5)
            assert again.status == 401, f"after waiting {wait}s: {again.describe()}"
            return
        assert response.status == 401, f"attempt {attempt}: {response.describe()}"
        if time.monotonic() - started > 60:
            break
    pytest.fail(
        f"no 429 after {attempt} POST /v1/auth/login from one address in {time.monotonic() - started:.1f}s: "
        "the gateway must rate-limit auth routes per client address (429 problem with Retry-After)"
    )


def test_every_route_is_rate_limited_per_address(edge_gateway):
    """Beyond the auth routes: the general bucket (200 burst, 100/s by default) per address."""
    started = time.monotonic()
    for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
        response = edge_gateway.get("/v1/categories", validate=False, timeout=5)
        if response.status == 429:
            # The operation documents no 429 of its own: this is the gateway's edge response.
            edge_gateway.validate(response).expect_problem(429, "rate-limited")
            assert 1 <= int(response.header("retry-after")) <= 60
            return
        if time.monotonic() - started > 30:
            break
    pytest.fail(f"no 429 after {attempt} GET /v1/categories from one address in {time.monotonic() - started:.1f}s")
