"""Static checks of the six openapi.yaml documents (no service needs to run)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator

from openapi_contract import SERVICE_DIRECTORIES, ContractRegistry, OpenApiDocument

ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = ROOT / "Services"
OPERATIONAL = {("GET", "/health/live"), ("GET", "/health/ready"), ("GET", "/metrics")}

# Exactly the endpoints each service serves (see each Services/<Name>/README.md).
EXPECTED_OPERATIONS = {
    "gateway": {("GET", "/openapi.json"), ("GET", "/docs")},
    "identity": {
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/logout"),
        ("GET", "/v1/sessions"),
        ("DELETE", "/v1/sessions/{id}"),
        ("DELETE", "/v1/sessions"),
        ("GET", "/v1/users/me"),
        ("GET", "/v1/users/me/export"),
        ("POST", "/v1/users/me/exports"),
        ("GET", "/v1/users/me/exports/{id}"),
        ("DELETE", "/v1/users/me"),
        ("POST", "/v1/auth/verify-email"),
        ("POST", "/v1/auth/verify-email/resend"),
        ("POST", "/v1/auth/password-reset"),
        ("POST", "/v1/auth/password-reset/confirm"),
        ("POST", "/v1/auth/password-change"),
        ("POST", "/v1/auth/mfa/totp"),
        ("POST", "/v1/auth/mfa/totp/confirm"),
        ("POST", "/v1/auth/mfa/verify"),
        ("GET", "/v1/admin/users"),
        ("GET", "/v1/admin/users/{id}"),
        ("PUT", "/v1/admin/users/{id}/roles"),
        ("POST", "/v1/admin/users/{id}/suspend"),
        ("POST", "/v1/admin/users/{id}/reinstate"),
        ("GET", "/v1/admin/audit-log"),
        ("GET", "/.well-known/jwks.json"),
    },
    "listings": {
        ("GET", "/v1/categories"),
        ("GET", "/v1/categories/{slug}"),
        ("GET", "/v1/listings"),
        ("POST", "/v1/listings"),
        ("GET", "/v1/listings/{id}"),
        ("PATCH", "/v1/listings/{id}"),
        ("DELETE", "/v1/listings/{id}"),
        ("POST", "/v1/listings/{id}/publish"),
        ("POST", "/v1/listings/{id}/close"),
        ("GET", "/v1/vendor/listings"),
        ("GET", "/v1/moderation/listings"),
        ("POST", "/v1/moderation/listings/{id}/approve"),
        ("POST", "/v1/moderation/listings/{id}/reject"),
        ("POST", "/v1/moderation/listings/{id}/remove"),
    },
    "billing": {
        ("GET", "/v1/plans"),
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/vendor/subscription"),
        ("GET", "/v1/subscriptions/{id}"),
        ("POST", "/v1/subscriptions/{id}/cancel"),
        ("POST", "/v1/subscriptions/{id}/resume"),
        ("POST", "/v1/subscriptions/{id}/pause"),
        ("POST", "/v1/subscriptions/{id}/change-plan"),
        ("PUT", "/v1/subscriptions/{id}/payment-method"),
        ("GET", "/v1/invoices"),
        ("GET", "/v1/invoices/{id}"),
        ("POST", "/v1/webhooks/sandbox"),
        ("POST", "/v1/webhooks/stripe"),
        ("GET", "/v1/admin/subscriptions"),
        ("POST", "/v1/admin/subscriptions/{id}/comp"),
        ("GET", "/v1/admin/ledger/trial-balance"),
        ("POST", "/v1/payments/{intentId}/confirm"),
        ("GET", "/v1/vendor/balance"),
        ("GET", "/v1/vendor/payouts"),
        ("POST", "/v1/vendor/payout-account"),
        ("GET", "/v1/vendor/payout-account"),
        ("POST", "/v1/admin/refunds"),
    },
    "orders": {
        ("GET", "/v1/orders"),
        ("POST", "/v1/orders"),
        ("GET", "/v1/orders/{id}"),
        ("POST", "/v1/orders/{id}/cancel"),
        ("POST", "/v1/orders/{id}/ship"),
        ("POST", "/v1/orders/{id}/deliver"),
        ("POST", "/v1/orders/{id}/receive"),
        ("POST", "/v1/orders/{id}/disputes"),
        ("GET", "/v1/disputes/{id}"),
        ("POST", "/v1/disputes/{id}/evidence"),
        ("POST", "/v1/disputes/{id}/withdraw"),
        ("GET", "/v1/moderation/disputes"),
        ("POST", "/v1/moderation/disputes/{id}/resolve"),
        ("POST", "/v1/orders/{id}/reviews"),
        ("GET", "/v1/orders/{id}/reviews"),
        ("POST", "/v1/reviews/{id}/reply"),
        ("POST", "/v1/moderation/reviews/{id}/remove"),
        ("GET", "/v1/vendors/{id}/reviews"),
    },
    "messaging": {
        ("GET", "/v1/conversations"),
        ("POST", "/v1/conversations"),
        ("GET", "/v1/conversations/{id}"),
        ("GET", "/v1/conversations/{id}/messages"),
        ("POST", "/v1/conversations/{id}/messages"),
        ("POST", "/v1/conversations/{id}/read"),
        ("DELETE", "/v1/conversations/{id}/messages/{messageId}"),
        ("POST", "/v1/conversations/{id}/reports"),
        ("GET", "/v1/blocks"),
        ("POST", "/v1/blocks"),
        ("DELETE", "/v1/blocks/{userId}"),
        ("GET", "/v1/moderation/reports"),
        ("POST", "/v1/moderation/reports/{id}/resolve"),
        ("GET", "/v1/moderation/conversations"),
        ("GET", "/v1/moderation/conversations/{id}"),
        ("GET", "/v1/moderation/audit-log"),
        ("GET", "/v1/notifications"),
        ("POST", "/v1/notifications/read"),
        ("GET", "/v1/notifications/preferences"),
        ("PUT", "/v1/notifications/preferences"),
        ("GET", "/v1/notifications/unsubscribe/{token}"),
        ("POST", "/v1/notifications/unsubscribe/{token}"),
        ("GET", "/v1/events/stream"),
    },
}
EXPECTED_ROUTES = [
    ("/v1/auth/", "identity", True),
    ("/v1/auth/password-change", "identity", False),
    ("/v1/auth/mfa/totp", "identity", False),
    ("/v1/auth/verify-email/resend", "identity", False),
    ("/.well-known/", "identity", True),
    ("/v1/admin/users", "identity", False),
    ("/v1/admin/audit-log", "identity", False),
    ("/v1/users", "identity", False),
    ("/v1/sessions", "identity", False),
    ("/v1/categories", "listings", True),
    ("/v1/listings", "listings", True),
    ("/v1/vendor/listings", "listings", False),
    ("/v1/moderation/listings", "listings", False),
    ("/v1/plans", "billing", True),
    ("/v1/subscriptions", "billing", False),
    ("/v1/vendor/subscription", "billing", False),
    ("/v1/invoices", "billing", False),
    ("/v1/vendor/balance", "billing", False),
    ("/v1/vendor/payouts", "billing", False),
    ("/v1/vendor/payout-account", "billing", False),
    ("/v1/payments/", "billing", False),
    ("/v1/webhooks/", "billing", True),
    ("/v1/admin/subscriptions", "billing", False),
    ("/v1/admin/ledger", "billing", False),
    ("/v1/admin/refunds", "billing", False),
    ("/v1/orders", "orders", False),
    ("/v1/disputes", "orders", False),
    ("/v1/moderation/disputes", "orders", False),
    ("/v1/reviews", "orders", False),
    ("/v1/moderation/reviews", "orders", False),
    ("/v1/vendors/", "orders", True),
    ("/v1/conversations", "messaging", False),
    ("/v1/blocks", "messaging", False),
    ("/v1/moderation/reports", "messaging", False),
    ("/v1/moderation/conversations", "messaging", False),
    ("/v1/moderation/audit-log", "messaging", False),
    ("/v1/notifications", "messaging", False),
    ("/v1/notifications/unsubscribe", "messaging", True),
    ("/v1/events/stream", "messaging", False),
]
SHARED_SCHEMAS = ["Problem", "ValidationProblem", "FieldError", "Liveness", "Readiness", "CheckResult"]
PROBLEM_TYPE_PREFIX = "https://marketplace.example/problems/"


@pytest.fixture(scope="module")
def registry() -> ContractRegistry:
    return ContractRegistry(SERVICES_DIR)


def _documents():
    return [
        pytest.param(service, SERVICES_DIR / directory / "openapi.yaml", id=service)
        for service, directory in SERVICE_DIRECTORIES.items()
    ]


def _walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, path + (index,))


@pytest.mark.parametrize("service,path", _documents())
def test_document_is_valid_openapi_3_1(service, path):
    spec = yaml.safe_load(path.read_text())
    assert spec["openapi"] == "3.1.0"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in OpenAPIV31SpecValidator(spec).iter_errors()]
    assert not errors, f"{path} is not valid OpenAPI 3.1:\n" + "\n".join(errors)


@pytest.mark.parametrize("service,path", _documents())
def test_document_is_self_contained(service, path):
    document = OpenApiDocument(service, path)
    for location, node in _walk(document.spec):
        if isinstance(node, dict) and "$ref" in node:
            assert node["$ref"].startswith("#/"), f"{path}: non-local $ref at {location}: {node['$ref']}"
            document.resolve(node)  # raises on a dangling reference


@pytest.mark.parametrize("service,path", _documents())
def test_document_describes_exactly_the_agreed_endpoints(service, path):
    document = OpenApiDocument(service, path)
    found = {(op.method, op.template) for op in document.operations}
    assert found == EXPECTED_OPERATIONS[service] | OPERATIONAL


@pytest.mark.parametrize("service,path", _documents())
def test_operational_endpoints(service, path):
    document = OpenApiDocument(service, path)
    ops = {(op.method, op.template): op for op in document.operations}
    assert set(ops[("GET", "/health/live")].spec["responses"]) == {"200"}
    assert set(ops[("GET", "/health/ready")].spec["responses"]) == {"200", "503"}
    assert set(ops[("GET", "/metrics")].spec["responses"]) == {"200"}
    metrics = document.resolve(ops[("GET", "/metrics")].spec["responses"]["200"])
    assert set(metrics["content"]) == {"text/plain"}
    checks = document.resolve(document.spec["components"]["schemas"]["ReadinessChecks"])
    expected_checks = {"jwks"} if service == "gateway" else {"postgres", "migrations", "kafka"}
    if service == "listings":
        expected_checks |= {"search"}  # the search read model has loaded
    assert set(checks["required"]) == expected_checks
    # The gateway's `revocations` check exists only when Kafka is configured.
    optional_checks = {"revocations"} if service == "gateway" else set()
    names = set(checks["propertyNames"]["enum"]) if "propertyNames" in checks else set(checks["properties"])
    assert names == expected_checks | optional_checks
    for key in OPERATIONAL:
        op = ops[key]
        assert not op.spec.get("security"), f"{service} {op.method} {op.template} must be public"


@pytest.mark.parametrize("service,path", _documents())
def test_every_response_is_fully_described(service, path):
    document = OpenApiDocument(service, path)
    operation_ids = set()
    for op in document.operations:
        where = f"{service} {op.method} {op.template}"
        assert op.spec.get("operationId"), f"{where}: operationId missing"
        assert op.spec["operationId"] not in operation_ids, f"{where}: duplicate operationId"
        operation_ids.add(op.spec["operationId"])
        responses = op.spec.get("responses") or {}
        assert responses, f"{where}: no responses"
        for status, response in responses.items():
            assert str(status).isdigit() and len(str(status)) == 3, f"{where}: status {status!r}: use exact codes"
            response = document.resolve(response)
            headers = {name: document.resolve(h) for name, h in (response.get("headers") or {}).items()}
            assert headers.get("X-Request-Id", {}).get("required") is True, f"{where} {status}: X-Request-Id"
            content = response.get("content") or {}
            if status in ("204", "304"):
                assert not content, f"{where} {status}: a {status} has no body"
                continue
            assert content, f"{where} {status}: no content"
            if int(status) >= 400 and op.template not in ("/health/ready",):
                assert set(content) == {"application/problem+json"}, f"{where} {status}: errors are problem+json"
                schema = content["application/problem+json"]["schema"]
                refs = [schema.get("$ref")] + [part.get("$ref") for part in schema.get("allOf", [])]
                expected = "#/components/schemas/ValidationProblem" if status == "422" else "#/components/schemas/Problem"
                assert expected in refs, f"{where} {status}: must use {expected}"
                if status != "422":
                    overlay = next(p for p in schema["allOf"] if "$ref" not in p)["properties"]
                    assert overlay["status"]["const"] == int(status)
                    # One problem type, or (one status, several causes) an enum of them.
                    types = [overlay["type"]["const"]] if "const" in overlay["type"] else overlay["type"]["enum"]
                    assert types and all(t.startswith(PROBLEM_TYPE_PREFIX) for t in types)


@pytest.mark.parametrize("service,path", _documents())
def test_protected_operations_document_401_with_bearer(service, path):
    document = OpenApiDocument(service, path)
    schemes = document.spec.get("components", {}).get("securitySchemes", {})
    for op in document.operations:
        if not op.protected:
            continue
        assert op.spec["security"] == [{"bearerAuth": []}]
        scheme = schemes["bearerAuth"]
        assert (scheme["type"], scheme["scheme"], scheme.get("bearerFormat")) == ("http", "bearer", "JWT")
        unauthorized = document.resolve(op.spec["responses"]["401"])
        assert document.resolve(unauthorized["headers"]["WWW-Authenticate"])["required"] is True


@pytest.mark.parametrize("service,path", _documents())
def test_request_bodies_document_400_and_422(service, path):
    document = OpenApiDocument(service, path)
    for op in document.operations:
        if "requestBody" in op.spec:
            assert {"400", "422"} <= set(op.spec["responses"]), f"{service} {op.method} {op.template}"


@pytest.mark.parametrize("service,path", _documents())
def test_paginated_operations(service, path):
    document = OpenApiDocument(service, path)
    for op in document.operations:
        parameters = [document.resolve(p) for p in op.spec.get("parameters", [])]
        parameters = [p for p in parameters if p.get("in") == "query"]
        names = {p["name"] for p in parameters}
        if not names:
            continue
        where = f"{service} {op.method} {op.template}"
        # A list takes `limit` and `cursor`, plus filters of its own.
        assert {"limit", "cursor"} <= names, where
        limit = next(p for p in parameters if p["name"] == "limit")
        assert limit["in"] == "query" and limit["schema"] == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
        # A bad limit or cursor is a 422 naming it; nothing about a list query is a 400.
        assert "422" in op.spec["responses"] and "400" not in op.spec["responses"], where
        page = document.resolve(document.resolve(op.spec["responses"]["200"])["content"]["application/json"]["schema"])
        assert {"items", "nextCursor"} <= set(page["required"]), where  # search adds facets and a total


@pytest.mark.parametrize("service,path", _documents())
def test_response_schemas_are_closed(service, path):
    document = OpenApiDocument(service, path)
    for name, schema in document.spec["components"]["schemas"].items():
        if name.endswith("Request") or "properties" not in schema:
            continue
        assert schema.get("additionalProperties") is False, f"{service} {name}: additionalProperties: false"
        assert schema.get("required"), f"{service} {name}: required list"


def test_shared_components_are_identical_everywhere():
    documents = {s: OpenApiDocument(s, p) for s, p in ((p.values[0], p.values[1]) for p in _documents())}
    reference = documents["identity"].spec["components"]
    for service, document in documents.items():
        components = document.spec["components"]
        for name in SHARED_SCHEMAS:
            assert components["schemas"][name] == reference["schemas"][name], f"{service}: schema {name} differs"
        for kind in ("headers", "parameters", "securitySchemes"):
            for name, value in components.get(kind, {}).items():
                if name in reference.get(kind, {}):
                    assert value == reference[kind][name], f"{service}: {kind} {name} differs"
        for name, value in components.get("responses", {}).items():
            for other_service, other in documents.items():
                other_value = other.spec["components"].get("responses", {}).get(name)
                if other_value is not None:
                    strip = lambda r: {k: v for k, v in copy.deepcopy(r).items() if k != "description"}
                    assert strip(value) == strip(other_value), f"response {name}: {service} vs {other_service}"


def test_gateway_route_table_matches_the_agreement(registry):
    routes = [(r["prefix"], r["upstream"], r["public"]) for r in registry.routes]
    assert routes == EXPECTED_ROUTES


def test_route_table_agrees_with_each_services_security(registry):
    for service in SERVICE_DIRECTORIES:
        if service == "gateway":
            continue
        for op in registry.operations(service):
            if (op.method, op.template) in OPERATIONAL:
                continue
            route = registry.route_for(op.template)
            assert route is not None, f"{service} {op.template}: not reachable through the gateway"
            assert route["upstream"] == service, f"{op.template}: routed to {route['upstream']}"
            if route.get("token") == "optional":
                continue  # public reads and signed-in writes share the prefix; the service's own security decides
            assert op.protected == (not route["public"]), f"{service} {op.template}: security vs route table"


def test_gateway_edge_responses(registry):
    assert sorted(registry.edge_responses) == [400, 401, 403, 404, 405, 408, 413, 429, 431, 502, 503, 504]
    gateway = registry.documents["gateway"]
    responses = gateway.spec["components"]["responses"]
    assert "WWW-Authenticate" in responses[registry.edge_responses[401]]["headers"]
    assert "Allow" in responses[registry.edge_responses[405]]["headers"]
    assert "Retry-After" in responses[registry.edge_responses[429]]["headers"]


def _response_schemas(document: OpenApiDocument):
    """Every JSON schema a response body is validated against, with where it came from."""
    for path, item in document.spec.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                response = document.resolve(response)
                for media, content in (response.get("content") or {}).items():
                    if "json" in media and "schema" in content:
                        yield f"{method.upper()} {path} {status}", content["schema"]


@pytest.mark.parametrize("service,path", _documents())
def test_response_objects_always_carry_every_member(service, path):
    """The suite's one rule for absent values (README, HTTP conventions): a response object has
    every member it declares, `null` when it has no value, never a missing key. So every object
    schema reachable from a response that defines a shape (closed: `additionalProperties: false`)
    lists all of its properties as required. Open schemas are maps or the narrowing branch of
    an `allOf`, whose members are required where the shape is defined."""
    document = OpenApiDocument(service, path)
    problems: set[str] = set()

    def visit(schema, where, seen):
        if isinstance(schema, dict) and "$ref" in schema:
            if schema["$ref"] in seen:
                return
            seen = seen | {schema["$ref"]}
            where = f"{where} → {schema['$ref'].rsplit('/', 1)[-1]}"
            schema = document.resolve(schema)
        if not isinstance(schema, dict):
            return
        properties = schema.get("properties") or {}
        missing = sorted(set(properties) - set(schema.get("required") or []))
        if missing and schema.get("additionalProperties") is False:
            problems.add(f"{where}: {', '.join(missing)} not required")
        for name, child in properties.items():
            visit(child, f"{where}.{name}", seen)
        for keyword in ("items", "additionalProperties"):
            if isinstance(schema.get(keyword), dict):
                visit(schema[keyword], where, seen)
        for keyword in ("oneOf", "anyOf", "allOf"):
            for child in schema.get(keyword) or []:
                visit(child, where, seen)

    for where, schema in _response_schemas(document):
        visit(schema, where, frozenset())
    assert not problems, "\n".join(sorted(problems))
