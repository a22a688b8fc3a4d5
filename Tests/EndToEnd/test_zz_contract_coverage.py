"""Runs last: every response the documents promise was seen, and validated, by some test.

Every request of the other tests went through a contract-checking client, so a response
that does not match its openapi.yaml has already failed that test. What is left to check
is the other direction: nothing documented went unexercised.
"""

from __future__ import annotations

import pytest

from conftest import is_full_run

pytestmark = pytest.mark.contract_coverage


@pytest.fixture(autouse=True)
def only_after_a_full_run(request):
    if not is_full_run(request.config):
        pytest.skip("coverage is only judged when every end-to-end test was selected")


def test_every_documented_operation_and_status_was_exercised(contracts):
    missing = contracts.unexercised()
    assert not missing, (
        f"{len(missing)} documented response(s) were never exercised by a test "
        f"(write a test that provokes each, or remove it from the openapi.yaml):\n  "
        + "\n  ".join(str(item) for item in missing)
    )


def test_every_gateway_edge_response_was_exercised(contracts):
    # 502 and 503 both mean "upstream unavailable"; which one a stopped service gets is the
    # gateway's choice (503 once its circuit is open), so either one covers the pair.
    required = {status: contracts.edge_responses[status] for status in contracts.edge_responses}
    seen = set(contracts.edge_exercised)
    if seen & {502, 503}:
        seen |= {502, 503}
    missing = sorted(set(required) - seen)
    assert not missing, "gateway edge responses never exercised: " + ", ".join(
        f"{status} ({required[status]})" for status in missing
    )
