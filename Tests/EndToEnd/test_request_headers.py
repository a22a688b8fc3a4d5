"""X-Request-Id on every answer; client-sent internal headers change nothing."""

from __future__ import annotations

SPOOFED_IDENTITY_HEADERS = {
    "X-User-Id": "",  # filled with the other user's id
    "X-User-Roles": "admin",
    "X-User-Email": "",
    "X-Internal-User-Id": "",
    "X-Internal-Roles": "admin",
    "X-Internal-Token": "trusted",
    "X-Authenticated-User": "",
    "X-Forwarded-User": "",
    "X-Auth-Subject": "",
}


def spoofed_headers(victim) -> dict[str, str]:
    return {
        name: (value or (victim.email if "Email" in name else victim.id))
        for name, value in SPOOFED_IDENTITY_HEADERS.items()
    }


def test_every_answer_carries_its_own_request_id(gateway, buyer):
    responses = [
        gateway.get("/health/live"),
        gateway.get("/v1/categories"),
        gateway.get("/v1/users/me", token=buyer.access_token),
        gateway.get("/v1/users/me"),
        gateway.get("/v1/no-such-route"),
        gateway.post("/v1/auth/login", json={}),
    ]
    ids = [r.header("x-request-id") for r in responses]
    assert all(ids), [r.describe() for r in responses if not r.header("x-request-id")]
    assert len(set(ids)) == len(ids), f"request ids repeat: {ids}"


def test_the_gateway_does_not_adopt_a_client_request_id(gateway):
    client_value = "client-chosen-request-id-0001"
    for path in ("/v1/categories", "/v1/no-such-route"):
        response = gateway.get(path, headers={"X-Request-Id": client_value})
        assert response.header("x-request-id") not in (None, client_value), response.describe()


def test_client_sent_internal_headers_do_not_change_the_caller(gateway, buyer, vendor):
    me = gateway.get("/v1/users/me", token=buyer.access_token, headers=spoofed_headers(vendor)).expect(200).json()
    assert me["id"] == buyer.id, f"the caller became {me['id']} ({me['email']}) instead of {buyer.id}"
    assert me["roles"] == ["buyer"]


def test_internal_headers_are_no_substitute_for_a_token(gateway, vendor):
    for path in ("/v1/users/me", "/v1/orders", "/v1/conversations"):
        gateway.get(path, headers=spoofed_headers(vendor)).expect_problem(401, "unauthorized")


def _access_log_line(suite, request_id: str) -> dict:
    """The gateway's access log line for `request_id` (log lines are JSON: stdout is a file)."""
    import json

    from e2e_support import wait_until

    found: dict = {}

    def logged() -> bool:
        for line in (suite.log_dir / "gateway.log").read_text(errors="replace").splitlines():
            if request_id in line and '"message":"request"' in line:
                found.update(json.loads(line))
                return True
        return False

    # Lines below warning are written within 50 ms by the log writer.
    wait_until(logged, timeout=5, describe=f"an access log line for request {request_id}")
    return found


def test_one_access_log_line_per_request_without_token_or_query(suite, gateway, buyer):
    token = buyer.access_token
    answer = gateway.get("/v1/users/me?secret-query=hunter2", token=token)
    assert answer.status == 200, answer.describe()
    line = _access_log_line(suite, answer.header("x-request-id"))
    assert line["http.method"] == "GET"
    assert line["http.route"] == "/v1/users"
    assert line["http.status"] == "200"
    assert line["upstream"] == "identity"
    assert line["user.id"] == buyer.id
    assert int(line["duration.ms"]) >= 0
    assert len(line["trace.id"]) == 32
    text = (suite.log_dir / "gateway.log").read_text(errors="replace")
    assert token not in text and token.split(".")[2] not in text
    assert "hunter2" not in text

    refused = gateway.get("/v1/users/me", token="not-a-token", validate=False)
    assert refused.status == 401
    line = _access_log_line(suite, refused.header("x-request-id"))
    assert (line["http.status"], line["user.id"], line["upstream"]) == ("401", "-", "identity")
