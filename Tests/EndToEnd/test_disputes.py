"""Disputes through the gateway: a buyer disputes a delivered order and the vendor's money is
frozen (`inDispute`); both parties add evidence and read each other's; the desk works the queue
oldest first and decides — a partial refund (the part back to the buyer, the rest released), a
release, or, after 14 days on the test clock, the dispute is the admins' to decide; the buyer may
withdraw and the order is `delivered` again. Orders, billing and the sandbox are real; every
answer is checked against openapi.yaml."""

from __future__ import annotations

import uuid

from e2e_support import advance_clock, wait_until
from test_listings import admin, broker, moderator, verified  # noqa: F401 (fixtures)
from test_orders import balance, orderable_listing, pay, place, status_of, wait_for

REASON = {"reason": "damaged", "description": "The crate arrived split and the bowl is chipped."}


def delivered_order(gateway, vendor_token, buyer_token, lid):
    order = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, buyer_token, lid)), timeout=30,
                       describe="orders knows the listing").json()
    pay(gateway, buyer_token, order)
    gateway.post(f"/v1/orders/{order['id']}/ship", json={"carrier": "DPD", "trackingNumber": "DPD1"}, token=vendor_token).expect(200)
    return gateway.post(f"/v1/orders/{order['id']}/deliver", token=vendor_token).expect(200).json()


def in_dispute(gateway, vendor_token):
    return sum(m["amount"] for m in balance(gateway, vendor_token)["inDispute"])


def test_a_dispute_frozen_evidenced_and_partly_refunded_another_withdrawn_and_one_escalated_to_the_admins(
        suite, gateway, register, broker, moderator, admin):  # noqa: F811
    vendor, vendor_token, lid = orderable_listing(suite, gateway, register, broker, moderator, quantity=3)
    buyer = register("buyer", display_name="Disputing Buyer")
    token = verified(suite, buyer)
    stranger = register("buyer").access_token
    order = delivered_order(gateway, vendor_token, token, lid)
    oid = order["id"]
    total = order["total"]["amount"]

    # Opening: only the buyer, only a delivered order, with a reason the API knows.
    opening = f"/v1/orders/{oid}/disputes"
    gateway.post(opening, json=REASON).expect_problem(401, "unauthorized")
    gateway.post(opening, json=REASON, token=stranger).expect_problem(404, "not-found")
    gateway.post(f"/v1/orders/{uuid.uuid4()}/disputes", json=REASON, token=token).expect_problem(404, "not-found")
    gateway.post(opening, json=REASON, token=vendor_token).expect_problem(403, "forbidden")
    gateway.post(opening, body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    bad = gateway.post(opening, json={"reason": "meh", "description": ""}, token=token).expect_problem(422, "validation-failed")
    assert {e["field"] for e in bad["errors"]} == {"reason", "description"}
    opened = gateway.post(opening, json=REASON, token=token).expect(201)
    dispute = opened.json()
    did = dispute["id"]
    assert opened.header("location") == f"/v1/disputes/{did}"
    assert dispute["status"] == "open" and dispute["orderId"] == oid and dispute["reason"] == "damaged"
    assert dispute["resolution"] is None and dispute["chargeback"] is None and dispute["escalatesAt"] is not None
    gateway.post(opening, json=REASON, token=token).expect_problem(409, "invalid-transition")
    disputed = status_of(gateway, token, oid)
    assert disputed["status"] == "disputed" and disputed["history"][-1]["note"] == f"dispute {did}"
    # The vendor's money is frozen: in dispute, not pending.
    wait_until(lambda: in_dispute(gateway, vendor_token) == total, timeout=30, describe="the money frozen in dispute")

    # Evidence from both sides, seen by both; staff read it (audited) and may add a note.
    path = f"/v1/disputes/{did}"
    evidence = f"{path}/evidence"
    gateway.post(evidence, json={"text": "x"}).expect_problem(401, "unauthorized")
    gateway.post(evidence, json={"text": "x"}, token=stranger).expect_problem(404, "not-found")
    gateway.post(evidence, body=b"[", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    bad = gateway.post(evidence, json={"text": "", "attachments": ["http://example.com/a.jpg", "nope"]}, token=token).expect_problem(422)
    assert {e["field"] for e in bad["errors"]} == {"text", "attachments[0]", "attachments[1]"}
    gateway.post(evidence, json={"text": "Photos of the crate.", "attachments": ["https://files.example.com/crate.jpg"]},
                 token=token).expect(201)
    both = gateway.post(evidence, json={"text": "It left here whole; the courier's receipt."}, token=vendor_token).expect(201).json()
    assert [(e["authorRole"], e["attachments"]) for e in both["evidence"]] == [
        ("buyer", ["https://files.example.com/crate.jpg"]), ("vendor", [])]
    assert gateway.get(path, token=token).expect(200).json()["evidence"] == both["evidence"]
    gateway.get(path).expect_problem(401, "unauthorized")
    gateway.get(path, token=stranger).expect_problem(404, "not-found")
    gateway.get(f"/v1/disputes/{uuid.uuid4()}", token=token).expect_problem(404, "not-found")
    assert gateway.get(path, token=moderator).expect(200).json()["id"] == did
    assert gateway.get(f"/v1/orders/{oid}", token=moderator).expect(200).json()["status"] == "disputed"

    # The desk finds the parties' conversation from the order and reads it (both recorded with why).
    chat = gateway.post("/v1/conversations", json={"orderId": oid, "body": "The crate was split when it came."}, token=token).expect(201).json()
    finder = "/v1/moderation/conversations"
    why = {"orderId": oid, "reason": f"dispute {did}"}
    found = wait_until(lambda: gateway.get(finder, query=why, token=moderator).expect(200).json()["items"], timeout=30,
                       describe="the order's conversation at the desk")
    assert [c["id"] for c in found] == [chat["id"]] and found[0]["orderId"] == oid
    gateway.get(finder, query=why).expect_problem(401, "unauthorized")
    gateway.get(finder, query=why, token=token).expect_problem(403, "forbidden")
    assert {e["field"] for e in gateway.get(finder, query={"orderId": "x"}, token=moderator).expect_problem(422)["errors"]} == {"orderId", "reason"}
    read = gateway.get(f"{finder}/{chat['id']}", query={"reason": f"dispute {did}"}, token=moderator).expect(200).json()
    assert [m["body"] for m in read["items"]] == ["The crate was split when it came."]

    # The desk: its queue, oldest first; only staff; a bad status is named.
    queue = gateway.get("/v1/moderation/disputes", query={"limit": "100"}, token=moderator).expect(200).json()
    assert did in [d["id"] for d in queue["items"]] and all(d["evidence"] == [] for d in queue["items"])
    opened_times = [d["openedAt"] for d in queue["items"]]
    assert opened_times == sorted(opened_times)
    gateway.get("/v1/moderation/disputes").expect_problem(401, "unauthorized")
    gateway.get("/v1/moderation/disputes", token=token).expect_problem(403, "forbidden")
    gateway.get("/v1/moderation/disputes", query={"status": "lost"}, token=moderator).expect_problem(422, "validation-failed")

    # The decision: a third back to the buyer, the rest released to the vendor.
    resolve = f"/v1/moderation/disputes/{did}/resolve"
    part = {"amount": total // 3, "currency": "GBP"}
    decision = {"outcome": "refund", "refundAmount": part, "note": "Damaged in transit; a partial refund."}
    gateway.post(resolve, json=decision).expect_problem(401, "unauthorized")
    gateway.post(resolve, json=decision, token=token).expect_problem(403, "forbidden")
    gateway.post(f"/v1/moderation/disputes/{uuid.uuid4()}/resolve", json=decision, token=moderator).expect_problem(404, "not-found")
    gateway.post(resolve, body=b"{", headers={"Content-Type": "application/json"}, token=moderator).expect_problem(400, "malformed-request")
    too_much = {**decision, "refundAmount": {"amount": total + 1, "currency": "GBP"}}
    assert [e["field"] for e in gateway.post(resolve, json=too_much, token=moderator).expect_problem(422)["errors"]] == ["refundAmount.amount"]
    euros = {**decision, "refundAmount": {"amount": 100, "currency": "EUR"}}
    assert [e["field"] for e in gateway.post(resolve, json=euros, token=moderator).expect_problem(422)["errors"]] == ["refundAmount.currency"]
    gateway.post(resolve, json={"outcome": "release", "refundAmount": part, "note": "x"}, token=moderator).expect_problem(422)
    resolved = gateway.post(resolve, json=decision, token=moderator).expect(200).json()
    assert resolved["status"] == "resolved" and resolved["escalatesAt"] is None
    assert resolved["resolution"]["outcome"] == "refund" and resolved["resolution"]["refundAmount"] == part
    gateway.post(resolve, json=decision, token=moderator).expect_problem(409, "invalid-transition")
    gateway.post(evidence, json={"text": "One more thing."}, token=token).expect_problem(409, "invalid-transition")
    refunded = wait_for(gateway, token, oid, lambda o: o["refundedAmount"] == part, "the part refunded to the buyer")
    assert refunded["status"] == "refunded"
    commission = order["commission"]["amount"]
    released = total - part["amount"]
    vendor_part = released - (released * commission + total // 2) // total
    wait_until(lambda: balance(gateway, vendor_token)["available"] == [{"amount": vendor_part, "currency": "GBP"}], timeout=30,
               describe="the rest released to the vendor")
    assert in_dispute(gateway, vendor_token) == 0

    # A second order: disputed, then withdrawn by the buyer (not the vendor): delivered again, unfrozen.
    second = delivered_order(gateway, vendor_token, token, lid)
    taken_back = gateway.post(f"/v1/orders/{second['id']}/disputes", json={**REASON, "reason": "other"}, token=token).expect(201).json()
    withdraw = f"/v1/disputes/{taken_back['id']}/withdraw"
    gateway.post(withdraw).expect_problem(401, "unauthorized")
    gateway.post(withdraw, token=stranger).expect_problem(404, "not-found")
    gateway.post(f"/v1/disputes/{uuid.uuid4()}/withdraw", token=token).expect_problem(404, "not-found")
    gateway.post(withdraw, token=vendor_token).expect_problem(403, "forbidden")
    assert gateway.post(withdraw, token=token).expect(200).json()["status"] == "withdrawn"
    gateway.post(withdraw, token=token).expect_problem(409, "invalid-transition")
    assert status_of(gateway, token, second["id"])["status"] == "delivered"
    wait_until(lambda: in_dispute(gateway, vendor_token) == 0, timeout=30, describe="unfrozen after the withdrawal")

    # A third, left alone for 14 days: escalated; a moderator may no longer decide, an admin releases it.
    third = delivered_order(gateway, vendor_token, token, lid)
    late = gateway.post(f"/v1/orders/{third['id']}/disputes", json={**REASON, "reason": "not_as_described"}, token=token).expect(201).json()
    advance_clock(suite, days=14, hours=1)
    escalated = wait_until(lambda: (lambda d: d if d["status"] == "escalated" else None)(
        gateway.get(f"/v1/disputes/{late['id']}", token=token).expect(200).json()), timeout=30, describe="the dispute escalated")
    assert escalated["escalatedAt"] is not None
    admins = gateway.get("/v1/moderation/disputes", query={"status": "escalated", "limit": "100"}, token=admin).expect(200).json()
    assert late["id"] in [d["id"] for d in admins["items"]]
    release = {"outcome": "release", "note": "The listing matched; released."}
    gateway.post(f"/v1/moderation/disputes/{late['id']}/resolve", json=release, token=moderator).expect_problem(403, "forbidden")
    done = gateway.post(f"/v1/moderation/disputes/{late['id']}/resolve", json=release, token=admin).expect(200).json()
    assert done["resolution"]["outcome"] == "release" and done["resolution"]["refundAmount"]["amount"] == 0
    assert status_of(gateway, token, third["id"])["status"] == "received"

    trial = gateway.get("/v1/admin/ledger/trial-balance", token=admin).expect(200).json()
    assert all(c["debits"] == c["credits"] for c in trial["currencies"])
    assert sum(a["balance"] for a in trial["accounts"]) == 0
