"""Listings through the gateway: a vendor's whole day (create, bad attributes, publish refused
without a verified email or an entitlement, the entitlement event, review, publish, quota,
search by each filter, visibility from entitlement and suspension), moderation, and stock for
orders. Billing and orders do not exist yet, so their events are produced on the dev broker
with kcat, as those services will produce them. Every answer is checked against openapi.yaml."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import pytest

from e2e_support import PASSWORD, kcat, psql, sql_literal, unique_email, wait_until
from test_contract_fuzzing import _signed_in_staff
from test_identity_journey import create_admin

DOG = {
    "category": "dogs",
    "title": "Border collie puppies, KC registered",
    "description": "Two bitches from a working line.\nVet checked, first vaccinations done.",
    "attributes": {"breed": "Border Collie", "sex": "female", "birthDate": "2026-09-01", "pedigree": True, "color": "black and white"},
    "price": {"amount": 85000, "currency": "GBP"},
    "quantity": 2,
    "location": {"lat": 52.3992, "lon": 0.2628, "city": "Ely", "country": "GB"},
    "media": [{"url": "https://img.example.com/collie-1.jpg", "alt": "Two puppies on straw"}],
}
BOWL = {
    "category": "pet-supplies",
    "title": "Ceramic feeding bowl",
    "description": "Heavy, dishwasher safe.",
    "attributes": {"condition": "new", "brand": "Crockford", "suitableFor": ["dogs", "cats"]},
    "price": {"amount": 1899, "currency": "GBP"},
    "quantity": 5,
    "location": {"lat": 51.4545, "lon": -2.5879, "city": "Bristol", "country": "GB"},
}


def patch(gateway, path, body, token, *, if_match=None, raw=None, content_type="application/merge-patch+json"):
    headers = {"Content-Type": content_type}
    if if_match is not None:
        headers["If-Match"] = if_match
    data = raw if raw is not None else json.dumps(body).encode()
    return gateway.request("PATCH", path, body=data, headers=headers, token=token)


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def produce(broker: str, topic: str, key: str, type_: str, source: str, payload: dict, event_id: str | None = None) -> str:
    """One CloudEvent in binary mode, as the producing service's outbox relay sends it."""
    event_id = event_id or str(uuid.uuid4())
    headers = {"ce_specversion": "1.0", "ce_id": event_id, "ce_type": type_, "ce_source": source, "ce_time": now_rfc3339(),
               "content-type": "application/json"}
    args = ["-b", broker, "-P", "-t", topic, "-k", key]
    for name, value in headers.items():
        args += ["-H", f"{name}={value}"]
    kcat(*args, stdin=json.dumps(payload).encode())
    return event_id


def entitle(broker: str, vendor_id: str, version: int, *, may_publish=True, may_list=True, quota=10, status="active") -> None:
    produce(broker, "billing.entitlements.v1", vendor_id, "marketplace.billing.entitlement.changed.v1", "/marketplace/billing", {
        "vendorId": vendor_id, "mayPublish": may_publish, "mayList": may_list, "listingQuota": quota, "commissionBps": 800,
        "subscriptionStatus": status, "reason": "test", "effectiveAt": now_rfc3339(), "version": version})


def stock_answers(broker: str, order_ids: set[str]) -> list[tuple[str, dict]]:
    """(type, payload) of every answer on listings.stock.v1 about these orders, in order."""
    dump = kcat("-b", broker, "-C", "-t", "listings.stock.v1", "-o", "beginning", "-e", "-q", "-f", "%h\t%s\n")
    answers = []
    for line in dump.splitlines():
        headers, _, value = line.partition("\t")
        if not value:
            continue
        payload = json.loads(value)
        if payload.get("orderId") in order_ids:
            type_ = next(part.split("=", 1)[1] for part in headers.split(",") if part.startswith("ce_type="))
            answers.append((type_.rsplit(".", 2)[-2], payload))
    return answers


@pytest.fixture(scope="module")
def broker(suite) -> str:
    return suite.suite.kafka_bootstrap_servers


@pytest.fixture(scope="module")
def admin(suite, gateway) -> str:
    email = unique_email("listings-admin")
    create_admin(suite, email, PASSWORD)
    return _signed_in_staff(gateway, email)


@pytest.fixture(scope="module")
def moderator(gateway, register, admin) -> str:
    user = register("buyer", display_name="Listings Moderator")
    gateway.put(f"/v1/admin/users/{user.id}/roles", json={"roles": ["buyer", "moderator"], "reason": "moderation desk"}, token=admin).expect(200)
    return _signed_in_staff(gateway, user.email)


def verified(suite, user) -> str:
    """Marks the user's email verified and signs in again (the claim is in the token). The mailed
    token's flow is identity's and tested there (test_account_recovery.py); by the time this module
    runs, the fuzzers have used up this address's allowance of verification attempts."""
    psql(suite.superuser_dsn, f"UPDATE identity.users SET email_verified = true WHERE id = {sql_literal(user.id)}")
    user.tokens = {}
    return user.access_token


def search(gateway, **query) -> dict:
    return gateway.get("/v1/listings", query=query).expect(200).json()


def found(gateway, listing_id: str, **query) -> bool:
    return any(item["id"] == listing_id for item in search(gateway, limit=100, **query)["items"])


def test_categories_are_public_and_cacheable(gateway):
    listed = gateway.get("/v1/categories").expect(200)
    categories = {c["slug"]: c for c in listed.json()["items"]}
    assert {"dogs", "cats", "pet-supplies", "pet-food"} <= set(categories)
    assert categories["pet-food"]["parent"] == "pet-supplies"
    assert categories["dogs"]["requiresReview"] is True and "breed" in categories["dogs"]["facetAttributes"]
    gateway.get("/v1/categories", headers={"If-None-Match": listed.header("etag")}).expect(304)
    one = gateway.get("/v1/categories/dogs").expect(200)
    assert one.json()["attributeSchema"]["required"] == ["breed", "sex", "birthDate"]
    gateway.get("/v1/categories/dogs", headers={"If-None-Match": one.header("etag")}).expect(304)
    gateway.get("/v1/categories/unicorns").expect_problem(404, "not-found")


def test_a_vendors_day(suite, gateway, register, broker, moderator, admin):
    vendor = register("vendor", display_name="Ada Fenland")
    buyer = register("buyer")
    token = vendor.access_token

    # Creating: vendors only, and every bad field named at once.
    gateway.post("/v1/listings", json=DOG).expect_problem(401, "unauthorized")
    gateway.post("/v1/listings", json=DOG, token=buyer.access_token).expect_problem(403, "forbidden")
    gateway.post("/v1/listings", body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    bad = {**DOG, "title": "Hi", "attributes": {"sex": "puppy", "colour": "red"}, "price": {"amount": 0, "currency": "GBP"},
           "location": {**DOG["location"], "lat": 123}, "media": [{"url": "ftp://example.com/a.jpg"}]}
    problem = gateway.post("/v1/listings", json=bad, token=token).expect_problem(422, "validation-failed")
    fields = {e["field"] for e in problem["errors"]}
    assert {"title", "attributes.breed", "attributes.birthDate", "attributes.sex", "attributes.colour", "price.amount",
            "location.lat", "media.0.url"} <= fields, fields
    gateway.post("/v1/listings", json={**DOG, "category": "unicorns"}, token=token).expect_problem(422, "validation-failed")

    created = gateway.post("/v1/listings", json=DOG, token=token).expect(201)
    listing = created.json()
    lid = listing["id"]
    assert created.header("location") == f"/v1/listings/{lid}" and created.header("etag") == '"1"'
    assert listing["status"] == "draft" and listing["quantityAvailable"] == 2 and listing["hiddenReason"] is None
    assert listing["vendor"]["rating"] is None and listing["vendor"]["ratingCount"] == 0
    # The business name comes from identity's registration event, projected shortly after.
    wait_until(lambda: gateway.get(f"/v1/listings/{lid}", token=token).json()["vendor"]["businessName"] == "Ada Fenland Kennels",
               timeout=10, describe="the vendor's business name projected")

    # A draft exists only for its vendor and staff.
    gateway.get(f"/v1/listings/{lid}").expect_problem(404, "not-found")
    gateway.get(f"/v1/listings/{lid}", token=buyer.access_token).expect_problem(404, "not-found")
    gateway.get(f"/v1/listings/not-a-uuid").expect_problem(404, "not-found")
    own = gateway.get(f"/v1/listings/{lid}", token=token).expect(200)
    assert own.header("etag") == '"1"' and own.header("cache-control") == "private, no-store"
    gateway.get(f"/v1/listings/{lid}", token=moderator).expect(200)

    # Editing: a merge patch against the version read.
    path = f"/v1/listings/{lid}"
    patch(gateway, path, {"title": "Border collie puppies"}, token).expect_problem(428, "precondition-required")
    mismatch = patch(gateway, path, {"title": "Border collie puppies"}, token, if_match='"7"')
    mismatch.expect_problem(412, "version-mismatch")
    assert mismatch.header("etag") == '"1"'
    patch(gateway, path, None, token, if_match='"1"', raw=b"not json").expect_problem(400, "malformed-request")
    patch(gateway, path, [1, 2], token, if_match='"1"').expect_problem(422, "validation-failed")
    wrong = patch(gateway, path, {"attributes": {"sex": "unknown"}, "quantity": -1}, token, if_match='"1"').expect_problem(422, "validation-failed")
    assert {e["field"] for e in wrong["errors"]} == {"attributes.sex", "quantity"}
    patch(gateway, path, {"title": "x"}, buyer.access_token, if_match='"1"').expect_problem(403, "forbidden")
    edited = patch(gateway, path, {"title": "Border collie puppies", "location": {"region": "Cambridgeshire"}}, token, if_match='"1"',
                   content_type="application/json").expect(200)
    assert edited.header("etag") == '"2"'
    assert edited.json()["location"] == {**DOG["location"], "region": "Cambridgeshire"}, "objects merge member by member"

    # Publishing needs a verified email, then an entitlement that allows it.
    publish = f"/v1/listings/{lid}/publish"
    gateway.post(publish, token=token).expect_problem(403, "email-not-verified")
    token = verified(suite, vendor)
    gateway.post(publish, token=token).expect_problem(403, "subscription-required")
    gateway.post(publish, token=buyer.access_token).expect_problem(403, "forbidden")
    gateway.post(publish, token=token, headers={"If-Match": '"1"'}).expect_problem(412, "version-mismatch")
    entitle(broker, vendor.id, 2, quota=2)
    entitle(broker, vendor.id, 1, may_publish=False, may_list=False, quota=0)  # older: must not undo version 2
    submitted = wait_until(lambda: (lambda r: r.json() if r.status == 200 else None)(gateway.post(publish, token=token)),
                           timeout=20, describe="publishing once the entitlement arrived")
    assert submitted["status"] == "pending_review", "dogs are reviewed, and so are a vendor's first listings"
    gateway.post(publish, token=token).expect_problem(409, "invalid-transition")

    # The review queue, oldest first; a rejection needs a reason and reaches the vendor.
    gateway.get("/v1/moderation/listings").expect_problem(401, "unauthorized")
    gateway.get("/v1/moderation/listings", token=token).expect_problem(403, "forbidden")
    gateway.get("/v1/moderation/listings", query={"status": "published"}, token=moderator).expect_problem(422, "validation-failed")
    queue = gateway.get("/v1/moderation/listings", query={"limit": 100}, token=moderator).expect(200).json()
    assert lid in [item["id"] for item in queue["items"]]
    submitted_times = [item["submittedAt"] for item in queue["items"]]
    assert submitted_times == sorted(submitted_times)
    reject = f"/v1/moderation/listings/{lid}/reject"
    gateway.post(reject, json={}, token=moderator).expect_problem(422, "validation-failed")
    gateway.post(reject, body=b"[", headers={"Content-Type": "application/json"}, token=moderator).expect_problem(400, "malformed-request")
    gateway.post(reject, json={"reason": "x"}, token=token).expect_problem(403, "forbidden")
    gateway.post(reject, json={"reason": "no"}, token=None).expect_problem(401, "unauthorized")
    gateway.post(f"/v1/moderation/listings/{uuid.uuid4()}/reject", json={"reason": "Photos missing"}, token=moderator).expect_problem(404, "not-found")
    rejected = gateway.post(reject, json={"reason": "The photos show an adult dog."}, token=moderator).expect(200).json()
    assert rejected["status"] == "rejected" and rejected["rejectionReason"] == "The photos show an adult dog."
    gateway.post(reject, json={"reason": "Twice"}, token=moderator).expect_problem(409, "invalid-transition")
    mine = gateway.get("/v1/vendor/listings", query={"status": "rejected"}, token=token).expect(200).json()
    assert [item["id"] for item in mine["items"]] == [lid]
    gateway.get("/v1/vendor/listings", query={"status": "lost"}, token=token).expect_problem(422, "validation-failed")
    gateway.get("/v1/vendor/listings", token=buyer.access_token).expect_problem(403, "forbidden")
    gateway.get("/v1/vendor/listings").expect_problem(401, "unauthorized")

    # Edited and resubmitted; approved, it is public and found by every filter.
    patch(gateway, path, {"media": [{"url": "https://img.example.com/collie-2.jpg"}]}, token, if_match=f'"{rejected["version"]}"').expect(200)
    assert gateway.post(publish, token=token).expect(200).json()["status"] == "pending_review"
    approved = gateway.post(f"/v1/moderation/listings/{lid}/approve", token=moderator).expect(200).json()
    assert approved["status"] == "published" and approved["publishedAt"] is not None
    public = gateway.get(path).expect(200)
    assert public.header("cache-control").startswith("public") and public.header("etag").startswith('W/"')
    assert public.json()["hiddenReason"] is None and public.json()["rejectionReason"] is None
    gateway.get(path, headers={"If-None-Match": public.header("etag")}).expect(304)
    vendor_id = vendor.id
    wait_until(lambda: found(gateway, lid, q="collie"), timeout=5, describe="the published listing in search")
    for query in ({"q": "border col"}, {"q": "puppy"}, {"category": "dogs"}, {"attr.breed": "border collie"},
                  {"attr.sex": "female", "category": "dogs"}, {"attr.sex": "male", "attr.sex": "female"}, {"attr.birthDate.min": "2026-08-01"},
                  {"attr.pedigree": "true"}, {"priceMin": 80000, "priceMax": 90000, "currency": "GBP"},
                  {"near": "52.2053,0.1218", "radiusKm": 40, "sort": "distance"}, {"vendor": vendor_id}, {"sort": "price_desc"}):
        assert found(gateway, lid, **query), query
    assert not found(gateway, lid, **{"attr.birthDate.max": "2026-08-01"})
    assert not found(gateway, lid, near="55.9533,-3.1883", radiusKm=100)
    assert not found(gateway, lid, minRating=3)
    faceted = search(gateway, category="dogs", facets="category,attr.breed,attr.sex", vendor=vendor_id)
    assert faceted["totalEstimate"] == 1
    assert faceted["facets"]["attr.breed"] == [{"value": "Border Collie", "count": 1}]
    item = faceted["items"][0]
    assert item["vendor"] == {"id": vendor_id, "displayName": "Ada Fenland", "rating": None} and item["distanceKm"] is None
    assert item["image"] == "https://img.example.com/collie-2.jpg"
    cached = gateway.get("/v1/listings", query={"vendor": vendor_id}).expect(200)
    gateway.get("/v1/listings", query={"vendor": vendor_id}, headers={"If-None-Match": cached.header("etag")}).expect(304)
    for typo in ({"colour": "red"}, {"attr.colour": "red"}, {"category": "dogs", "attr.condition": "new"}, {"sort": "distance"}):
        gateway.get("/v1/listings", query=typo).expect_problem(422, "validation-failed")

    # The quota counts published and pending listings.
    second = gateway.post("/v1/listings", json=BOWL, token=token).expect(201).json()
    third = gateway.post("/v1/listings", json={**BOWL, "title": "Stainless bowl"}, token=token).expect(201).json()
    assert gateway.post(f"/v1/listings/{second['id']}/publish", token=token).expect(200).json()["status"] == "pending_review"
    gateway.post(f"/v1/listings/{third['id']}/publish", token=token).expect_problem(409, "listing-quota-exceeded")

    # A lowered quota hides the most recently published excess; a lapsed subscription hides all; both come back unchanged.
    entitle(broker, vendor.id, 3, quota=1)
    gateway.post(f"/v1/moderation/listings/{second['id']}/approve", token=moderator).expect(200)
    def hidden(listing_id, reason):
        answer = gateway.get(f"/v1/listings/{listing_id}", token=token).expect(200).json()
        return answer["hiddenReason"] == reason
    wait_until(lambda: hidden(second["id"], "over_quota"), timeout=20,
               describe=lambda: f"the excess listing hidden: {gateway.get('/v1/vendor/listings', token=token).json()['items']}")
    assert hidden(lid, None)
    gateway.get(f"/v1/listings/{second['id']}").expect_problem(404, "not-found")
    wait_until(lambda: not found(gateway, second["id"]), timeout=5, describe="the hidden listing gone from search")
    before = gateway.get(path, token=token).expect(200).json()
    entitle(broker, vendor.id, 4, may_publish=False, may_list=False, quota=1, status="suspended")
    wait_until(lambda: hidden(lid, "subscription_inactive"), timeout=20, describe="listings hidden without a subscription")
    gateway.get(path).expect_problem(404, "not-found")
    wait_until(lambda: not found(gateway, lid), timeout=5, describe="hidden listing gone from search")
    listed = gateway.get("/v1/vendor/listings", token=token).expect(200).json()["items"]
    assert {item["id"]: item["hiddenReason"] for item in listed if item["status"] == "published"} == {
        lid: "subscription_inactive", second["id"]: "subscription_inactive"}
    entitle(broker, vendor.id, 5, quota=5)
    wait_until(lambda: hidden(lid, None) and hidden(second["id"], None), timeout=20, describe="listings back with the subscription")
    after = gateway.get(path, token=token).expect(200).json()
    assert {k: v for k, v in after.items() if k != "updatedAt"} == {k: v for k, v in before.items() if k != "updatedAt"}
    wait_until(lambda: found(gateway, lid) and found(gateway, second["id"]), timeout=5, describe="both back in search")

    # A suspended vendor's listings are hidden, and reappear on reinstatement.
    gateway.post(f"/v1/admin/users/{vendor.id}/suspend", json={"reason": "chargebacks"}, token=admin).expect(200)
    wait_until(lambda: gateway.get(path).status == 404, timeout=20, describe="suspension hides the listing")
    assert not found(gateway, lid)
    gateway.post(f"/v1/admin/users/{vendor.id}/reinstate", json={"reason": "resolved"}, token=admin).expect(200)
    wait_until(lambda: gateway.get(path).status == 200, timeout=20, describe="reinstatement shows it again")
    vendor.tokens = {}  # suspension ended the vendor's sessions: sign in again
    token = vendor.access_token

    # Closing and reopening; deleting drafts and closed ones only.
    close = f"/v1/listings/{second['id']}/close"
    gateway.post(close, token=token, headers={"If-Match": '"99"'}).expect_problem(412, "version-mismatch")
    gateway.post(close, token=buyer.access_token).expect_problem(403, "forbidden")
    closed = gateway.post(close, token=token).expect(200).json()
    assert closed["status"] == "closed"
    gateway.post(close, token=token).expect_problem(409, "invalid-transition")
    wait_until(lambda: not found(gateway, second["id"]), timeout=5, describe="a closed listing leaves search")
    gateway.delete(path, token=token).expect_problem(409, "invalid-transition")
    gateway.delete(f"/v1/listings/{third['id']}", token=token, headers={"If-Match": '"5"'}).expect_problem(412, "version-mismatch")
    gateway.delete(f"/v1/listings/{third['id']}", token=buyer.access_token).expect_problem(403, "forbidden")
    gateway.delete(f"/v1/listings/{third['id']}", token=token).expect(204)
    gateway.delete(f"/v1/listings/{third['id']}", token=token).expect_problem(404, "not-found")
    reopened = gateway.post(f"/v1/listings/{second['id']}/publish", token=token).expect(200).json()
    assert reopened["status"] == "pending_review", "a vendor's first three listings are reviewed, reopening included"

    # A moderator removes a published listing for good.
    remove = f"/v1/moderation/listings/{lid}/remove"
    gateway.post(remove, token=moderator, json={}).expect_problem(422, "validation-failed")
    removed = gateway.post(remove, json={"reason": "Sold outside the platform."}, token=moderator).expect(200).json()
    assert removed["status"] == "removed"
    gateway.post(f"/v1/moderation/listings/{lid}/approve", token=moderator).expect_problem(409, "invalid-transition")
    gateway.post(remove, json={"reason": "Removed twice."}, token=moderator).expect_problem(409, "invalid-transition")
    patch(gateway, path, {"title": "Back again"}, token, if_match=f'"{removed["version"]}"').expect_problem(409, "invalid-transition")
    gateway.get(path).expect_problem(404, "not-found")
    wait_until(lambda: not found(gateway, lid), timeout=5, describe="a removed listing leaves search")


def test_stock_is_reserved_once_per_order_and_released(suite, gateway, register, broker, moderator):
    vendor = register("vendor", display_name="Stock Vendor")
    token = verified(suite, vendor)
    entitle(broker, vendor.id, 1, quota=10)
    listing = gateway.post("/v1/listings", json={**BOWL, "quantity": 3}, token=token).expect(201).json()
    lid = listing["id"]
    wait_until(lambda: gateway.post(f"/v1/listings/{lid}/publish", token=token).status == 200, timeout=20, describe="publishing once entitled")
    gateway.post(f"/v1/moderation/listings/{lid}/approve", token=moderator).expect(200)

    def order(order_id, buyer_id, quantity=1, event_id=None):
        return produce(broker, "orders.orders.v1", order_id, "marketplace.orders.order.placed.v1", "/marketplace/orders",
                       {"orderId": order_id, "listingId": lid, "buyerId": buyer_id, "quantity": quantity, "placedAt": now_rfc3339()},
                       event_id=event_id)

    # Five buyers for three units, and the first order delivered twice (once under a new event id).
    orders = [str(uuid.uuid4()) for _ in range(5)]
    for order_id in orders:
        order(order_id, str(uuid.uuid4()))
    order(orders[0], str(uuid.uuid4()))
    own = str(uuid.uuid4())
    order(own, vendor.id)
    answers = wait_until(lambda: (lambda found: found if len(found) >= 6 else None)(stock_answers(broker, set(orders) | {own})),
                         timeout=30, describe="listings' answers to six orders")
    time.sleep(1)
    answers = stock_answers(broker, set(orders) | {own})
    assert len(answers) == 6, answers
    reserved = [p for t, p in answers if t == "reserved"]
    rejected = {p["orderId"]: p["reason"] for t, p in answers if t == "rejected"}
    assert len(reserved) == 3 and len({p["orderId"] for p in reserved}) == 3
    assert rejected[own] == "own_listing"
    assert sorted(reason for order_id, reason in rejected.items() if order_id != own) == ["insufficient_stock", "insufficient_stock"]
    snapshot = reserved[0]
    assert (snapshot["title"], snapshot["unitPriceAmount"], snapshot["currency"], snapshot["vendorId"]) == (
        BOWL["title"], BOWL["price"]["amount"], "GBP", vendor.id)

    # Sold out: gone from search. A canceled order gives its unit back.
    sold = gateway.get(f"/v1/listings/{lid}", token=token).expect(200).json()
    assert (sold["status"], sold["quantityAvailable"], sold["quantity"]) == ("sold", 0, 3)
    wait_until(lambda: not found(gateway, lid), timeout=5, describe="a sold-out listing leaves search")
    too_few = patch(gateway, f"/v1/listings/{lid}", {"quantity": 2}, token, if_match=f'"{sold["version"]}"').expect_problem(422, "validation-failed")
    assert too_few["errors"][0]["field"] == "quantity"
    paid, canceled = reserved[0]["orderId"], reserved[1]["orderId"]
    produce(broker, "orders.orders.v1", paid, "marketplace.orders.order.paid.v1", "/marketplace/orders",
            {"orderId": paid, "listingId": lid, "paidAt": now_rfc3339()})
    produce(broker, "orders.orders.v1", canceled, "marketplace.orders.order.canceled.v1", "/marketplace/orders",
            {"orderId": canceled, "listingId": lid, "reason": "payment_timeout", "canceledAt": now_rfc3339()})
    back = wait_until(lambda: (lambda l: l if l["status"] == "published" else None)(
        gateway.get(f"/v1/listings/{lid}", token=token).expect(200).json()), timeout=20, describe="the released unit back on sale")
    assert back["quantityAvailable"] == 1
    wait_until(lambda: found(gateway, lid), timeout=5, describe="back in search")
    released = [p for t, p in stock_answers(broker, {canceled}) if t == "released"]
    assert released == [{**released[0], "orderId": canceled, "listingId": lid, "quantity": 1}]


def test_every_listing_action_refuses_strangers_unknown_ids_and_bad_bodies(suite, gateway, direct, register, moderator):
    vendor = register("vendor")
    buyer = register("buyer")
    unknown = str(uuid.uuid4())
    vendor_actions = [("POST", "/v1/listings/{id}/publish", None), ("POST", "/v1/listings/{id}/close", None),
                      ("DELETE", "/v1/listings/{id}", None), ("PATCH", "/v1/listings/{id}", {"title": "A new title"})]
    moderator_actions = [("POST", f"/v1/moderation/listings/{{id}}/{action}", {"reason": "Not allowed here."})
                         for action in ("approve", "reject", "remove")]
    for method, template, body in vendor_actions + moderator_actions:
        path = template.format(id=unknown)
        headers = {"If-Match": '"1"', "Content-Type": "application/json"} if method == "PATCH" else {}
        data = json.dumps(body).encode() if body is not None else None
        answer = gateway.request(method, path, body=data, headers=headers)
        answer.expect_problem(401, "unauthorized")
        assert (answer.header("www-authenticate") or "").startswith("Bearer")
        wrong_role = buyer.access_token
        gateway.request(method, path, body=data, headers=headers, token=wrong_role).expect_problem(403, "forbidden")
        right_role = moderator if "moderation" in template else vendor.access_token
        gateway.request(method, path, body=data, headers=headers, token=right_role).expect_problem(404, "not-found")
    # A bad token on a public read is refused, not read as anonymous (the service checks too).
    direct["listings"].get(f"/v1/listings/{unknown}", headers={"Authorization": "Bearer nonsense"}).expect_problem(401, "unauthorized")
    gateway.get(f"/v1/listings/{unknown}", headers={"Authorization": "Bearer nonsense"}).expect_problem(401, "unauthorized")

    # Bodies: not JSON is a 400, a reason too short a 422, approving takes an optional reason.
    token = verified(suite, vendor)
    draft = gateway.post("/v1/listings", json={**BOWL, "quantity": 0}, token=token).expect(201).json()
    entitle(suite.suite.kafka_bootstrap_servers, vendor.id, 1)
    problem = wait_until(lambda: (lambda r: r.json() if r.status == 422 else None)(
        gateway.post(f"/v1/listings/{draft['id']}/publish", token=token)), timeout=20, describe="publishing nothing to sell refused")
    assert problem["errors"] == [{"field": "quantity", "message": "must be at least 1 to publish"}]
    patch(gateway, f"/v1/listings/{draft['id']}", {"quantity": 1}, token, if_match='"1"').expect(200)
    gateway.post(f"/v1/listings/{draft['id']}/publish", token=token).expect(200)
    for action in ("approve", "reject", "remove"):
        path = f"/v1/moderation/listings/{draft['id']}/{action}"
        gateway.post(path, body=b"{", headers={"Content-Type": "application/json"}, token=moderator).expect_problem(400, "malformed-request")
        gateway.post(path, json={"reason": " x "}, token=moderator).expect_problem(422, "validation-failed")
    approved = gateway.post(f"/v1/moderation/listings/{draft['id']}/approve", json={"reason": "Looks right."}, token=moderator).expect(200).json()
    assert approved["status"] == "published"
