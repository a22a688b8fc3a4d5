"""A small HTTP client (stdlib http.client) whose every response is checked against the contract."""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urlencode, urlsplit

from openapi_contract import ContractRegistry, Match, media_type

_UNSET = object()


@dataclass
class Response:
    method: str
    path: str
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    elapsed: float
    match: Match | None = field(default=None)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def media_type(self) -> str:
        return media_type(self.header("content-type"))

    def json(self) -> Any:
        try:
            return jsonlib.loads(self.body.decode("utf-8"))
        except ValueError as error:
            raise AssertionError(f"{self.describe()}: body is not JSON ({error})") from None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def describe(self) -> str:
        excerpt = self.body[:800].decode("utf-8", errors="replace")
        return (
            f"{self.method} {self.path} -> {self.status} in {self.elapsed:.2f}s "
            f"(Content-Type {self.header('content-type')!r}, X-Request-Id {self.header('x-request-id')!r}) "
            f"body: {excerpt}"
        )

    def expect(self, *statuses: int) -> "Response":
        assert self.status in statuses, f"expected {' or '.join(map(str, statuses))}: {self.describe()}"
        return self

    def expect_problem(self, status: int | Iterable[int], slug: str | None = None) -> dict:
        statuses = (status,) if isinstance(status, int) else tuple(status)
        self.expect(*statuses)
        assert self.media_type == "application/problem+json", f"expected problem+json: {self.describe()}"
        problem = self.json()
        if slug is not None:
            assert problem.get("type") == f"https://marketplace.example/problems/{slug}", (
                f"expected problem type {slug}: {self.describe()}"
            )
        return problem


class NoResponse(AssertionError):
    """The server did not answer in time or closed the connection without a response."""


class Api:
    """Talks to one origin (the gateway, or one service's own port).

    Every response is validated with `contracts.check(origin, ...)` unless `validate=False`,
    so a test fails where an undocumented status or a wrong body first appears.
    """

    def __init__(
        self,
        base_url: str,
        origin: str,
        contracts: ContractRegistry | None,
        *,
        timeout: float = 15.0,
        wait_out_rate_limits: bool = False,
        max_rate_limit_wait: float = 60.0,
    ):
        parts = urlsplit(base_url)
        self.base_url = base_url.rstrip("/")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.origin = origin
        self.contracts = contracts
        self.timeout = timeout
        self.wait_out_rate_limits = wait_out_rate_limits
        self.max_rate_limit_wait = max_rate_limit_wait

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        json: Any = _UNSET,
        body: bytes | Iterable[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        timeout: float | None = None,
        validate: bool = True,
    ) -> Response:
        send_headers = {"Accept": "application/json, application/problem+json, text/plain"}
        if json is not _UNSET:
            body = jsonlib.dumps(json).encode("utf-8")
            send_headers["Content-Type"] = "application/json"
        if token is not None:
            send_headers["Authorization"] = f"Bearer {token}"
        send_headers.update(headers or {})
        target = path + ("?" + urlencode(query) if query else "")

        waited = 0.0
        while True:
            response = self._send(method, target, body, send_headers, timeout or self.timeout)
            replayable = body is None or isinstance(body, (bytes, bytearray, str))
            if response.status == 429 and self.wait_out_rate_limits and validate and replayable:
                # The main suite's gateway rate-limits auth routes; wait as it asks, within a bound.
                self._validate(response)
                delay = _retry_after_seconds(response)
                if waited + delay > self.max_rate_limit_wait:
                    raise AssertionError(f"still rate limited after {waited:.0f}s: {response.describe()}")
                time.sleep(delay)
                waited += delay
                continue
            break
        if validate:
            self._validate(response)
        return response

    def validate(self, response: Response) -> Response:
        """Validates a response that was fetched with validate=False."""
        self._validate(response)
        return response

    def _validate(self, response: Response) -> None:
        if self.contracts is not None:
            response.match = self.contracts.check(
                self.origin, response.method, response.path, response.status, response.headers, response.body
            )

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs) -> Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs) -> Response:
        return self.request("DELETE", path, **kwargs)

    def _send(self, method, target, body, headers, timeout) -> Response:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        started = time.monotonic()
        try:
            try:
                connection.request(method, target, body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (413) and close before reading the whole body; the
                # answer is still in our receive buffer.
                pass
            try:
                raw = connection.getresponse()
                payload = raw.read()
            except (socket.timeout, TimeoutError):
                raise NoResponse(
                    f"{method} {target} on {self.base_url}: no response within {timeout:.1f}s"
                ) from None
            except (ConnectionError, http.client.HTTPException) as error:
                raise NoResponse(
                    f"{method} {target} on {self.base_url}: connection failed without a response: {error!r}"
                ) from None
        except (ConnectionRefusedError, socket.timeout, TimeoutError) as error:
            raise NoResponse(f"{method} {target} on {self.base_url}: {error!r}") from None
        finally:
            connection.close()
        elapsed = time.monotonic() - started
        response_headers: dict[str, str] = {}
        for name, value in raw.getheaders():
            key = name.lower()
            response_headers[key] = f"{response_headers[key]}, {value}" if key in response_headers else value
        return Response(method, target, raw.status, response_headers, payload, elapsed)


def _retry_after_seconds(response: Response) -> float:
    value = response.header("retry-after") or "1"
    try:
        return min(max(float(value), 0.2), 10.0)
    except ValueError:
        return 1.0
