"""Orders through the gateway: a buyer's purchase from placing to receipt, the refusals at
placing, the parties' actions and everything they may not do, cancellation with the stock back,
and the 15-minute payment deadline on the test clock. Listings is real (its snapshot feeds
orders, it reserves and releases the stock), and billing makes each order's payment intent. The
buyer's confirmation of it is not built yet, so billing's `payment.succeeded` is produced on the
dev broker with kcat, as billing will produce it. Every answer is checked against openapi.yaml."""

from __future__ import annotations

import uuid

from e2e_support import advance_clock, wait_until
from test_listings import BOWL, admin, broker, entitle, moderator, now_rfc3339, produce, verified  # noqa: F401 (fixtures)

ADDRESS = {"name": "Ada Buyer", "line1": "1 Farm Lane", "city": "York", "postalCode": "YO1 7HH", "country": "GB"}


def place(gateway, token, listing_id, quantity=1, key=None, **extra):
    body = {"listingId": listing_id, "quantity": quantity, "shippingAddress": ADDRESS, **extra}
    return gateway.post("/v1/orders", json=body, token=token, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def pay(gateway, token, broker, order):
    """The buyer pays: billing's intent reaches the order (within a second of placing), then
    billing's word that it succeeded, produced by hand until billing's confirm step exists."""
    intent = wait_for(gateway, token, order["id"], lambda o: o["payment"] is not None, "billing's intent on the order")["payment"]
    assert intent["status"] == "requires_payment_method" and intent["clientSecret"].startswith(intent["intentId"] + "_secret_")
    produce(broker, "billing.payments.v1", order["id"], "marketplace.billing.payment.succeeded.v1", "/marketplace/billing",
            {"orderId": order["id"], "intentId": intent["intentId"], "clientSecret": None, "status": "succeeded",
             "amount": order["total"]["amount"], "currency": order["total"]["currency"], "occurredAt": now_rfc3339()})


def status_of(gateway, token, order_id):
    return gateway.get(f"/v1/orders/{order_id}", token=token).expect(200).json()


def wait_for(gateway, token, order_id, predicate, describe):
    return wait_until(lambda: (lambda o: o if predicate(o) else None)(status_of(gateway, token, order_id)), timeout=30, describe=describe)


def orderable_listing(suite, gateway, register, broker, moderator, quantity=3):
    """A verified vendor with a commission rate and a published listing that orders knows."""
    vendor = register("vendor", display_name="Orders Vendor")
    token = verified(suite, vendor)
    entitle(broker, vendor.id, 1, quota=10)
    listing = gateway.post("/v1/listings", json={**BOWL, "quantity": quantity}, token=token).expect(201).json()
    lid = listing["id"]
    wait_until(lambda: gateway.post(f"/v1/listings/{lid}/publish", token=token).status == 200, timeout=20, describe="publishing once entitled")
    gateway.post(f"/v1/moderation/listings/{lid}/approve", token=moderator).expect(200)
    return vendor, token, lid


def test_a_purchase_from_placing_to_receipt(suite, gateway, register, broker, moderator):
    vendor, vendor_token, lid = orderable_listing(suite, gateway, register, broker, moderator)
    buyer = register("buyer", display_name="Orders Buyer")
    unverified = buyer.access_token
    # Not signed in, not verified, no key, a bad body.
    gateway.post("/v1/orders", json={"listingId": lid, "quantity": 1, "shippingAddress": ADDRESS},
                 headers={"Idempotency-Key": "k"}).expect_problem(401, "unauthorized")
    place(gateway, unverified, lid).expect_problem(403, "email-not-verified")
    token = verified(suite, buyer)
    gateway.post("/v1/orders", json={"listingId": lid, "quantity": 1, "shippingAddress": ADDRESS}, token=token).expect_problem(
        400, "idempotency-key-required")
    bad = place(gateway, token, "not-a-uuid", quantity=0, shippingAddress={"name": "", "country": "XX"}).expect_problem(422, "validation-failed")
    fields = {e["field"] for e in bad["errors"]}
    assert {"listingId", "quantity", "shippingAddress.name", "shippingAddress.line1", "shippingAddress.country"} <= fields, fields

    # Orders learns of the listing from listings' events: ordering works once it has.
    first = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, quantity=2)), timeout=30,
                       describe="orders knows the published listing").json()
    assert first["status"] == "pending_payment" and first["payment"] is None and first["quantity"] == 2
    assert first["listing"] == {"id": lid, "title": BOWL["title"], "unitPrice": BOWL["price"], "vendorId": vendor.id}
    assert first["total"] == {"amount": 2 * BOWL["price"]["amount"], "currency": "GBP"}
    assert first["commission"] == {"amount": round(2 * BOWL["price"]["amount"] * 0.08), "currency": "GBP"}
    assert [c["event"] for c in first["history"]] == ["placed"]
    place(gateway, token, lid, quantity=4).expect_problem(409, "insufficient-stock")
    place(gateway, vendor_token, lid).expect_problem(403, "cannot-buy-own-listing")
    place(gateway, token, str(uuid.uuid4())).expect_problem(409, "listing-unavailable")

    # Listings reserves the units; billing makes the intent; the payment makes it paid.
    oid = first["id"]
    wait_for(gateway, token, oid, lambda o: "given its stock" in [c["event"] for c in o["history"]], "listings reserved the stock")
    pay(gateway, token, broker, first)
    paid = wait_for(gateway, token, oid, lambda o: o["status"] == "paid", "paid")
    assert paid["payment"]["status"] == "succeeded" and paid["payment"]["intentId"].startswith("pi_")

    # Who may see it, and who may do what.
    stranger = register("buyer")
    gateway.get(f"/v1/orders/{oid}").expect_problem(401, "unauthorized")
    gateway.get(f"/v1/orders/{oid}", token=stranger.access_token).expect_problem(404, "not-found")
    gateway.get(f"/v1/orders/{uuid.uuid4()}", token=token).expect_problem(404, "not-found")
    assert gateway.get(f"/v1/orders/{oid}", token=moderator).expect(200).json()["id"] == oid
    assert status_of(gateway, vendor_token, oid)["buyerId"] == buyer.id
    ship = f"/v1/orders/{oid}/ship"
    tracking = {"carrier": "Royal Mail", "trackingNumber": "RM123456789GB"}
    gateway.post(ship, json=tracking).expect_problem(401, "unauthorized")
    gateway.post(ship, json=tracking, token=stranger.access_token).expect_problem(404, "not-found")
    gateway.post(ship, json=tracking, token=token).expect_problem(403, "forbidden")
    gateway.post(ship, body=b"{", headers={"Content-Type": "application/json"}, token=vendor_token).expect_problem(400, "malformed-request")
    gateway.post(ship, json={"carrier": ""}, token=vendor_token).expect_problem(422, "validation-failed")
    gateway.post(ship, json=tracking, token=vendor_token, headers={"If-Match": '"1"'}).expect_problem(412, "version-mismatch")
    shipped = gateway.post(ship, json=tracking, token=vendor_token).expect(200).json()
    assert shipped["status"] == "shipped" and shipped["shipment"] == tracking
    gateway.post(ship, json=tracking, token=vendor_token).expect_problem(409, "invalid-transition")
    cancel = f"/v1/orders/{oid}/cancel"
    problem = gateway.post(cancel, token=token).expect_problem(409, "invalid-transition")
    assert problem["detail"] == "An order that is shipped cannot be canceled by its buyer."

    deliver = f"/v1/orders/{oid}/deliver"
    gateway.post(deliver).expect_problem(401, "unauthorized")
    gateway.post(deliver, token=stranger.access_token).expect_problem(404, "not-found")
    gateway.post(deliver, token=token).expect_problem(403, "forbidden")
    gateway.post(deliver, token=vendor_token, headers={"If-Match": '"1"'}).expect_problem(412, "version-mismatch")
    delivered = gateway.post(deliver, token=vendor_token, headers={"If-Match": f'"{shipped["version"]}"'}).expect(200).json()
    assert delivered["status"] == "delivered"
    gateway.post(deliver, token=vendor_token).expect_problem(409, "invalid-transition")

    receive = f"/v1/orders/{oid}/receive"
    gateway.post(receive).expect_problem(401, "unauthorized")
    gateway.post(receive, token=stranger.access_token).expect_problem(404, "not-found")
    gateway.post(receive, token=vendor_token).expect_problem(403, "forbidden")
    gateway.post(receive, token=token, headers={"If-Match": '"1"'}).expect_problem(412, "version-mismatch")
    received = gateway.post(receive, token=token).expect(200).json()
    assert received["status"] == "received"
    assert [c["event"] for c in received["history"]] == ["placed", "given its stock", "paid", "shipped", "delivered", "received"]
    assert received["history"][-1]["actorId"] == buyer.id
    gateway.post(receive, token=token).expect_problem(409, "invalid-transition")

    # The lists: each side sees it; a bad filter is named.
    mine = gateway.get("/v1/orders", query={"role": "buyer", "status": "received"}, token=token).expect(200).json()
    assert [o["id"] for o in mine["items"]] == [oid] and mine["items"][0]["history"] == []
    sold = gateway.get("/v1/orders", query={"role": "vendor"}, token=vendor_token).expect(200).json()
    assert oid in [o["id"] for o in sold["items"]]
    assert gateway.get("/v1/orders", query={"role": "vendor"}, token=token).expect(200).json()["items"] == []
    problem = gateway.get("/v1/orders", query={"role": "seller", "status": "lost"}, token=token).expect_problem(422, "validation-failed")
    assert {e["field"] for e in problem["errors"]} == {"role", "status"}
    gateway.get("/v1/orders").expect_problem(401, "unauthorized")


def test_a_cancellation_gives_the_stock_back_and_an_unpaid_order_expires(suite, gateway, register, broker, moderator):
    vendor, vendor_token, lid = orderable_listing(suite, gateway, register, broker, moderator, quantity=2)
    buyer = register("buyer")
    token = verified(suite, buyer)
    key = str(uuid.uuid4())
    order = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, quantity=2, key=key)), timeout=30,
                       describe="orders knows the published listing").json()
    # The same request again replays the same order.
    again = place(gateway, token, lid, quantity=2, key=key).expect(201)
    assert again.json()["id"] == order["id"] and again.header("idempotent-replayed") == "true"
    oid = order["id"]
    listing = f"/v1/listings/{lid}"
    wait_until(lambda: gateway.get(listing, token=vendor_token).expect(200).json()["quantityAvailable"] == 0, timeout=30,
               describe="listings holds both units")

    cancel = f"/v1/orders/{oid}/cancel"
    gateway.post(cancel).expect_problem(401, "unauthorized")
    gateway.post(cancel, token=register("buyer").access_token).expect_problem(404, "not-found")
    gateway.post(cancel, token=moderator).expect_problem(403, "forbidden")
    gateway.post(cancel, body=b"[", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    gateway.post(cancel, json={"reason": "x" * 1001}, token=token).expect_problem(422, "validation-failed")
    gateway.post(cancel, json={"reason": "Changed my mind."}, token=token, headers={"If-Match": '"99"'}).expect_problem(412, "version-mismatch")
    canceled = gateway.post(cancel, json={"reason": "Changed my mind."}, token=token).expect(200).json()
    assert canceled["status"] == "canceled" and canceled["cancelReason"] == "buyer_canceled"
    assert canceled["history"][-1]["note"] == "Changed my mind."
    gateway.post(cancel, token=token).expect_problem(409, "invalid-transition")
    back = wait_until(lambda: (lambda l: l if l["quantityAvailable"] == 2 else None)(gateway.get(listing, token=vendor_token).expect(200).json()),
                      timeout=30, describe="the units back in stock")
    assert back["status"] == "published"

    # Placed and never paid: canceled when its 15 minutes pass on the business clock.
    late = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, quantity=1)), timeout=30,
                      describe="orders sees the units back").json()
    advance_clock(suite, minutes=16)
    expired = wait_for(gateway, token, late["id"], lambda o: o["status"] == "canceled", "the unpaid order expired")
    assert expired["cancelReason"] == "payment_timeout"
    assert [c["event"] for c in expired["history"]][-1] == "expired unpaid"
    # The vendor cancels a paid order before shipping.
    paid = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, quantity=1)), timeout=30,
                      describe="orders sees the expired order's unit back").json()
    pay(gateway, token, broker, paid)
    wait_for(gateway, token, paid["id"], lambda o: o["status"] == "paid", "paid")
    by_vendor = gateway.post(f"/v1/orders/{paid['id']}/cancel", json={"reason": "Out of stock, sorry."}, token=vendor_token).expect(200).json()
    assert by_vendor["cancelReason"] == "vendor_canceled"
    assert "a full refund is due" in by_vendor["history"][-1]["note"]
    assert by_vendor["payment"]["status"] == "succeeded"
