"""Postgres over TLS with a private CA (`sslrootcert` in DATABASE_URL): the server's certificate
is verified against that CA, and a server signed by another CA is refused."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from e2e_support import base_env, wait_until

PG_OS_USER = "postgres"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=40)


def _certificate_authority(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=directory)


def _server_certificate(directory: Path, ca: str) -> None:
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=directory)


def _migrate(suite, database_url: str) -> subprocess.CompletedProcess:
    # A refused certificate fails every attempt: give up after 3 s rather than the default 30.
    env = {**base_env(), "DATABASE_URL": database_url, "LOG_FORMAT": "text", "DATABASE_CONNECT_DEADLINE_MS": "3000"}
    return subprocess.run([suite.binary("listings"), "migrate"], env=env, capture_output=True, text=True, timeout=40)


@pytest.fixture()
def postgres_with_tls(suite, tmp_path):
    """Turns TLS on in the suite's Postgres (plain connections keep working) with a certificate
    from a throwaway CA; turns it off again afterwards."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pg = suite.suite
    _certificate_authority(tmp_path, "trusted-ca")
    _certificate_authority(tmp_path, "other-ca")
    _server_certificate(tmp_path, "trusted-ca")
    server_dir = pg.pg_data_dir / "e2e-tls"
    server_dir.mkdir(exist_ok=True)
    for name in ("server.crt", "server.key"):
        shutil.copy(tmp_path / name, server_dir / name)
        if os.geteuid() == 0:
            shutil.chown(server_dir / name, PG_OS_USER, PG_OS_USER)
    os.chmod(server_dir / "server.key", 0o600)
    if os.geteuid() == 0:
        shutil.chown(server_dir, PG_OS_USER, PG_OS_USER)
    pg.psql(f"ALTER SYSTEM SET ssl_cert_file = '{server_dir / 'server.crt'}'")
    pg.psql(f"ALTER SYSTEM SET ssl_key_file = '{server_dir / 'server.key'}'")
    pg.psql("ALTER SYSTEM SET ssl = on")
    pg.psql("SELECT pg_reload_conf()")
    try:
        wait_until(lambda: pg.psql("SHOW ssl").strip() == "on", timeout=10, describe="Postgres to turn TLS on")
        yield tmp_path
    finally:
        for setting in ("ssl", "ssl_cert_file", "ssl_key_file"):
            pg.psql(f"ALTER SYSTEM RESET {setting}")
        pg.psql("SELECT pg_reload_conf()")
        shutil.rmtree(server_dir, ignore_errors=True)


def test_the_private_ca_is_trusted_and_another_is_refused(suite, postgres_with_tls):
    dsn = suite.suite.service_dsn("listings")
    trusted = _migrate(suite, f"{dsn}?sslmode=verify-full&sslrootcert={postgres_with_tls / 'trusted-ca.crt'}")
    assert trusted.returncode == 0, trusted.stdout[-3000:] + trusted.stderr[-3000:]

    other = _migrate(suite, f"{dsn}?sslmode=verify-full&sslrootcert={postgres_with_tls / 'other-ca.crt'}")
    assert other.returncode != 0, "a server certificate from an untrusted CA was accepted"
    assert "CERTIFICATE_VERIFY_FAILED" in other.stdout + other.stderr, other.stdout[-2000:]
    assert "DATABASE_CONNECT_DEADLINE_MS" in other.stdout + other.stderr
    # The system roots do not know the throwaway CA either.
    system = _migrate(suite, f"{dsn}?sslmode=verify-full")
    assert system.returncode != 0, "a server certificate from an unknown CA was accepted"
