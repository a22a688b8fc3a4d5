"""Bad configuration stops an executable at start with a message naming the key; `migrate`
needs only the database settings (a migration Job carries no Kafka credentials)."""

from __future__ import annotations

import json
import subprocess

from e2e_support import base_env, free_ports, service_env


def _run(suite, binary: str, command: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([suite.binary(binary), command], env={**base_env(), **env}, capture_output=True, text=True, timeout=timeout)


def _listings_env(suite, **extra: str) -> dict[str, str]:
    (port,) = free_ports(1)
    env = service_env("listings", port, database_url=suite.suite.service_dsn("listings"),
                      kafka=suite.suite.kafka_bootstrap_servers, jwks_url=suite.jwks_url)
    return {**env, **extra}


KAFKA_SCRAM_WITHOUT_PASSWORD = {"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_USERNAME": "listings"}


def test_migrate_runs_without_the_kafka_credentials(suite):
    migrated = _run(suite, "listings", "migrate", _listings_env(suite, **KAFKA_SCRAM_WITHOUT_PASSWORD))
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert "migrations complete" in migrated.stdout + migrated.stderr


def test_serve_refuses_to_start_with_incomplete_kafka_credentials(suite):
    served = _run(suite, "listings", "serve", _listings_env(suite, **KAFKA_SCRAM_WITHOUT_PASSWORD))
    assert served.returncode != 0
    output = served.stdout + served.stderr
    assert "KAFKA_SASL_PASSWORD" in output, output


def test_serve_refuses_an_unknown_kafka_security_protocol_and_a_missing_database_ca(suite):
    served = _run(suite, "listings", "serve", _listings_env(suite, KAFKA_SECURITY_PROTOCOL="tls"))
    assert served.returncode != 0 and "KAFKA_SECURITY_PROTOCOL" in served.stdout + served.stderr
    database_url = suite.suite.service_dsn("listings") + "?sslmode=verify-full&sslrootcert=/no/such/ca.pem"
    served = _run(suite, "listings", "serve", _listings_env(suite, DATABASE_URL=database_url))
    output = served.stdout + served.stderr
    assert served.returncode != 0 and "DATABASE_URL" in output and "sslrootcert" in output, output


def test_the_gateway_does_not_start_with_a_bad_route_table(suite, tmp_path):
    (port,) = free_ports(1)
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps([{"prefix": "/v1/things", "upstream": "nowhere", "access": "public"}]))
    env = {"HTTP_HOST": "127.0.0.1", "HTTP_PORT": str(port), "ROUTES_FILE": str(routes), "JWKS_URL": suite.jwks_url}
    started = _run(suite, "gateway", "serve", env)
    output = started.stdout + started.stderr
    assert started.returncode != 0
    assert "nowhere" in output, output
