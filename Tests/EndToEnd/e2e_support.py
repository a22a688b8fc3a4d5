"""Helpers for the end-to-end tests: bounded polling, ports, extra processes, stand-in
servers, psql, JWT manipulation, and the business test clock. Nothing here knows the services'
internals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import secrets
import signal
import socket
import socketserver
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from openapi_contract import ContractViolation

T = TypeVar("T")

SERVICES = ("identity", "listings", "billing", "orders", "messaging")
JWT_ISSUER = "marketplace-identity"
JWT_AUDIENCE = "marketplace"
PASSWORD = "e2e-correct-horse-battery"


def unique_email(label: str) -> str:
    return f"e2e-{label}-{secrets.token_hex(6)}@example.com"


# --------------------------------------------------------------------------- polling


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    describe: Callable[[], str] | str = "",
) -> T:
    """Calls `probe` until it returns something truthy, at most `timeout` seconds.

    Exceptions from the probe count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except ContractViolation:
            raise  # a wrong answer is a failure, not "not yet"
        except Exception as error:  # noqa: BLE001 - polled condition, reported below
            last_error = error
        if time.monotonic() >= deadline:
            what = describe() if callable(describe) else describe
            detail = f"; last error: {last_error!r}" if last_error is not None else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------- ports


def free_ports(count: int, avoid: set[int] = frozenset(range(8080, 8086)) | {5432, 9092}) -> list[int]:
    """Distinct free loopback ports, never a developer default (8080-8085, 5432, 9092)."""
    sockets, ports = [], []
    try:
        while len(ports) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sockets.append(sock)
            if port not in avoid and port not in ports:
                ports.append(port)
    finally:
        for sock in sockets:
            sock.close()
    return ports


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_ports(1)[0]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except Exception:  # noqa: BLE001 - "not up yet"
        return False


# --------------------------------------------------------------------------- processes


class ManagedProcess:
    """A process the tests start themselves; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            argv, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> int | None:
        return self.process.poll()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        state = "running" if self.exited() is None else f"exited with {self.exited()}"
        return f"{self.name} (pid {self.pid}, {state}); log {self.log_path}:\n{self.log_tail()}"

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def base_env() -> dict[str, str]:
    """A minimal environment so a developer's DATABASE_URL & co. never leak into a test process."""
    env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ") if key in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


# --------------------------------------------------------------------------- process environments
def service_env(name: str, port: int, *, database_url: str, kafka: str, jwks_url: str) -> dict[str, str]:
    env = {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "DATABASE_URL": database_url,
        "DATABASE_POOL_SIZE": "2",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "JWKS_URL": jwks_url,
        "JWT_ISSUER": JWT_ISSUER,
        "JWT_AUDIENCE": JWT_AUDIENCE,
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "text",
    }
    if name == "identity":
        env["IDENTITY_KEY_ENCRYPTION_KEY"] = base64.b64encode(secrets.token_bytes(32)).decode()
    return env


def gateway_env(port: int, *, upstreams: dict[str, str], jwks_url: str, timeout_ms: int = 10000) -> dict[str, str]:
    env = {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(port),
        "JWKS_URL": jwks_url,
        "JWT_ISSUER": JWT_ISSUER,
        "JWT_AUDIENCE": JWT_AUDIENCE,
        "UPSTREAM_TIMEOUT_MS": str(timeout_ms),
        "LOG_LEVEL": "info",
        "LOG_FORMAT": "text",
    }
    for name in SERVICES:
        env[f"UPSTREAM_{name.upper()}"] = upstreams[name]
    return env


# --------------------------------------------------------------------------- stand-in servers


class _ThreadingServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class CannedHttpServer:
    """Answers every request at once with the same response (an upstream stand-in)."""

    def __init__(self, status: int, body: dict, content_type: str = "application/problem+json", port: int = 0):
        payload = json.dumps(body).encode()
        self.requests = 0
        self.last_headers: dict[str, str] = {}
        self._closed = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                if outer._closed.is_set():
                    # Stopped: kept-alive connections die like the process that held them.
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                outer.requests += 1
                outer.last_headers = {name.lower(): value for name, value in self.headers.items()}
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("X-Request-Id", self.headers.get("X-Request-Id") or "stub")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args):  # quiet
                pass

        self.server = _ThreadingServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self.server.shutdown()
        self.server.server_close()


class StalledServer:
    """Accepts connections and reads requests but never answers (an upstream that hangs)."""

    def __init__(self):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self.connections.append(connection)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        for connection in self.connections:
            connection.close()
        self._listener.close()


# --------------------------------------------------------------------------- psql


def psql(dsn: str, sql: str, timeout: float = 10.0) -> list[list[str]]:
    """Runs one statement with the psql client; returns rows of text fields."""
    completed = subprocess.run(
        ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**base_env(), "PGCONNECT_TIMEOUT": "5"},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"psql failed ({completed.returncode}) for {sql!r}: {completed.stderr.strip()}")
    return [line.split("\x1f") for line in completed.stdout.splitlines() if line]


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# --------------------------------------------------------------------------- JWT


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwt_parts(token: str) -> tuple[dict, dict, bytes]:
    header, payload, signature = token.split(".")
    return json.loads(b64url_decode(header)), json.loads(b64url_decode(payload)), b64url_decode(signature)


def _segment(value: dict) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def forged_tokens(valid: str, jwks: dict, other_user_id: str) -> dict[str, str]:
    """Tokens a gateway must refuse, each derived from a valid access token."""
    header, claims, signature = jwt_parts(valid)
    head, body, _ = valid.split(".")

    flipped = bytearray(signature)
    flipped[len(flipped) // 2] ^= 0x01

    escalated = {**claims, "sub": other_user_id, "roles": ["admin"]}
    expired = {**claims, "exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200, "nbf": int(time.time()) - 7200}

    none_header = {**header, "alg": "none"}
    hs_header = {**header, "alg": "HS256"}
    public_key = b64url_decode(jwks["keys"][0]["x"])
    hs_signing_input = f"{_segment(hs_header)}.{body}".encode()
    hs_signature = hmac.new(public_key, hs_signing_input, hashlib.sha256).digest()

    tokens = {
        "garbage": "not-a-jwt",
        "tampered-signature": f"{head}.{body}.{b64url_encode(bytes(flipped))}",
        "tampered-claims": f"{head}.{_segment(escalated)}.{b64url_encode(signature)}",
        "alg-none": f"{_segment(none_header)}.{body}.",
        "alg-none-escalated": f"{_segment(none_header)}.{_segment(escalated)}.",
        "alg-hs256-with-public-key": f"{_segment(hs_header)}.{body}.{b64url_encode(hs_signature)}",
        "signature-stripped": f"{head}.{body}.",
    }
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:  # pragma: no cover - cryptography is installed on the project machines
        return tokens

    foreign = Ed25519PrivateKey.generate()

    def sign(h: dict, c: dict) -> str:
        signing_input = f"{_segment(h)}.{_segment(c)}"
        return f"{signing_input}.{b64url_encode(foreign.sign(signing_input.encode()))}"

    tokens["foreign-key-same-kid"] = sign(header, claims)
    tokens["foreign-key-unknown-kid"] = sign({**header, "kid": "e2e-" + secrets.token_hex(8)}, claims)
    tokens["kid-path-traversal"] = sign({**header, "kid": "../../../../etc/passwd"}, claims)
    tokens["kid-url"] = sign({**header, "kid": "http://127.0.0.1:1/jwks.json"}, claims)
    tokens["expired-foreign-key"] = sign(header, expired)
    return tokens


def verify_eddsa(token: str, jwks: dict) -> bool:
    """True when the token's EdDSA signature verifies with the JWKS key named by its kid."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    header, _, signature = jwt_parts(token)
    keys = [k for k in jwks["keys"] if k["kid"] == header.get("kid")]
    if len(keys) != 1:
        return False
    key = Ed25519PublicKey.from_public_bytes(b64url_decode(keys[0]["x"]))
    signing_input = token.rsplit(".", 1)[0].encode()
    try:
        key.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True


# --------------------------------------------------------------------------- extra instances


def wait_for_answer(api, process: ManagedProcess, path: str, *, timeout: float, request_timeout: float = 5.0):
    """Polls `path` on a process we started until it answers anything; fails early if it exits.

    Returns the first response (not yet validated: the caller validates what it expects).
    """
    from e2e_http import NoResponse

    deadline = time.monotonic() + timeout
    while True:
        if process.exited() is not None:
            raise AssertionError(f"{process.describe()}\nexited before answering GET {path}")
        try:
            return api.get(path, timeout=request_timeout, validate=False)
        except NoResponse:
            pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"no answer to GET {path} within {timeout:.0f}s from {process.describe()}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- events and codes
def kcat(*args: str, stdin: bytes | None = None, timeout: float = 20) -> str:
    """Runs kcat (installed by `make test`); a failure fails the test with kcat's message."""
    result = subprocess.run(["kcat", *args], input=stdin, capture_output=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"kcat {' '.join(args)} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def notifications(broker: str, user_id: str) -> list[dict]:
    """Every `notification.requested` payload for `user_id` on identity.notifications.v1, oldest
    first (the topic also carries the user's `email_changed` events, which are left out)."""
    dump = kcat("-b", broker, "-C", "-t", "identity.notifications.v1", "-o", "beginning", "-e", "-q",
                "-f", "%k\t%s\n")
    found = []
    for line in dump.splitlines():
        key, _, value = line.partition("\t")
        if key == user_id and value:
            payload = json.loads(value)
            if "template" in payload:
                found.append(payload)
    return found


def wait_for_notification(broker: str, user_id: str, template: str, *, after: int = 0, timeout: float = 15) -> dict:
    """The newest notification of `template` for the user, once more than `after` of them exist."""
    result: list[dict] = []

    def arrived() -> bool:
        matching = [n for n in notifications(broker, user_id) if n["template"] == template]
        if len(matching) > after:
            result.append(matching[-1])
            return True
        return False

    wait_until(arrived, timeout=timeout, interval=0.3, describe=f"a {template} notification for {user_id}")
    return result[-1]


def totp(secret_base32: str, at: float | None = None, step_offset: int = 0) -> str:
    """The RFC 6238 code (SHA-1, 6 digits, 30 s) an authenticator app shows."""
    key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
    counter = int((time.time() if at is None else at) // 30) + step_offset
    mac = hmac.new(key, counter.to_bytes(8, "big"), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = (int.from_bytes(mac[offset:offset + 4], "big") & 0x7FFFFFFF) % 1_000_000
    return f"{value:06d}"


# --------------------------------------------------------------------------- business test clock


@dataclass(frozen=True)
class BusinessTime:
    """One domain service's answer from its /internal/test-clock."""

    now: datetime  # its business time (timezone-aware)
    offset_seconds: float  # how far it is ahead of the wall clock, in total


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 time (`Z` or an offset; any fraction) as an aware datetime."""
    return datetime.fromisoformat(text)


def _business_times(answers: dict[str, dict]) -> dict[str, BusinessTime]:
    return {name: BusinessTime(parse_rfc3339(a["now"]), a["offsetSeconds"]) for name, a in answers.items()}


def advance_clock(suite, *, days: int = 0, hours: int = 0, minutes: int = 0, seconds: int = 0) -> dict[str, BusinessTime]:
    """Moves every domain service's business clock forward by the sum (the launcher starts them
    with TEST_CLOCK=on; the gateway has no such clock) and returns each one's new time, keyed by
    service. `suite` is the session fixture. The offset stays for the rest of the session, in
    every later test too; fails (SuiteError) naming any service that did not answer."""
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total != int(total) or total < 0:
        raise ValueError(f"advance the clock by whole seconds >= 0, not {total!r}")
    return _business_times(getattr(suite, "suite", suite).advance_clock(int(total)))


def business_clock(suite) -> dict[str, BusinessTime]:
    """Every domain service's business time, as advance_clock returns it, without moving it."""
    return _business_times(getattr(suite, "suite", suite).clock())
