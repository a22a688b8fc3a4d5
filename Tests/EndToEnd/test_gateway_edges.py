"""The gateway's own defences, on a gateway process of our own: slow clients are cut off, an
oversized body is refused without being read, and a failing upstream trips its circuit breaker,
which lets traffic through again once the upstream is back."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid

import pytest

from e2e_http import Api
from e2e_support import (
    SERVICES,
    CannedHttpServer,
    ManagedProcess,
    base_env,
    free_ports,
    gateway_env,
    psql,
    sql_literal,
    wait_for_answer,
    wait_until,
)

IDLE_TIMEOUT_MS = 500
MIB = 1024 * 1024
CATEGORIES = {"items": [], "nextCursor": None}


APP = "https://app.example.com"


@pytest.fixture()
def edge(suite, contracts):
    """A gateway whose listings upstream is a stand-in on a port we control (stop it, start it
    again), with short client idle and breaker timings, CORS for one origin, and loopback as a
    trusted proxy (so the tests can play a load balancer in front of it)."""
    (listings_port, gateway_port) = free_ports(2)
    stand_in = CannedHttpServer(200, CATEGORIES, content_type="application/json", port=listings_port)
    upstreams = {name: suite.service_url(name) for name in SERVICES}
    upstreams["listings"] = stand_in.url
    env = {**base_env(), **gateway_env(gateway_port, upstreams=upstreams, jwks_url=suite.jwks_url, timeout_ms=1000),
           "HTTP_CLIENT_IDLE_TIMEOUT_MS": str(IDLE_TIMEOUT_MS), "BREAKER_CONSECUTIVE_FAILURES": "3",
           "BREAKER_OPEN_SECONDS": "1", "UPSTREAM_EJECT_AFTER_FAILURES": "100", "UPSTREAM_HEALTH_CHECK_INTERVAL_MS": "60000",
           "CORS_ALLOWED_ORIGINS": APP, "TRUSTED_PROXIES": "127.0.0.1/32, ::1"}
    process = ManagedProcess("edges-gateway", [suite.binary("gateway"), "serve"], env, suite.log_dir / "extra-edges-gateway.log")
    api = Api(f"http://127.0.0.1:{gateway_port}", "gateway", contracts, timeout=10)
    state = {"stand_in": stand_in}
    try:
        api.validate(wait_for_answer(api, process, "/health/live", timeout=30)).expect(200)
        yield api, gateway_port, listings_port, state
    finally:
        process.stop()
        state["stand_in"].close()


def _read_all(connection: socket.socket, timeout: float) -> bytes:
    connection.settimeout(timeout)
    data = b""
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def test_slow_clients_are_cut_off(edge):
    _, port, _, _ = edge
    # Silent connection: closed after the idle timeout.
    with socket.create_connection(("127.0.0.1", port)) as silent:
        started = time.monotonic()
        assert _read_all(silent, timeout=10) == b""
        assert time.monotonic() - started < 5
    # A head that never finishes: closed too.
    with socket.create_connection(("127.0.0.1", port)) as partial:
        partial.sendall(b"GET /v1/categories HTTP/1.1\r\nHost: gateway\r\n")
        assert _read_all(partial, timeout=10) == b""
    # A body that stalls: 408 problem, then the connection closes.
    def stalling_body():
        yield b'{"email":'
        time.sleep(IDLE_TIMEOUT_MS / 1000 * 3)
        yield b"x" * 91

    api = edge[0]
    stalled = api.post("/v1/auth/login", body=stalling_body(), headers={"Content-Type": "application/json", "Content-Length": "100"})
    stalled.expect_problem(408, "request-timeout")
    assert (stalled.header("connection") or "").lower() == "close"


def test_a_10_mib_body_on_a_1_mib_route_is_refused_without_being_read(edge):
    _, port, _, _ = edge
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.sendall(b"POST /v1/auth/register HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                           b"Content-Length: " + str(10 * MIB).encode() + b"\r\n\r\n")
        connection.settimeout(5)
        answer = connection.recv(65536)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"payload-too-large" in answer + _read_all(connection, timeout=2)
        # The gateway closed the connection: the body cannot be delivered any more.
        sent = 0
        with pytest.raises(OSError):
            for _ in range(10 * MIB // 65536):
                sent += connection.send(b"x" * 65536)
            connection.sendall(b"x")
        assert sent < 10 * MIB


def circuit_state(api: Api) -> str | None:
    text = api.get("/metrics").expect(200).text()
    match = re.search(r'^gateway_circuit_state\{[^}]*upstream="listings"[^}]*\} (\S+)', text, re.MULTILINE)
    return match.group(1) if match else None


def test_a_failing_upstream_opens_its_breaker_and_traffic_returns_with_it(edge):
    api, _, listings_port, state = edge
    api.get("/v1/categories", validate=False).expect(200)
    state["stand_in"].close()
    # Each failed try counts (a retry of an idempotent request too): 502s until the third
    # consecutive failure opens the breaker, then 503 at once.
    answers = []
    for _ in range(4):
        answers.append(api.get("/v1/categories", validate=False, timeout=5))
        if answers[-1].status == 503:
            break
    assert [r.status for r in answers[:-1]] and all(r.status == 502 for r in answers[:-1]), [r.describe() for r in answers]
    opened = answers[-1]
    assert opened.status == 503, opened.describe()
    api.validate(opened).expect_problem(503, "service-unavailable")
    assert int(opened.header("retry-after")) == 1
    again = api.get("/v1/categories", validate=False, timeout=5)
    assert again.status == 503 and again.elapsed < 0.5, "an open breaker answers at once, without trying the upstream"
    assert circuit_state(api) in ("1", "1.0")

    state["stand_in"] = CannedHttpServer(200, CATEGORIES, content_type="application/json", port=listings_port)
    wait_until(lambda: api.get("/v1/categories", validate=False, timeout=5).status == 200, timeout=10, interval=0.2,
               describe="traffic to pass again once listings answers")
    for _ in range(3):
        api.get("/v1/categories", validate=False).expect(200)
    wait_until(lambda: circuit_state(api) in ("0", "0.0"), timeout=10, interval=0.2, describe="the breaker to close")


def test_cors_preflights_and_answers_follow_the_allow_list(edge):
    api, _, _, state = edge
    before = state["stand_in"].requests
    allowed = api.request("OPTIONS", "/v1/orders", validate=False, headers={
        "Origin": APP, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization, content-type"})
    assert allowed.status == 204, allowed.describe()
    assert allowed.header("access-control-allow-origin") == APP
    assert allowed.header("access-control-allow-credentials") == "true"
    assert {h.strip().lower() for h in allowed.header("access-control-allow-headers").split(",")} == {"authorization", "content-type"}
    assert "Origin" in allowed.header("vary")
    assert state["stand_in"].requests == before, "preflights are answered at the gateway"

    refused = api.request("OPTIONS", "/v1/orders", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    refused.expect_problem(403, "cors-refused")
    assert refused.header("access-control-allow-origin") is None

    answer = api.get("/v1/categories", validate=False, headers={"Origin": APP})
    assert answer.status == 200 and answer.header("access-control-allow-origin") == APP
    assert "x-request-id" in answer.header("access-control-expose-headers").lower()
    other = api.get("/v1/categories", validate=False, headers={"Origin": "https://evil.example"})
    assert other.status == 200 and other.header("access-control-allow-origin") is None and "Origin" in other.header("vary")


def test_security_and_forwarded_headers(edge):
    api, _, _, state = edge
    plain = api.get("/v1/categories", validate=False)
    assert plain.header("x-content-type-options") == "nosniff"
    assert plain.header("ratelimit-limit") == "200" and int(plain.header("ratelimit-remaining")) < 200
    assert int(plain.header("ratelimit-reset")) >= 0
    assert plain.header("x-frame-options") == "DENY" and plain.header("referrer-policy") == "no-referrer"
    assert plain.header("strict-transport-security") is None, "no HSTS over plain HTTP"
    # Loopback is a trusted proxy here: its X-Forwarded-* are believed, the chain is walked.
    via_tls = api.get("/v1/categories", validate=False, headers={
        "X-Forwarded-For": "198.51.100.7, 203.0.113.9", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "shop.example.com"})
    assert (via_tls.header("strict-transport-security") or "").startswith("max-age=")
    seen = state["stand_in"].last_headers
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1", seen
    assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-host"] == "shop.example.com"
    assert "x-request-id" in seen and seen["x-request-id"] != "spoofed"


def test_oversized_headers_are_431(edge):
    api, _, _, _ = edge
    response = api.get("/v1/categories", headers={f"X-Filler-{i}": "y" * 200 for i in range(100)})
    response.expect_problem(431, "headers-too-large")


def _read_response(connection) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
    while len(rest) < length:
        rest += connection.recv(65536)
    return int(head.split(b" ", 2)[1]), rest[:length]


def test_a_trace_body_cannot_smuggle_a_request_to_the_service(suite):
    """HTTP/1 frames a TRACE without a body, so a proxy that wrote the client's body upstream would
    hand the service a second request of the client's making, past every check at the edge. Here
    the smuggled request would register an account; the gateway drops the body, and none exists."""
    email = f"smuggled-{uuid.uuid4().hex[:12]}@example.com"
    inner = json.dumps({"email": email, "password": "correct horse battery staple", "displayName": "Smuggled", "role": "buyer"}).encode()
    smuggled = (b"POST /v1/auth/register HTTP/1.1\r\nHost: identity\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(inner)).encode() + b"\r\n\r\n" + inner)
    login = b'{"email": "nobody@example.com"}'
    with socket.create_connection(("127.0.0.1", suite.ports["gateway"]), timeout=5) as connection:
        for _ in range(3):
            connection.sendall(b"TRACE /v1/auth/register HTTP/1.1\r\nHost: gateway\r\nContent-Type: text/plain\r\n"
                               b"Content-Length: " + str(len(smuggled)).encode() + b"\r\n\r\n" + smuggled)
            status, _ = _read_response(connection)
            assert status == 405
            connection.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                               b"Content-Length: " + str(len(login)).encode() + b"\r\n\r\n" + login)
            status, body = _read_response(connection)
            assert status == 422 and b"validation-failed" in body, (status, body[:200])
    time.sleep(1)
    assert psql(suite.superuser_dsn, f"SELECT count(*) FROM identity.users WHERE email = {sql_literal(email)}") == [["0"]]
