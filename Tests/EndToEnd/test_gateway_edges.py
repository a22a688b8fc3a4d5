"""The gateway's own defences, on a gateway process of our own: slow clients are cut off, an
oversized body is refused without being read, and a failing upstream trips its circuit breaker,
which lets traffic through again once the upstream is back."""

from __future__ import annotations

import re
import socket
import time

import pytest

from e2e_http import Api
from e2e_support import (
    SERVICES,
    CannedHttpServer,
    ManagedProcess,
    base_env,
    free_ports,
    gateway_env,
    wait_for_answer,
    wait_until,
)

IDLE_TIMEOUT_MS = 500
MIB = 1024 * 1024
CATEGORIES = {"items": [], "nextCursor": None}


@pytest.fixture()
def edge(suite, contracts):
    """A gateway whose listings upstream is a stand-in on a port we control (stop it, start it
    again), with short client idle and breaker timings."""
    (listings_port, gateway_port) = free_ports(2)
    stand_in = CannedHttpServer(200, CATEGORIES, content_type="application/json", port=listings_port)
    upstreams = {name: suite.service_url(name) for name in SERVICES}
    upstreams["listings"] = stand_in.url
    env = {**base_env(), **gateway_env(gateway_port, upstreams=upstreams, jwks_url=suite.jwks_url, timeout_ms=1000),
           "HTTP_CLIENT_IDLE_TIMEOUT_MS": str(IDLE_TIMEOUT_MS), "BREAKER_CONSECUTIVE_FAILURES": "3",
           "BREAKER_OPEN_SECONDS": "1", "UPSTREAM_EJECT_AFTER_FAILURES": "100", "UPSTREAM_HEALTH_CHECK_INTERVAL_MS": "60000"}
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
    with socket.create_connection(("127.0.0.1", port)) as stalled:
        stalled.sendall(b"POST /v1/auth/login HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{\"email\":")
        answer = _read_all(stalled, timeout=10)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"request-timeout" in answer and b"application/problem+json" in answer


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
