"""Orders and their money through the gateway: a buyer's purchase from placing to receipt and
the vendor's payout, the refusals at placing and at paying, the parties' actions and everything
they may not do, cancellation with the stock back and the money refunded, the 15-minute payment
deadline on the test clock and a payment that comes too late, an admin's refund. Listings, orders
and billing are all real: listings' snapshot prices the order and it holds the stock, billing
makes the payment intent, the buyer confirms it at the sandbox, whose signed webhook makes the
order paid. Every answer is checked against openapi.yaml."""

from __future__ import annotations

import uuid

from e2e_support import advance_clock, wait_until
from test_listings import BOWL, admin, broker, entitle, moderator, verified  # noqa: F401 (fixtures)

ADDRESS = {"name": "Ada Buyer", "line1": "1 Farm Lane", "city": "York", "postalCode": "YO1 7HH", "country": "GB"}


def place(gateway, token, listing_id, quantity=1, key=None, **extra):
    body = {"listingId": listing_id, "quantity": quantity, "shippingAddress": ADDRESS, **extra}
    return gateway.post("/v1/orders", json=body, token=token, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def intent_of(gateway, token, order):
    """Billing's intent, on the order within moments of placing."""
    intent = wait_for(gateway, token, order["id"], lambda o: o["payment"] is not None, "billing's intent on the order")["payment"]
    assert intent["status"] == "requires_payment_method" and intent["clientSecret"].startswith(intent["intentId"] + "_secret_")
    return intent


def confirm(gateway, token, intent_id, card="pm_card_visa"):
    return gateway.post(f"/v1/payments/{intent_id}/confirm", json={"paymentMethod": card}, token=token)


def pay(gateway, token, order):
    """The buyer pays with a card that works, as Stripe.js would; the webhook makes it paid."""
    intent = intent_of(gateway, token, order)
    paid = confirm(gateway, token, intent["intentId"]).expect(200).json()
    assert paid == {"id": intent["intentId"], "orderId": order["id"], "status": "succeeded", "amount": order["total"]}
    return wait_for(gateway, token, order["id"], lambda o: o["status"] == "paid", "the provider's webhook made it paid")


def status_of(gateway, token, order_id):
    return gateway.get(f"/v1/orders/{order_id}", token=token).expect(200).json()


def wait_for(gateway, token, order_id, predicate, describe):
    return wait_until(lambda: (lambda o: o if predicate(o) else None)(status_of(gateway, token, order_id)), timeout=30, describe=describe)


def balance(gateway, token):
    return gateway.get("/v1/vendor/balance", token=token).expect(200).json()


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

    # Listings reserves the units; billing makes the intent; the buyer pays it.
    oid = first["id"]
    wait_for(gateway, token, oid, lambda o: "given its stock" in [c["event"] for c in o["history"]], "listings reserved the stock")
    intent = intent_of(gateway, token, first)["intentId"]
    stranger = register("buyer")
    pay_path = f"/v1/payments/{intent}/confirm"
    gateway.post(pay_path, json={"paymentMethod": "pm_card_visa"}).expect_problem(401, "unauthorized")
    confirm(gateway, stranger.access_token, intent).expect_problem(404, "not-found")
    confirm(gateway, vendor_token, intent).expect_problem(404, "not-found")
    confirm(gateway, token, "pi_doesnotexist").expect_problem(404, "not-found")
    gateway.post(pay_path, body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    gateway.post(pay_path, json={"paymentMethod": ""}, token=token).expect_problem(422, "validation-failed")
    confirm(gateway, token, intent, card="pm_card_unheardOf").expect_problem(422, "validation-failed")
    declined = confirm(gateway, token, intent, card="pm_card_chargeDeclined").expect_problem(402, "card-declined")
    assert "card_declined" in declined["detail"]
    assert status_of(gateway, token, oid)["status"] == "pending_payment"
    paid = pay(gateway, token, first)
    assert paid["payment"]["status"] == "succeeded" and paid["payment"]["intentId"] == intent
    assert [c["event"] for c in paid["history"]] == ["placed", "given its stock", "paid"]
    # The buyer pays twice: the second is refused, nothing is taken.
    confirm(gateway, token, intent).expect_problem(409, "invalid-transition")
    held = wait_until(lambda: (lambda b: b if b["pending"] else None)(balance(gateway, vendor_token)), timeout=30, describe="escrow in the balance")
    assert held == {"pending": [first["total"]], "available": [], "inDispute": []}

    # Who may see it, and who may do what.
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

    # The money left escrow at receipt: the vendor's less the commission, available.
    vendor_share = {"amount": first["total"]["amount"] - first["commission"]["amount"], "currency": "GBP"}
    wait_until(lambda: balance(gateway, vendor_token)["available"] == [vendor_share], timeout=30, describe="released to the vendor")
    assert balance(gateway, vendor_token)["pending"] == [{"amount": 0, "currency": "GBP"}]
    gateway.get("/v1/vendor/balance").expect_problem(401, "unauthorized")
    gateway.get("/v1/vendor/balance", token=token).expect_problem(403, "forbidden")

    # Paid out by the daily run to the vendor's payout account (none yet: nothing is paid).
    account_path = "/v1/vendor/payout-account"
    gateway.get(account_path, token=vendor_token).expect_problem(404, "not-found")
    gateway.get(account_path).expect_problem(401, "unauthorized")
    gateway.get(account_path, token=token).expect_problem(403, "forbidden")
    gateway.post(account_path).expect_problem(401, "unauthorized")
    gateway.post(account_path, token=token).expect_problem(403, "forbidden")
    account = gateway.post(account_path, token=vendor_token).expect(201).json()
    assert account["status"] == "active" and account["id"].startswith("acct_") and account["onboardingUrl"] is None
    assert gateway.post(account_path, token=vendor_token).expect(200).json() == account
    assert gateway.get(account_path, token=vendor_token).expect(200).json() == account
    advance_clock(suite, days=1)
    payouts = wait_until(lambda: (lambda p: p if p["items"] and p["items"][0]["status"] == "paid" else None)(
        gateway.get("/v1/vendor/payouts", token=vendor_token).expect(200).json()), timeout=30, describe="the daily payout")
    payout = payouts["items"][0]
    assert payout["amount"] == vendor_share and payout["orders"] == [oid] and payout["orderCount"] == 1
    assert payout["transferId"].startswith("tr_") and payouts["nextCursor"] is None
    assert balance(gateway, vendor_token)["available"] == [{"amount": 0, "currency": "GBP"}]
    gateway.get("/v1/vendor/payouts", query={"limit": "0"}, token=vendor_token).expect_problem(422, "validation-failed")
    gateway.get("/v1/vendor/payouts").expect_problem(401, "unauthorized")
    gateway.get("/v1/vendor/payouts", token=token).expect_problem(403, "forbidden")


def test_a_cancellation_gives_the_stock_back_and_the_money_and_an_unpaid_order_expires(suite, gateway, register, broker, moderator, admin):
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
    # Its intent exists (an order that ends before billing made one never gets one).
    late_intent = intent_of(gateway, token, late)["intentId"]
    advance_clock(suite, minutes=16)
    expired = wait_for(gateway, token, late["id"], lambda o: o["status"] == "canceled", "the unpaid order expired")
    assert expired["cancelReason"] == "payment_timeout"
    assert [c["event"] for c in expired["history"]][-1] == "expired unpaid"
    # Paying it now is too late: billing canceled its intent, so nothing is taken.
    wait_until(lambda: confirm(gateway, token, late_intent).status == 409, timeout=30, describe="the expired order's intent canceled")
    confirm(gateway, token, late_intent).expect_problem(409, "invalid-transition")

    # The vendor cancels a paid order before shipping: the buyer gets it all back.
    order = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, quantity=1)), timeout=30,
                       describe="orders sees the expired order's unit back").json()
    pay(gateway, token, order)
    by_vendor = gateway.post(f"/v1/orders/{order['id']}/cancel", json={"reason": "Out of stock, sorry."}, token=vendor_token).expect(200).json()
    assert by_vendor["cancelReason"] == "vendor_canceled"
    assert "a full refund is due" in by_vendor["history"][-1]["note"]
    refunded = wait_for(gateway, token, order["id"], lambda o: o["payment"]["status"] == "refunded", "refunded by billing")
    assert refunded["refundedAmount"] == order["total"] and refunded["history"][-1]["event"] == "refunded"

    # An admin refunds part of a paid order (a unit arrived hurt, say).
    key = {"Idempotency-Key": str(uuid.uuid4())}
    third = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, quantity=2)), timeout=30,
                       describe="orders sees the units back").json()
    refund = {"orderId": third["id"], "amount": {"amount": 500, "currency": "GBP"}, "reason": "One bowl arrived cracked."}
    intent_of(gateway, token, third)
    gateway.post("/v1/admin/refunds", json=refund, token=admin, headers=key).expect_problem(409, "invalid-transition")
    pay(gateway, token, third)
    gateway.post("/v1/admin/refunds", json=refund, headers=key).expect_problem(401, "unauthorized")
    gateway.post("/v1/admin/refunds", json=refund, token=token, headers=key).expect_problem(403, "forbidden")
    gateway.post("/v1/admin/refunds", json=refund, token=admin).expect_problem(400, "idempotency-key-required")
    gateway.post("/v1/admin/refunds", json={**refund, "orderId": str(uuid.uuid4())}, token=admin,
                 headers={"Idempotency-Key": str(uuid.uuid4())}).expect_problem(404, "not-found")
    bad = gateway.post("/v1/admin/refunds", json={"orderId": "x", "amount": {"amount": 0, "currency": "GBP"}, "reason": ""}, token=admin,
                       headers={"Idempotency-Key": str(uuid.uuid4())}).expect_problem(422, "validation-failed")
    assert {e["field"] for e in bad["errors"]} == {"orderId", "amount.amount", "reason"}
    too_much = {**refund, "amount": {"amount": third["total"]["amount"] + 1, "currency": "GBP"}}
    gateway.post("/v1/admin/refunds", json=too_much, token=admin, headers={"Idempotency-Key": str(uuid.uuid4())}).expect_problem(422, "validation-failed")
    made = gateway.post("/v1/admin/refunds", json=refund, token=admin, headers=key).expect(201)
    again = gateway.post("/v1/admin/refunds", json=refund, token=admin, headers=key).expect(201)
    assert again.header("idempotent-replayed") == "true" and again.json() == made.json()
    assert made.json()["amount"] == refund["amount"] and made.json()["status"] == "pending"
    partly = wait_for(gateway, token, third["id"], lambda o: o["refundedAmount"]["amount"] == 500, "the part refunded")
    assert partly["status"] == "paid" and partly["payment"]["status"] == "succeeded"
    trial = gateway.get("/v1/admin/ledger/trial-balance", token=admin).expect(200).json()
    assert all(c["debits"] == c["credits"] for c in trial["currencies"])
    assert sum(a["balance"] for a in trial["accounts"]) == 0
