"""Bad input gets a precise problem answer, never a 500 (any undocumented status fails the
contract check inside the client)."""

from __future__ import annotations

import socket
import uuid

import pytest

from e2e_support import PASSWORD, unique_email, wait_until

MIB = 1024 * 1024


def field_names(problem: dict) -> set[str]:
    return {error["field"] for error in problem.get("errors", [])}


def valid_registration(**overrides) -> dict:
    body = {"email": unique_email("input"), "password": PASSWORD, "displayName": "Input Tester", "role": "buyer"}
    body.update(overrides)
    return body


# ------------------------------------------------------------------------ malformed JSON -> 400


@pytest.mark.parametrize("path", ["/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/verify-email",
                                  "/v1/auth/password-reset", "/v1/auth/password-reset/confirm", "/v1/auth/mfa/verify"])
@pytest.mark.parametrize("payload", [b'{"email": ', b"not json at all", b"{'email': 'a@b.c'}"], ids=["truncated", "text", "single-quotes"])
def test_malformed_json_is_400(gateway, path, payload):
    response = gateway.post(path, body=payload, headers={"Content-Type": "application/json"})
    response.expect_problem(400, "malformed-request")


# ------------------------------------------------------------------------ invalid fields -> 422


def test_register_without_fields_names_every_missing_field(gateway):
    problem = gateway.post("/v1/auth/register", json={}).expect_problem(422, "validation-failed")
    assert {"email", "password", "displayName", "role"} <= field_names(problem), problem


@pytest.mark.parametrize(
    "field,value",
    [
        ("email", "not-an-email"),
        ("email", 12345),
        ("password", "x" * 11),
        ("password", "x" * 129),
        ("displayName", ""),
        ("displayName", "x" * 101),
        ("role", "admin"),
        ("role", "moderator"),
        ("role", None),
    ],
    ids=lambda v: repr(v)[:20],
)
def test_register_with_an_invalid_field_names_that_field(gateway, field, value):
    problem = gateway.post("/v1/auth/register", json=valid_registration(**{field: value})).expect_problem(
        422, "validation-failed"
    )
    assert field in field_names(problem), f"{field}={value!r}: errors name {field_names(problem)}"


def test_register_accepts_the_boundaries(gateway):
    # Not repeated or sequential characters: those are refused whatever their length.
    shortest = valid_registration(password="horse batt3r", displayName="x" * 100)
    gateway.post("/v1/auth/register", json=shortest).expect(201)
    longest = valid_registration(password=("horse battery staple " * 7)[:128], displayName="x", role="vendor",
                                 businessProfile={"businessName": "b" * 200, "licenceNumber": "L" * 100,
                                                  "location": {"city": "c" * 100, "region": "r" * 100, "country": "ie"}})
    vendor = gateway.post("/v1/auth/register", json=longest).expect(201).json()
    assert vendor["businessProfile"]["location"] == {"city": "c" * 100, "region": "r" * 100, "country": "IE"}


def test_vendors_must_describe_their_business(gateway):
    problem = gateway.post("/v1/auth/register", json=valid_registration(role="vendor")).expect_problem(422, "validation-failed")
    assert field_names(problem) == {"businessProfile"}, problem
    partial = valid_registration(role="vendor", businessProfile={"businessName": "", "location": {"country": "Narnia"}})
    problem = gateway.post("/v1/auth/register", json=partial).expect_problem(422, "validation-failed")
    assert field_names(problem) == {"businessProfile.businessName", "businessProfile.location.city",
                                    "businessProfile.location.country"}, problem
    buyer_shop = valid_registration(businessProfile={"businessName": "Shop", "location": {"city": "York", "country": "GB"}})
    problem = gateway.post("/v1/auth/register", json=buyer_shop).expect_problem(422, "validation-failed")
    assert field_names(problem) == {"businessProfile"}, problem


def test_login_without_fields_names_every_missing_field(gateway):
    problem = gateway.post("/v1/auth/login", json={}).expect_problem(422, "validation-failed")
    assert {"email", "password"} <= field_names(problem), problem


def test_refresh_without_token_names_the_field(gateway):
    problem = gateway.post("/v1/auth/refresh", json={}).expect_problem(422, "validation-failed")
    assert "refreshToken" in field_names(problem), problem


@pytest.mark.parametrize(
    "payload",
    [b"[]", b"null", b'"text"', b"42", b"{}", b'{"email": {"nested": true}}', b'{"email": ["a@b.c"]}',
     b'{"password": 1e999}', b'{"displayName": 12}'],
)
def test_odd_json_is_a_client_error(gateway, payload):
    response = gateway.post("/v1/auth/register", body=payload, headers={"Content-Type": "application/json"})
    response.expect_problem((400, 422))


@pytest.mark.parametrize("field", ["displayName", "email", "password"])
def test_nul_characters_do_not_break_storage(gateway, field):
    value = {"displayName": "nul\u0000name", "email": "nul\u0000" + unique_email("nul"), "password": PASSWORD + "\u0000"}[field]
    response = gateway.post("/v1/auth/register", json=valid_registration(**{field: value}))
    response.expect(201, 422)


# ------------------------------------------------------------------------ conflicts, routes, sizes


def test_duplicate_email_is_409(gateway, buyer):
    again = valid_registration(email=buyer.email)
    gateway.post("/v1/auth/register", json=again).expect_problem(409, "email-taken")


@pytest.mark.parametrize("method,path", [("GET", "/v1/does-not-exist"), ("GET", "/nope"), ("POST", "/v1/nope"),
                                         ("GET", "/v1/auth/does-not-exist"), ("GET", "/.well-known/nothing-here")])
def test_unknown_route_is_404_problem(gateway, method, path):
    gateway.request(method, path).expect_problem(404, "not-found")


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/conversations"])
@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc"])
def test_bad_limit_is_422_naming_limit(gateway, buyer, path, limit):
    problem = gateway.get(path, token=buyer.access_token, query={"limit": limit}).expect_problem(422, "validation-failed")
    assert "limit" in field_names(problem), problem


@pytest.mark.parametrize("path", ["/v1/orders", "/v1/conversations"])
def test_bad_cursor_is_422_naming_cursor(gateway, buyer, path):
    # The last is base64url of "-9223372036854775808:<uuid>": a time no database driver can bind.
    for cursor in ("not-a-cursor", "%%%", "eyJ0b3RhbGx5IjoiYm9ndXMifQ",
                   "LTkyMjMzNzIwMzY4NTQ3NzU4MDg6MDE5MmYxYTAtMDAwMC03MDAwLTgwMDAtMDAwMDAwMDAwMDAx"):
        problem = gateway.get(path, token=buyer.access_token, query={"cursor": cursor}).expect_problem(422, "validation-failed")
        assert field_names(problem) == {"cursor"}, problem


def test_body_over_the_limit_is_413(gateway):
    big = b'{"email": "big@example.com", "password": "' + b"p" * (2 * MIB) + b'", "displayName": "x", "role": "buyer"}'
    response = gateway.post("/v1/auth/register", body=big, headers={"Content-Type": "application/json"}, timeout=10)
    response.expect_problem(413, "payload-too-large")


def test_chunked_body_over_the_limit_is_413(gateway):
    def chunks():
        yield b'{"email": "big@example.com", "password": "'
        for _ in range(32):
            yield b"p" * (64 * 1024)
        yield b'", "displayName": "x", "role": "buyer"}'

    response = gateway.post("/v1/auth/register", body=chunks(), headers={"Content-Type": "application/json"}, timeout=10)
    response.expect_problem(413, "payload-too-large")


def test_common_and_personal_passwords_are_refused_by_field(gateway):
    email = unique_email("guard")
    for password in ("Password1234", "123456789012", email.split("@")[0] + "!!"):  # common, sequential, own email
        body = {"email": email, "password": password, "displayName": "Guard", "role": "buyer"}
        problem = gateway.post("/v1/auth/register", json=body).expect_problem(422, "validation-failed")
        assert [error["field"] for error in problem["errors"]] == ["password"], (password, problem)


def test_a_path_carrying_an_encoded_separator_is_refused_at_the_edge(gateway, buyer):
    # `%2F` inside a path parameter could otherwise reach another route behind a public prefix.
    gateway.delete("/v1/sessions/a%2F..%2Fb", token=buyer.access_token).expect_problem(400, "malformed-request")


@pytest.mark.parametrize("method,path,allow", [
    ("PUT", "/v1/users/me", "DELETE, GET, HEAD"),      # a service's resource, through the gateway
    ("DELETE", "/v1/plans", "GET, HEAD"),
    ("TRACE", "/docs", "GET, HEAD"),                     # the gateway's own
    ("POST", "/openapi.json", "GET, HEAD"),
])
def test_a_known_path_asked_with_another_method_is_405_naming_what_it_takes(gateway, buyer, method, path, allow):
    response = gateway.request(method, path, token=buyer.access_token)
    response.expect_problem(405, "method-not-allowed")
    assert response.header("allow") == allow


def test_a_body_cut_short_is_the_callers_fault_not_a_service_error(suite, direct):
    """A caller (or the gateway giving up on a slow or oversized upload) closing mid-body gets a 400 if
    anyone is still listening; the service logs it quietly and keeps serving."""
    request_id = uuid.uuid4().hex
    with socket.create_connection(("127.0.0.1", suite.ports["identity"]), timeout=5) as connection:
        connection.sendall(b"POST /v1/auth/register HTTP/1.1\r\nHost: identity\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 200\r\nX-Request-Id: " + request_id.encode() + b"\r\n\r\n" + b'{"email": "cut')
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    direct["identity"].get("/health/ready").expect(200)

    def logged() -> list[str]:
        return [line for line in (suite.log_dir / "identity.log").read_text(errors="replace").splitlines() if request_id in line]

    wait_until(logged, timeout=5, describe="the request in identity's log (written asynchronously)")
    assert all('"level":"info"' in line for line in logged()), logged()
