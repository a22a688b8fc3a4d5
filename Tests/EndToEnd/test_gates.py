"""The gates every domain service keeps, through the gateway: an unverified email may browse but
not publish, order or write; a suspended account can do none of it (its tokens stop working at
once and it cannot sign in) and its listings leave search until it is reinstated."""

from __future__ import annotations

from e2e_support import wait_until
from test_listings import BOWL, admin, broker, entitle, moderator, verified  # noqa: F401 (fixtures)
from test_orders import ADDRESS, orderable_listing, place


def test_an_unverified_email_and_a_suspended_account_are_stopped_at_every_gate(suite, gateway, register, broker, moderator, admin):  # noqa: F811
    vendor, vendor_token, lid = orderable_listing(suite, gateway, register, broker, moderator, quantity=5)

    # Unverified: reading is fine; publishing, ordering and writing are not.
    newcomer = register("vendor", display_name="Unverified Vendor")
    fresh = newcomer.access_token
    entitle(broker, newcomer.id, 1, quota=5)
    draft = gateway.post("/v1/listings", json=BOWL, token=fresh).expect(201).json()
    gateway.post(f"/v1/listings/{draft['id']}/publish", token=fresh).expect_problem(403, "email-not-verified")
    place(gateway, fresh, lid).expect_problem(403, "email-not-verified")
    gateway.post("/v1/conversations", json={"listingId": lid, "body": "Hello"}, token=fresh).expect_problem(403, "email-not-verified")
    assert gateway.get(f"/v1/listings/{lid}", token=fresh).expect(200).json()["id"] == lid

    # Suspended: the buyer's token stops working everywhere, signing in is refused.
    buyer = register("buyer", display_name="Soon Suspended")
    token = verified(suite, buyer)
    wait_until(lambda: place(gateway, token, lid).status == 201, timeout=30, describe="the buyer may order")
    gateway.post(f"/v1/admin/users/{buyer.id}/suspend", json={"reason": "fraud checks"}, token=admin).expect(200)
    wait_until(lambda: gateway.get("/v1/orders", token=token, validate=False).status == 401, timeout=10, interval=0.1,
               describe="the suspended buyer's token refused")
    gateway.post("/v1/orders", json={"listingId": lid, "quantity": 1, "shippingAddress": ADDRESS}, token=token,
                 headers={"Idempotency-Key": "suspended-1"}).expect_problem(401, "unauthorized")
    gateway.post("/v1/conversations", json={"listingId": lid, "body": "Hello"}, token=token).expect_problem(401, "unauthorized")
    gateway.post("/v1/auth/login", json={"email": buyer.email, "password": buyer.password}).expect_problem(403, "account-suspended")

    # A suspended vendor: can no longer manage listings, and they leave search until reinstated.
    gateway.post(f"/v1/admin/users/{vendor.id}/suspend", json={"reason": "fraud checks"}, token=admin).expect(200)
    wait_until(lambda: gateway.get("/v1/vendor/listings", token=vendor_token, validate=False).status == 401, timeout=10, interval=0.1,
               describe="the suspended vendor's token refused")
    gateway.post(f"/v1/listings/{lid}/close", token=vendor_token).expect_problem(401, "unauthorized")
    gateway.post("/v1/auth/login", json={"email": vendor.email, "password": vendor.password}).expect_problem(403, "account-suspended")
    wait_until(lambda: gateway.get(f"/v1/listings/{lid}").status == 404, timeout=20, describe="the listing hidden")
    gateway.post(f"/v1/admin/users/{vendor.id}/reinstate", json={"reason": "cleared"}, token=admin).expect(200)
    wait_until(lambda: gateway.get(f"/v1/listings/{lid}").status == 200, timeout=20, describe="the listing back")
