"""Checks HTTP responses against the services' openapi.yaml documents and records coverage.

One `ContractRegistry` loads Services/<Name>/openapi.yaml for every service. `check()`
takes a response the tests observed (who answered it, method, path, status, headers,
body), finds the documented operation (path template + method) and response (status),
and validates the Content-Type, the required response headers and the body against the
document's schema. A response that no document describes is a violation, so an
undocumented status (a 500, a 415, ...) fails the test that saw it.

Responses seen through the gateway are matched against the upstream service's document
(chosen with the gateway document's `x-routes` table); a status that operation does not
document, or a path no operation matches, must be one of the gateway's own edge
responses (`components/responses` of the gateway document: 401, 404, 413, 429, 502,
503, 504).

Every validated (service, METHOD, path template, status) is recorded; `unexercised()`
lists what the documents promise and no test has seen.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid as _uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SERVICE_DIRECTORIES = {
    "gateway": "Gateway",
    "identity": "Identity",
    "listings": "Listings",
    "billing": "Billing",
    "orders": "Orders",
    "messaging": "Messaging",
}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
EDGE_ORIGIN = "gateway"
EDGE_TEMPLATE = "(edge)"


class ContractViolation(AssertionError):
    """A response that the documents do not describe, or describe differently."""


@dataclass(frozen=True, order=True)
class Exercised:
    """One documented response: service, method, path template, status."""

    service: str
    method: str
    path: str
    status: str

    def __str__(self) -> str:
        return f"{self.service}: {self.method} {self.path} -> {self.status}"


@dataclass(frozen=True)
class Operation:
    service: str
    method: str  # upper case
    template: str
    pattern: re.Pattern
    literal_segments: int
    pointer: str  # JSON pointer of the operation object inside its document
    spec: Mapping[str, Any]

    @property
    def protected(self) -> bool:
        """A token is required; `security: [{}, {bearerAuth: []}]` makes it optional (public reads that answer more to a signed-in caller)."""
        security = self.spec.get("security")
        return bool(security) and {} not in security


@dataclass(frozen=True)
class Match:
    """Which documented response a checked response was validated against."""

    service: str
    method: str
    template: str
    status: str
    edge: bool


# ---------------------------------------------------------------------------------------
# formats: asserted, without optional packages (rfc3339-validator, rfc3987) being needed

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")

FORMAT_CHECKER = FormatChecker(formats=())


@FORMAT_CHECKER.checks("date-time", raises=(ValueError,))
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _DATE_TIME.match(value):
        return False
    normalised = value.upper().replace("Z", "+00:00")
    # fromisoformat in 3.11 accepts any number of fraction digits only up to 6
    head, _, rest = normalised.partition(".")
    if rest:
        digits = re.match(r"\d+", rest).group(0)
        normalised = head + "." + digits[:6].ljust(6, "0") + rest[len(digits):]
    _dt.datetime.fromisoformat(normalised)
    return True


@FORMAT_CHECKER.checks("uuid", raises=(ValueError,))
def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return bool(_UUID.match(value)) and _uuid.UUID(value) is not None


@FORMAT_CHECKER.checks("email")
def _is_email(value: object) -> bool:
    return not isinstance(value, str) or bool(_EMAIL.match(value))


@FORMAT_CHECKER.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme) and bool(parts.netloc or parts.path) and " " not in value


# ---------------------------------------------------------------------------------------


def _escape_pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _template_pattern(template: str) -> tuple[re.Pattern, int]:
    pattern = ""
    literal_segments = 0
    for segment in template.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            pattern += "/[^/]+"
        else:
            pattern += "/" + re.escape(segment)
            literal_segments += 1
    return re.compile("^" + (pattern or "/") + "$"), literal_segments


def media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json_media_type(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


class OpenApiDocument:
    """One service's openapi.yaml, with its operations indexed for matching."""

    def __init__(self, service: str, path: Path):
        self.service = service
        self.path = path
        self.spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.uri = f"urn:marketplace:openapi:{service}"
        self.operations: list[Operation] = []
        for template, item in (self.spec.get("paths") or {}).items():
            item = self.resolve(item)
            pattern, literal_segments = _template_pattern(template)
            for method in HTTP_METHODS:
                if method in item:
                    self.operations.append(
                        Operation(
                            service=service,
                            method=method.upper(),
                            template=template,
                            pattern=pattern,
                            literal_segments=literal_segments,
                            pointer=f"/paths/{_escape_pointer_token(template)}/{method}",
                            spec=item[method],
                        )
                    )

    def resolve(self, node: Any, pointer: str | None = None) -> Any:
        """Follows local `$ref`s; returns the node (and its pointer when one is given)."""
        want_pointer = pointer is not None
        seen = set()
        while isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#/"):
                raise ContractViolation(f"{self.path}: only local $refs are allowed, found {ref!r}")
            if ref in seen:
                raise ContractViolation(f"{self.path}: $ref cycle at {ref}")
            seen.add(ref)
            pointer = ref[1:]
            node = self.spec
            for token in ref[2:].split("/"):
                token = token.replace("~1", "/").replace("~0", "~")
                try:
                    node = node[token]
                except (KeyError, TypeError):
                    raise ContractViolation(f"{self.path}: unresolvable $ref {ref}") from None
        return (node, pointer) if want_pointer else node

    def find_operation(self, method: str, path: str) -> Operation | None:
        candidates = [op for op in self.operations if op.method == method.upper() and op.pattern.match(path)]
        if not candidates:
            return None
        # A literal segment beats a template parameter (`/v1/users/me` over `/v1/users/{id}`).
        return max(candidates, key=lambda op: op.literal_segments)

    def has_path(self, path: str) -> bool:
        return any(op.pattern.match(path) for op in self.operations)

    def documented(self) -> set[Exercised]:
        result = set()
        for op in self.operations:
            for status in (op.spec.get("responses") or {}):
                result.add(Exercised(self.service, op.method, op.template, str(status)))
        return result


class ContractRegistry:
    """All six documents, the gateway's route table, and what the tests exercised."""

    def __init__(self, services_dir: Path | str):
        services_dir = Path(services_dir)
        self.documents: dict[str, OpenApiDocument] = {
            service: OpenApiDocument(service, services_dir / directory / "openapi.yaml")
            for service, directory in SERVICE_DIRECTORIES.items()
        }
        registry = Registry()
        for document in self.documents.values():
            registry = registry.with_resource(
                document.uri, Resource.from_contents(document.spec, default_specification=DRAFT202012)
            )
        self._registry = registry
        self._validators: dict[str, Draft202012Validator] = {}
        self.routes = self._load_routes()
        self.edge_responses = self._load_edge_responses()
        self.exercised: set[Exercised] = set()
        self.edge_exercised: set[int] = set()

    # -- the gateway document's own parts ---------------------------------------------

    def _load_routes(self) -> list[dict[str, Any]]:
        routes = self.documents["gateway"].spec.get("x-routes")
        if not isinstance(routes, list) or not routes:
            raise ContractViolation("Gateway/openapi.yaml: x-routes (the route table) is missing")
        for route in routes:
            if route.get("upstream") not in self.documents or route["upstream"] == "gateway":
                raise ContractViolation(f"Gateway/openapi.yaml: x-routes entry with unknown upstream: {route}")
        return routes

    def _load_edge_responses(self) -> dict[int, str]:
        """status -> name of the gateway's problem response in components/responses."""
        gateway = self.documents["gateway"]
        edge: dict[int, str] = {}
        for name, response in (gateway.spec.get("components", {}).get("responses") or {}).items():
            content = response.get("content") or {}
            if "application/problem+json" not in content:
                continue
            status = _const_status(gateway, content["application/problem+json"].get("schema"))
            if status is None:
                raise ContractViolation(f"Gateway/openapi.yaml: response {name} does not pin its status")
            edge[status] = name
        return edge

    def route_for(self, path: str) -> dict[str, Any] | None:
        """The route the gateway picks: the longest matching prefix."""
        best = None
        for route in self.routes:
            prefix = route["prefix"]
            matches = path.startswith(prefix) if prefix.endswith("/") else (path == prefix or path.startswith(prefix + "/"))
            if matches and (best is None or len(prefix) > len(best["prefix"])):
                best = route
        return best

    # -- checking -------------------------------------------------------------------

    def check(
        self,
        origin: str,
        method: str,
        path: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
    ) -> Match:
        """Validates one response; raises ContractViolation; records what it exercised.

        `origin` is "gateway" for a response read from the gateway's port, or the service
        name for a response read from that service's own port. `headers` keys may be in any
        case. `path` may carry a query string (it is ignored).
        """
        path = urlsplit(path).path or "/"
        method = method.upper()
        headers = {k.lower(): v for k, v in headers.items()}
        where = f"{method} {path} -> {status} (read from {origin})"

        if origin not in self.documents:
            raise ContractViolation(f"{where}: unknown origin {origin!r}")

        if origin == EDGE_ORIGIN:
            own = self.documents["gateway"].find_operation(method, path)
            if own is not None:
                return self._check_operation(own, status, headers, body, path, where)
            route = self.route_for(path)
            if route is not None:
                upstream = self.documents[route["upstream"]]
                operation = upstream.find_operation(method, path)
                if operation is not None and str(status) in (operation.spec.get("responses") or {}):
                    try:
                        return self._check_operation(operation, status, headers, body, path, where)
                    except ContractViolation:
                        # The same status can come from the gateway itself (a 429 of its rate
                        # limiter on a route whose service also answers 429): either may match.
                        if status not in self.edge_responses:
                            raise
                        try:
                            return self._check_edge(status, headers, body, path, where)
                        except ContractViolation:
                            pass
                        raise
                if status in self.edge_responses:
                    return self._check_edge(status, headers, body, path, where)
                if operation is None:
                    raise ContractViolation(
                        f"{where}: {route['upstream']}'s openapi.yaml documents no {method} operation "
                        f"matching this path, and {status} is not a gateway edge response "
                        f"({sorted(self.edge_responses)})\n{_excerpt(headers, body)}"
                    )
                raise ContractViolation(
                    f"{where}: status {status} is documented neither for {route['upstream']} "
                    f"{method} {operation.template} (documents {sorted(operation.spec['responses'])}) "
                    f"nor as a gateway edge response ({sorted(self.edge_responses)})\n{_excerpt(headers, body)}"
                )
            if status in self.edge_responses:
                return self._check_edge(status, headers, body, path, where)
            raise ContractViolation(
                f"{where}: no gateway route matches this path, so the gateway must answer one of its "
                f"edge responses ({sorted(self.edge_responses)})\n{_excerpt(headers, body)}"
            )

        document = self.documents[origin]
        operation = document.find_operation(method, path)
        if operation is None:
            raise ContractViolation(
                f"{where}: {origin}'s openapi.yaml documents no {method} operation matching this path"
                f"\n{_excerpt(headers, body)}"
            )
        return self._check_operation(operation, status, headers, body, path, where)

    def _check_operation(self, operation, status, headers, body, path, where) -> Match:
        document = self.documents[operation.service]
        responses = operation.spec.get("responses") or {}
        key = str(status)
        if key not in responses:
            raise ContractViolation(
                f"{where}: {operation.service} {operation.method} {operation.template} documents "
                f"{sorted(responses)}, not {status}\n{_excerpt(headers, body)}"
            )
        pointer = f"{operation.pointer}/responses/{key}"
        response, pointer = document.resolve(responses[key], pointer)
        label = f"{operation.service} {operation.method} {operation.template} {key}"
        self._check_response(document, response, pointer, status, headers, body, path, where, label)
        self.exercised.add(Exercised(operation.service, operation.method, operation.template, key))
        return Match(operation.service, operation.method, operation.template, key, edge=False)

    def _check_edge(self, status, headers, body, path, where) -> Match:
        gateway = self.documents["gateway"]
        name = self.edge_responses[status]
        pointer = f"/components/responses/{_escape_pointer_token(name)}"
        response, pointer = gateway.resolve(gateway.spec["components"]["responses"][name], pointer)
        self._check_response(gateway, response, pointer, status, headers, body, path, where, f"gateway edge {name}")
        self.edge_exercised.add(status)
        return Match("gateway", "*", EDGE_TEMPLATE, str(status), edge=True)

    def _check_response(self, document, response, pointer, status, headers, body, path, where, label) -> None:
        problems: list[str] = []

        for name, header in (response.get("headers") or {}).items():
            header, _ = document.resolve(header, "/")
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    problems.append(f"required header {name} is missing")
                continue
            schema = header.get("schema")
            if schema is not None:
                for error in Draft202012Validator(schema, format_checker=FORMAT_CHECKER).iter_errors(value):
                    problems.append(f"header {name}: {error.message}")

        content = response.get("content") or {}
        actual_media = media_type(headers.get("content-type"))
        parsed: Any = None
        if not content:
            if body:
                problems.append(f"no body is documented, got {len(body)} bytes")
        elif actual_media not in content:
            problems.append(
                f"Content-Type {headers.get('content-type')!r} is not one of the documented {sorted(content)}"
            )
        else:
            schema_pointer = f"{pointer}/content/{_escape_pointer_token(actual_media)}/schema"
            try:
                if _is_json_media_type(actual_media):
                    parsed = json.loads(body.decode("utf-8"))
                else:
                    parsed = body.decode("utf-8")
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                problems.append(f"body is not valid {actual_media}: {error}")
            else:
                if "schema" in content[actual_media]:
                    validator = self._validator(document, schema_pointer)
                    errors = sorted(validator.iter_errors(parsed), key=lambda e: list(e.absolute_path))
                    for error in errors[:12]:
                        location = "/".join(["body", *(str(p) for p in error.absolute_path)])
                        problems.append(f"{location}: {error.message}")
                    if len(errors) > 12:
                        problems.append(f"... and {len(errors) - 12} more schema errors")

        if actual_media == "application/problem+json" and isinstance(parsed, dict):
            if parsed.get("status") != status:
                problems.append(f"problem status {parsed.get('status')!r} differs from the HTTP status {status}")
            if "instance" in parsed and parsed["instance"] != path:
                problems.append(f"problem instance {parsed['instance']!r} is not the request path {path!r}")
            request_id = headers.get("x-request-id")
            if "requestId" in parsed and request_id is not None and parsed["requestId"] != request_id:
                problems.append(
                    f"problem requestId {parsed['requestId']!r} differs from X-Request-Id {request_id!r}"
                )

        if problems:
            raise ContractViolation(
                f"{where}: does not match {label} of {document.path.parent.name}/openapi.yaml:\n  - "
                + "\n  - ".join(problems)
                + f"\n{_excerpt(headers, body)}"
            )

    def _validator(self, document: OpenApiDocument, pointer: str) -> Draft202012Validator:
        ref = f"{document.uri}#{pointer}"
        validator = self._validators.get(ref)
        if validator is None:
            validator = Draft202012Validator(
                {"$ref": ref}, registry=self._registry, format_checker=FORMAT_CHECKER
            )
            self._validators[ref] = validator
        return validator

    # -- coverage -------------------------------------------------------------------

    def documented(self) -> set[Exercised]:
        result: set[Exercised] = set()
        for document in self.documents.values():
            result |= document.documented()
        return result

    def unexercised(self) -> list[Exercised]:
        return sorted(self.documented() - self.exercised)

    def operations(self, service: str | None = None) -> Iterable[Operation]:
        for document in self.documents.values():
            if service is None or document.service == service:
                yield from document.operations


def _const_status(document: OpenApiDocument, schema: Any) -> int | None:
    schema = document.resolve(schema) if schema is not None else None
    if not isinstance(schema, Mapping):
        return None
    status = (schema.get("properties") or {}).get("status")
    if isinstance(status, Mapping) and isinstance(status.get("const"), int):
        return status["const"]
    for part in schema.get("allOf") or []:
        found = _const_status(document, part)
        if found is not None:
            return found
    return None


def _excerpt(headers: Mapping[str, str], body: bytes, limit: int = 1500) -> str:
    text = body[:limit].decode("utf-8", errors="replace")
    more = f" ... ({len(body)} bytes)" if len(body) > limit else ""
    shown = {k: v for k, v in headers.items() if k in ("content-type", "x-request-id", "www-authenticate", "retry-after")}
    return f"  headers: {shown}\n  body: {text}{more}"
