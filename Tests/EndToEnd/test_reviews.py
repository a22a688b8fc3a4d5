"""Reviews through the gateway: after receipt the buyer and the vendor each review the other,
double blind (neither sees the other's words until both have written, then both are published
and the order completes); the vendor's rating appears on its listings and in search
(`minRating`), the vendor replies once, a moderator removes a review with a reason (recorded),
and when the 7-day window closes on the test clock what was written is published. Every answer is
checked against openapi.yaml."""

from __future__ import annotations

import uuid

from e2e_support import advance_clock, psql, wait_until
from test_disputes import delivered_order
from test_listings import admin, broker, moderator, verified  # noqa: F401 (fixtures)
from test_orders import orderable_listing, status_of


def reviews_of(gateway, token, oid):
    return gateway.get(f"/v1/orders/{oid}/reviews", token=token).expect(200).json()["items"]


def vendor_rating(gateway, lid):
    return gateway.get(f"/v1/listings/{lid}").expect(200).json()["vendor"]


def test_double_blind_reviews_a_rating_in_search_a_reply_a_removal_and_the_window_closing(
        suite, gateway, register, broker, moderator):  # noqa: F811
    vendor, vendor_token, lid = orderable_listing(suite, gateway, register, broker, moderator, quantity=3)
    buyer = register("buyer", display_name="Reviewing Buyer")
    token = verified(suite, buyer)
    stranger = register("buyer").access_token
    early = delivered_order(gateway, vendor_token, token, lid)
    first = delivered_order(gateway, vendor_token, token, lid)
    oid = first["id"]
    gateway.post(f"/v1/orders/{oid}/receive", token=token).expect(200)

    # Only the parties, only in the window, a rating from 1 to 5.
    path = f"/v1/orders/{oid}/reviews"
    body = {"rating": 4, "text": "Healthy pup, well socialised; pickup was a little late."}
    gateway.post(f"/v1/orders/{early['id']}/reviews", json=body, token=token).expect_problem(409, "invalid-transition")
    gateway.post(path, json=body).expect_problem(401, "unauthorized")
    gateway.post(path, json=body, token=stranger).expect_problem(404, "not-found")
    gateway.post(f"/v1/orders/{uuid.uuid4()}/reviews", json=body, token=token).expect_problem(404, "not-found")
    gateway.post(path, json=body, token=moderator).expect_problem(403, "forbidden")
    gateway.post(path, body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    bad = gateway.post(path, json={"rating": 6, "text": ""}, token=token).expect_problem(422, "validation-failed")
    assert {e["field"] for e in bad["errors"]} == {"rating", "text"}

    # The buyer writes: pending, the buyer's alone; the vendor cannot read it yet.
    mine = gateway.post(path, json=body, token=token).expect(201).json()
    assert mine["status"] == "pending" and mine["publishedAt"] is None and mine["subjectId"] == vendor.id
    assert mine["authorName"] == "Reviewing Buyer" and mine["authorRole"] == "buyer"
    assert reviews_of(gateway, vendor_token, oid) == []
    assert [r["id"] for r in reviews_of(gateway, token, oid)] == [mine["id"]]
    gateway.get(path).expect_problem(401, "unauthorized")
    gateway.get(path, token=stranger).expect_problem(404, "not-found")
    gateway.post(path, json=body, token=token).expect_problem(409, "already-reviewed")

    # The vendor writes: both published at once, the order completed.
    theirs = gateway.post(path, json={"rating": 5, "text": "Prompt payment, lovely family."}, token=vendor_token).expect(201).json()
    assert theirs["status"] == "published" and theirs["subjectId"] == buyer.id
    both = reviews_of(gateway, vendor_token, oid)
    assert [(r["authorRole"], r["status"]) for r in both] == [("buyer", "published"), ("vendor", "published")]
    assert both[0]["publishedAt"] == both[1]["publishedAt"]
    assert status_of(gateway, token, oid)["status"] == "completed"
    assert [r["id"] for r in reviews_of(gateway, moderator, oid)] == [mine["id"], theirs["id"]]

    # Public: the vendor's reviews with the summary, cacheable; the rating on the listing and in search.
    public = f"/v1/vendors/{vendor.id}/reviews"
    page = gateway.get(public).expect(200)
    assert page.json()["summary"] == {"average": 4, "count": 1} and [r["id"] for r in page.json()["items"]] == [mine["id"]]
    assert page.header("cache-control").startswith("public")
    gateway.get(public, headers={"If-None-Match": page.header("etag")}).expect(304)
    gateway.get("/v1/vendors/not-a-uuid/reviews").expect_problem(404, "not-found")
    gateway.get(public, query={"limit": "0"}).expect_problem(422, "validation-failed")
    wait_until(lambda: vendor_rating(gateway, lid)["rating"] == 4, timeout=30, describe="the rating on the listing")
    assert vendor_rating(gateway, lid)["ratingCount"] == 1

    def searched(minimum):
        found = gateway.get("/v1/listings", query={"vendor": vendor.id, "minRating": str(minimum)}).expect(200).json()
        return [item["id"] for item in found["items"]]
    assert searched(4) == [lid] and searched(4.5) == []

    # The reviewed vendor replies, once; nobody else may.
    reply = f"/v1/reviews/{mine['id']}/reply"
    answer = {"text": "Thank you! Sorry about the wait."}
    gateway.post(reply, json=answer).expect_problem(401, "unauthorized")
    gateway.post(reply, json=answer, token=token).expect_problem(403, "forbidden")
    gateway.post(f"/v1/reviews/{theirs['id']}/reply", json=answer, token=vendor_token).expect_problem(403, "forbidden")
    gateway.post(f"/v1/reviews/{uuid.uuid4()}/reply", json=answer, token=vendor_token).expect_problem(404, "not-found")
    gateway.post(reply, body=b"[", headers={"Content-Type": "application/json"}, token=vendor_token).expect_problem(400, "malformed-request")
    gateway.post(reply, json={"text": ""}, token=vendor_token).expect_problem(422, "validation-failed")
    replied = gateway.post(reply, json=answer, token=vendor_token).expect(200).json()
    assert replied["reply"]["text"] == answer["text"]
    gateway.post(reply, json=answer, token=vendor_token).expect_problem(409, "already-replied")

    # A moderator removes it, with the reason recorded; the rating goes with it.
    remove = f"/v1/moderation/reviews/{mine['id']}/remove"
    why = {"reason": "Names a third party."}
    gateway.post(remove, json=why).expect_problem(401, "unauthorized")
    gateway.post(remove, json=why, token=token).expect_problem(403, "forbidden")
    gateway.post(f"/v1/moderation/reviews/{uuid.uuid4()}/remove", json=why, token=moderator).expect_problem(404, "not-found")
    gateway.post(remove, body=b"{", headers={"Content-Type": "application/json"}, token=moderator).expect_problem(400, "malformed-request")
    gateway.post(remove, json={"reason": ""}, token=moderator).expect_problem(422, "validation-failed")
    removed = gateway.post(remove, json=why, token=moderator).expect(200).json()
    assert removed["status"] == "removed" and removed["removedReason"] == why["reason"]
    gateway.post(remove, json=why, token=moderator).expect_problem(409, "invalid-transition")
    assert gateway.get(public).expect(200).json() == {"items": [], "nextCursor": None, "summary": {"average": None, "count": 0}}
    audit = psql(suite.superuser_dsn, f"SELECT subject, reason FROM orders.staff_reads WHERE subject_id = '{mine['id']}'")
    assert audit == [["review removed", why["reason"]]]
    wait_until(lambda: vendor_rating(gateway, lid)["rating"] is None, timeout=30, describe="the rating gone from the listing")

    # The window closes with only the buyer's review written: it is published, the order completes.
    gateway.post(f"/v1/orders/{early['id']}/receive", token=token).expect(200)
    alone = gateway.post(f"/v1/orders/{early['id']}/reviews", json={"rating": 2, "text": "Arrived late."}, token=token).expect(201).json()
    assert reviews_of(gateway, vendor_token, early["id"]) == []
    advance_clock(suite, days=7, hours=1)
    wait_until(lambda: status_of(gateway, token, early["id"])["status"] == "completed", timeout=30, describe="the window closed")
    assert [(r["id"], r["status"]) for r in reviews_of(gateway, vendor_token, early["id"])] == [(alone["id"], "published")]
    gateway.post(f"/v1/orders/{early['id']}/reviews", json=body, token=vendor_token).expect_problem(409, "invalid-transition")
    assert gateway.get(public).expect(200).json()["summary"] == {"average": 2, "count": 1}
