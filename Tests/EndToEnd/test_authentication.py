"""Protected routes refuse every request without a valid access token, at the gateway and
again at each service reached directly."""

from __future__ import annotations

import pytest

from e2e_support import forged_tokens

# Every protected prefix of the gateway's route table (x-routes with public: false).
GATEWAY_PROTECTED = ["/v1/users/me", "/v1/sessions", "/v1/vendor/listings", "/v1/moderation/listings", "/v1/subscriptions",
                     "/v1/orders", "/v1/conversations"]
# The documented protected operations, per service, for direct calls.
DIRECT_PROTECTED = [("identity", "/v1/users/me"), ("identity", "/v1/sessions"), ("orders", "/v1/orders"), ("messaging", "/v1/conversations")]


@pytest.fixture(scope="module")
def bad_credentials(buyer, vendor, jwks) -> dict[str, dict[str, str]]:
    """Authorization headers that must all be refused (name -> headers)."""
    tokens = forged_tokens(buyer.access_token, jwks, other_user_id=vendor.id)
    headers = {"no-authorization": {}}
    headers["empty-bearer"] = {"Authorization": "Bearer "}
    headers["basic-scheme"] = {"Authorization": "Basic ZTJlOmUyZQ=="}
    headers["token-without-scheme"] = {"Authorization": buyer.access_token}
    headers["refresh-token-as-access-token"] = {"Authorization": f"Bearer {buyer.tokens['refreshToken']}"}
    for name, token in tokens.items():
        headers[name] = {"Authorization": f"Bearer {token}"}
    return headers


def assert_refused(response, label: str) -> None:
    assert response.status == 401, f"{label}: expected 401: {response.describe()}"
    response.expect_problem(401, "unauthorized")
    challenge = response.header("www-authenticate") or ""
    assert challenge.startswith("Bearer"), f"{label}: WWW-Authenticate {challenge!r}"


@pytest.mark.parametrize("path", GATEWAY_PROTECTED)
def test_gateway_refuses_requests_without_a_valid_token(gateway, bad_credentials, path):
    for label, headers in bad_credentials.items():
        assert_refused(gateway.get(path, headers=headers), f"{path} with {label}")


def test_an_optional_token_is_still_verified(gateway, bad_credentials):
    """/v1/listings is public to read, but a token that is sent must be good: a bad one is never
    quietly treated as anonymous."""
    for label, headers in bad_credentials.items():
        answer = gateway.get("/v1/listings", headers=headers)
        if label == "no-authorization":
            answer.expect(200)
        else:
            assert_refused(answer, f"/v1/listings with {label}")


@pytest.mark.parametrize("service,path", DIRECT_PROTECTED)
def test_services_verify_the_token_themselves(direct, bad_credentials, buyer, service, path):
    api = direct[service]
    for label, headers in bad_credentials.items():
        assert_refused(api.get(path, headers=headers), f"{service} {path} with {label}")
    # ...and a header claiming an identity is no substitute for a token.
    spoofed = {"X-User-Id": buyer.id, "X-User-Roles": "admin", "X-Internal-User-Id": buyer.id}
    assert_refused(api.get(path, headers=spoofed), f"{service} {path} with spoofed identity headers")
    # The real token works directly too (the service is not relying on the gateway).
    api.get(path, token=buyer.access_token).expect(200)


def test_valid_token_is_accepted_on_every_documented_protected_route(gateway, buyer):
    for path in ("/v1/users/me", "/v1/orders", "/v1/conversations"):
        gateway.get(path, token=buyer.access_token).expect(200)


def test_an_access_token_is_not_a_refresh_token(gateway, buyer):
    gateway.post("/v1/auth/refresh", json={"refreshToken": buyer.access_token}).expect_problem(401, "invalid-refresh-token")
