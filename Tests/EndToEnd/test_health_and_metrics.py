"""Operational endpoints of every process: /health/live, /health/ready (200 and 503), /metrics."""

from __future__ import annotations

import re

import pytest

from e2e_http import Api
from e2e_support import SERVICES, closed_port, free_ports, gateway_env, service_env, wait_for_answer

SAMPLE = re.compile(
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? [-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|Inf|NaN)( -?[0-9]+)?$"
)


def assert_prometheus_text(response) -> None:
    lines = [line for line in response.text().splitlines() if line.strip()]
    samples = [line for line in lines if not line.startswith("#")]
    assert samples, f"no metric samples: {response.describe()}"
    bad = [line for line in samples if not SAMPLE.match(line)]
    assert not bad, f"lines that are not Prometheus samples: {bad[:5]}"


def assert_operational_endpoints(api: Api, checks: set[str]) -> None:
    live = api.get("/health/live").expect(200).json()
    assert live == {"status": "ok"}
    ready = api.get("/health/ready").expect(200).json()
    assert ready["status"] == "ready" and set(ready["checks"]) == checks
    metrics = api.get("/metrics").expect(200)
    assert metrics.media_type == "text/plain"
    assert_prometheus_text(metrics)


def test_gateway_operational_endpoints(gateway):
    assert_operational_endpoints(gateway, {"jwks", "revocations"})


# Every service checks its dependencies; listings also waits for its search read model to load.
SERVICE_CHECKS = {name: {"postgres", "migrations", "kafka"} | ({"search"} if name == "listings" else set()) for name in SERVICES}


@pytest.mark.parametrize("name", SERVICES)
def test_service_operational_endpoints(direct, name):
    assert_operational_endpoints(direct[name], SERVICE_CHECKS[name])


@pytest.mark.parametrize("name", SERVICES)
def test_service_is_live_but_not_ready_without_postgres_and_kafka(suite, contracts, spawn, name):
    """A second instance whose Postgres and Kafka are unreachable: alive, not ready, says why."""
    (port,) = free_ports(1)
    env = service_env(
        name,
        port,
        database_url=f"postgres://{name}:{name}@127.0.0.1:{closed_port()}/marketplace",
        kafka=f"127.0.0.1:{closed_port()}",
        jwks_url=suite.jwks_url,
    )
    process = spawn(name, env, f"{name}-without-dependencies")
    api = Api(f"http://127.0.0.1:{port}", name, contracts)

    live = wait_for_answer(api, process, "/health/live", timeout=30)
    api.validate(live).expect(200)

    ready = api.get("/health/ready", timeout=20).expect(503).json()
    assert ready == {"status": "not_ready", "checks": {check: "fail" for check in SERVICE_CHECKS[name]}}, ready


def test_gateway_is_live_but_not_ready_without_jwks(suite, contracts, spawn):
    (port,) = free_ports(1)
    unreachable = f"http://127.0.0.1:{closed_port()}"
    env = gateway_env(
        port,
        upstreams={name: unreachable for name in SERVICES},
        jwks_url=f"{unreachable}/.well-known/jwks.json",
    )
    process = spawn("gateway", env, "gateway-without-jwks")
    api = Api(f"http://127.0.0.1:{port}", "gateway", contracts)

    live = wait_for_answer(api, process, "/health/live", timeout=30)
    api.validate(live).expect(200)

    ready = api.get("/health/ready", timeout=20).expect(503).json()
    assert ready == {"status": "not_ready", "checks": {"jwks": "fail"}}, ready


def sample(api, pattern: str) -> float | None:
    match = re.search(pattern, api.get("/metrics").expect(200).text(), re.MULTILINE)
    return float(match.group(1)) if match else None


def test_the_documented_metrics_are_exported(gateway, direct, buyer):
    gateway.get("/v1/plans").expect(200)
    assert (sample(gateway, r'^gateway_requests_total\{route="/v1/plans",method="GET",status="200"\} (\S+)') or 0) >= 1
    for name in ("listings", "billing", "orders", "messaging", "identity"):
        api = direct[name]
        assert sample(api, rf'^db_pool_max_connections\{{service="{name}"\}} (\S+)') == 10, name
        assert sample(api, rf'^db_pool_connections\{{service="{name}",state="idle"\}} (\S+)') is not None, name
        assert sample(api, rf'^outbox_backlog\{{service="{name}"\}} (\S+)') is not None, name
        assert sample(api, r'^hb_requests\{.*http_response_status_code="200"\} (\S+)') is not None, name
    assert (sample(direct["identity"], r'^identity_logins_total\{outcome="success"\} (\S+)') or 0) >= 1
    assert sample(direct["listings"], r'^consumer_messages_processed_total\{service="listings"\} (\S+)') is not None
