"""The business test clock (dev and tests only): each domain service answers
`/internal/test-clock` on its own port, the gateway never routes `/internal/`, the launcher moves
every service at once, and a restarted service keeps its offset."""

from __future__ import annotations

from datetime import datetime, timezone

import requests

from e2e_support import SERVICES, advance_clock, business_clock


def test_every_domain_service_has_a_clock_only_on_its_own_port(suite):
    for name in SERVICES:
        answer = requests.get(f"{suite.service_url(name)}/internal/test-clock", timeout=5)
        assert answer.status_code == 200, (name, answer.text)
        assert set(answer.json()) == {"now", "offsetSeconds"}
    for path in ("/internal/test-clock", "/internal/anything"):
        for method in ("GET", "POST"):
            answer = requests.request(method, f"{suite.gateway_url}{path}", json={"advanceSeconds": 86400}, timeout=5)
            assert answer.status_code == 404, (method, path, answer.status_code)
            assert answer.headers["content-type"].startswith("application/problem+json")


def test_the_launcher_moves_every_clock_and_a_restart_keeps_it(suite):
    before = business_clock(suite)
    after = advance_clock(suite, hours=1)
    assert set(after) == set(SERVICES)
    for name in SERVICES:
        assert after[name].offset_seconds == before[name].offset_seconds + 3600, name
        assert (after[name].now - datetime.now(timezone.utc)).total_seconds() >= 3590, name
    bad = requests.post(f"{suite.service_url('orders')}/internal/test-clock", json={"advanceSeconds": "soon"}, timeout=5)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "advanceSeconds"
    # The offset is persisted: a restarted service comes back at the same business time.
    suite.suite.stop_service("billing")
    suite.suite.start_service("billing")
    assert business_clock(suite)["billing"].offset_seconds == after["billing"].offset_seconds
