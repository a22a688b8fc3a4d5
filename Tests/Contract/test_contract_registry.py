"""Unit tests of the contract checker itself, against the real openapi.yaml documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openapi_contract import ContractRegistry, ContractViolation, Exercised

SERVICES_DIR = Path(__file__).resolve().parents[2] / "Services"
USER_ID = "0190f5a4-6a3b-7cc1-9d2e-3f4a5b6c7d8e"
REQUEST_ID = "req-1"
JSON = {"Content-Type": "application/json", "X-Request-Id": REQUEST_ID}
PROBLEM = {"Content-Type": "application/problem+json", "X-Request-Id": REQUEST_ID}


@pytest.fixture()
def registry() -> ContractRegistry:
    return ContractRegistry(SERVICES_DIR)


def body(value) -> bytes:
    return json.dumps(value).encode()


def user(**overrides):
    value = {
        "id": USER_ID,
        "email": "ada@example.com",
        "displayName": "Ada",
        "roles": ["buyer"],
        "status": "active",
        "emailVerified": False,
        "mfaEnabled": False,
        "businessProfile": None,
        "createdAt": "2025-01-02T03:04:05.123456789Z",
    }
    value.update(overrides)
    return value


def problem(slug, status, **extra):
    return {"type": f"https://marketplace.example/problems/{slug}", "title": "t", "status": status,
            "detail": "d", "requestId": REQUEST_ID, **extra}


def test_valid_response_through_gateway_is_matched_to_the_upstream_document(registry):
    match = registry.check("gateway", "GET", "/v1/users/me", 200, JSON, body(user()))
    assert (match.service, match.template, match.status, match.edge) == ("identity", "/v1/users/me", "200", False)
    assert Exercised("identity", "GET", "/v1/users/me", "200") in registry.exercised


def test_direct_response_is_matched_to_the_origin_document(registry):
    match = registry.check("identity", "GET", "/v1/users/me", 200, JSON, body(user()))
    assert match.service == "identity"
    with pytest.raises(ContractViolation, match="documents no GET operation"):
        registry.check("orders", "GET", "/v1/users/me", 200, JSON, body(user()))


@pytest.mark.parametrize(
    "value,message",
    [
        (user(extra="x"), "Additional properties"),
        ({k: v for k, v in user().items() if k != "createdAt"}, "'createdAt' is a required property"),
        (user(id="not-a-uuid"), "is not a 'uuid'"),
        (user(createdAt="2025-01-02 03:04:05"), "is not a 'date-time'"),
        (user(createdAt="2025-13-02T03:04:05Z"), "is not a 'date-time'"),
        (user(email="nobody"), "is not a 'email'"),
        (user(roles=["root"]), "is not one of"),
        (user(status="pending"), "is not one of"),
    ],
)
def test_schema_violations_are_reported(registry, value, message):
    with pytest.raises(ContractViolation, match=message):
        registry.check("gateway", "GET", "/v1/users/me", 200, JSON, body(value))
    assert not registry.exercised


def test_content_type_and_required_headers_are_checked(registry):
    with pytest.raises(ContractViolation, match="Content-Type 'text/html'"):
        registry.check("gateway", "GET", "/v1/users/me", 200, {**JSON, "Content-Type": "text/html"}, body(user()))
    with pytest.raises(ContractViolation, match="required header X-Request-Id is missing"):
        registry.check("gateway", "GET", "/v1/users/me", 200, {"Content-Type": "application/json"}, body(user()))
    with pytest.raises(ContractViolation, match="not valid application/json"):
        registry.check("gateway", "GET", "/v1/users/me", 200, JSON, b"{not json")
    # parameters of the media type are fine
    registry.check("gateway", "GET", "/v1/users/me", 200, {**JSON, "content-type": "application/json; charset=utf-8"}, body(user()))


def test_undocumented_status_is_a_violation(registry):
    with pytest.raises(ContractViolation, match="documents \\['200', '401'\\], not 500"):
        registry.check("identity", "GET", "/v1/users/me", 500, PROBLEM, body(problem("internal", 500, instance="/v1/users/me")))
    with pytest.raises(ContractViolation, match="nor as a gateway edge response"):
        registry.check("gateway", "GET", "/v1/users/me", 500, PROBLEM, body(problem("internal", 500, instance="/v1/users/me")))


def test_gateway_edge_responses(registry):
    # No operation at /v1/listings yet: a 401 there is the gateway's own, with its challenge.
    challenge = {**PROBLEM, "WWW-Authenticate": 'Bearer realm="marketplace"'}
    match = registry.check("gateway", "GET", "/v1/listings", 401, challenge, body(problem("unauthorized", 401, instance="/v1/listings")))
    assert match.edge and registry.edge_exercised == {401}
    with pytest.raises(ContractViolation, match="WWW-Authenticate is missing"):
        registry.check("gateway", "GET", "/v1/listings", 401, PROBLEM, body(problem("unauthorized", 401, instance="/v1/listings")))
    # An upstream failure on a documented operation that does not list 502.
    assert registry.check("gateway", "GET", "/v1/orders", 502, PROBLEM, body(problem("bad-gateway", 502, instance="/v1/orders"))).edge
    with pytest.raises(ContractViolation, match="bad-gateway. was expected"):
        registry.check("gateway", "GET", "/v1/orders", 502, PROBLEM, body(problem("internal", 502, instance="/v1/orders")))
    # Unknown routes can only be answered with an edge response.
    assert registry.check("gateway", "GET", "/nope", 404, PROBLEM, body(problem("not-found", 404, instance="/nope"))).edge
    with pytest.raises(ContractViolation, match="no gateway route"):
        registry.check("gateway", "GET", "/nope", 200, JSON, body({}))
    with pytest.raises(ContractViolation, match="Retry-After is missing"):
        registry.check("gateway", "GET", "/v1/orders", 429, PROBLEM, body(problem("rate-limited", 429, instance="/v1/orders")))
    registry.check("gateway", "GET", "/v1/orders", 429, {**PROBLEM, "Retry-After": "3"}, body(problem("rate-limited", 429, instance="/v1/orders")))
    # An operation that documents its own 429 also takes the gateway's: the same status, either type.
    match = registry.check("gateway", "POST", "/v1/auth/login", 429, {**PROBLEM, "Retry-After": "3"},
                           body(problem("rate-limited", 429, instance="/v1/auth/login")))
    assert not match.edge and match.service == "identity"
    assert registry.edge_exercised == {401, 404, 429, 502}


def test_documented_status_wins_over_the_edge_response(registry):
    # /v1/orders documents its own 401: that response, not the gateway's, is the one recorded.
    challenge = {**PROBLEM, "WWW-Authenticate": "Bearer"}
    match = registry.check("gateway", "GET", "/v1/orders?limit=5", 401, challenge, body(problem("unauthorized", 401, instance="/v1/orders")))
    assert not match.edge and match.service == "orders"
    assert Exercised("orders", "GET", "/v1/orders", "401") in registry.exercised


def test_problem_consistency_checks(registry):
    with pytest.raises(ContractViolation):
        registry.check("gateway", "POST", "/v1/auth/register", 409, PROBLEM, body(problem("conflict", 400, instance="/v1/auth/register")))
    with pytest.raises(ContractViolation, match="requestId"):
        registry.check("gateway", "POST", "/v1/auth/register", 409, PROBLEM, body(problem("conflict", 409, requestId="other", instance="/v1/auth/register")))
    with pytest.raises(ContractViolation, match="instance"):
        registry.check("gateway", "POST", "/v1/auth/register", 409, PROBLEM, body(problem("conflict", 409, instance="/x")))
    registry.check("gateway", "POST", "/v1/auth/register", 409, PROBLEM,
                   body(problem("email-taken", 409, instance="/v1/auth/register", requestId=REQUEST_ID, detail="taken")))
    with pytest.raises(ContractViolation, match="Additional properties"):
        registry.check("gateway", "POST", "/v1/auth/register", 409, PROBLEM,
                       body(problem("conflict", 409, errors=[{"field": "email", "message": "taken"}], instance="/v1/auth/register")))


def test_validation_problem_requires_field_errors(registry):
    with pytest.raises(ContractViolation, match="'errors' is a required property"):
        registry.check("gateway", "POST", "/v1/auth/register", 422, PROBLEM, body(problem("validation-failed", 422, instance="/v1/auth/register")))
    with pytest.raises(ContractViolation, match="should be non-empty|is too short"):
        registry.check("gateway", "POST", "/v1/auth/register", 422, PROBLEM, body(problem("validation-failed", 422, errors=[], instance="/v1/auth/register")))
    registry.check("gateway", "POST", "/v1/auth/register", 422, PROBLEM,
                   body(problem("validation-failed", 422, errors=[{"field": "email", "message": "invalid"}], instance="/v1/auth/register")))


def test_readiness_bodies(registry):
    ok = {"status": "ready", "checks": {"postgres": "ok", "migrations": "ok", "kafka": "ok"}}
    registry.check("orders", "GET", "/health/ready", 200, JSON, body(ok))
    failing = {"status": "not_ready", "checks": {"postgres": "fail", "migrations": "fail", "kafka": "ok"}}
    registry.check("orders", "GET", "/health/ready", 503, JSON, body(failing))
    with pytest.raises(ContractViolation):
        registry.check("orders", "GET", "/health/ready", 200, JSON, body({**ok, "checks": failing["checks"]}))
    with pytest.raises(ContractViolation):
        registry.check("orders", "GET", "/health/ready", 503, JSON, body({"status": "not_ready", "checks": ok["checks"]}))
    with pytest.raises(ContractViolation, match="Additional properties"):
        registry.check("orders", "GET", "/health/ready", 200, JSON, body({**ok, "checks": {**ok["checks"], "jwks": "ok"}}))
    registry.check("gateway", "GET", "/health/ready", 503, JSON, body({"status": "not_ready", "checks": {"jwks": "fail"}}))
    registry.check("gateway", "GET", "/metrics", 200,
                   {"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "X-Request-Id": "r"}, b"# TYPE x counter\nx 1\n")


def test_pages(registry):
    page = {"items": [], "nextCursor": None}
    registry.check("gateway", "GET", "/v1/orders", 200, JSON, body(page))
    registry.check("gateway", "GET", "/v1/conversations", 200, JSON, body({"items": [], "nextCursor": "abc"}))
    conversation = {"id": USER_ID, "buyerId": USER_ID, "vendorId": USER_ID, "listingId": None, "orderId": None, "title": "Collie pups",
                    "orderStatus": None, "otherParty": {"id": USER_ID, "displayName": "Ann"}, "unreadCount": 2,
                    "contactDetailsShared": False, "lastMessageAt": None, "lastActivityAt": "2025-01-02T03:04:05+02:00",
                    "createdAt": "2025-01-02T03:04:05+02:00"}
    registry.check("gateway", "GET", "/v1/conversations", 200, JSON, body({"items": [conversation], "nextCursor": None}))
    with pytest.raises(ContractViolation, match="'nextCursor' is a required property"):
        registry.check("gateway", "GET", "/v1/orders", 200, JSON, body({"items": []}))
    with pytest.raises(ContractViolation, match="is not of type 'null'"):
        registry.check("gateway", "GET", "/v1/categories", 200, JSON, body({"items": [], "nextCursor": "x"}))
    plan = {"id": USER_ID, "code": "basic", "name": "Basic", "description": "", "price": {"amount": 990, "currency": "EUR"},
            "interval": "month", "trialDays": 14, "listingQuota": 10, "commissionBps": 800}
    registry.check("gateway", "GET", "/v1/plans", 200, JSON, body({"items": [plan], "nextCursor": None}))
    with pytest.raises(ContractViolation, match="is not of type 'integer'"):
        registry.check("gateway", "GET", "/v1/plans", 200, JSON,
                       body({"items": [{**plan, "price": {"amount": 9.9, "currency": "EUR"}}], "nextCursor": None}))


def test_route_table(registry):
    assert registry.route_for("/v1/users/me")["upstream"] == "identity"
    assert registry.route_for("/v1/users")["upstream"] == "identity"
    assert registry.route_for("/v1/usersX") is None
    assert registry.route_for("/v1/auth") is None
    assert registry.route_for("/.well-known/jwks.json")["upstream"] == "identity"
    assert registry.route_for("/v1/orders/123")["upstream"] == "orders"


def test_coverage_accounting(registry):
    documented = registry.documented()
    assert Exercised("gateway", "GET", "/health/ready", "503") in documented
    assert Exercised("identity", "POST", "/v1/auth/register", "409") in documented
    assert registry.unexercised() == sorted(documented)
    registry.check("gateway", "GET", "/v1/users/me", 200, JSON, body(user()))
    assert Exercised("identity", "GET", "/v1/users/me", "200") not in registry.unexercised()
    assert len(registry.unexercised()) == len(documented) - 1
