"""The whole marketplace as one story, from empty databases (a suite of its own), through the
gateway only, with mails read from the catcher and time moved with the test clock.

A vendor registers, follows the mailed link, subscribes on a trial and lists five dogs (one
rejected by a moderator, fixed and approved). Two buyers verify their addresses the same way,
search with filters and facets, write to the vendor (a phone number masked until an order is
paid) and order. One order runs to receipt, a payout and two published reviews; one is canceled
after payment and refunded; one is disputed and partly refunded. The vendor's card starts failing:
the trial's first charge fails, dunning runs its eight tries, the subscription is suspended and
the listings leave search; a working card brings them back. A buyer exports, then erases their
data. At the end the ledger balances, every mail expected was sent exactly once, and every answer
matched its service's openapi.yaml (the client checks each one)."""

from __future__ import annotations

import collections
import json
import re
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import launched_suite
from e2e_http import Api
from e2e_support import PASSWORD, advance_clock, unique_email, wait_until
from test_contract_fuzzing import _signed_in_staff
from test_identity_journey import create_admin
from test_listings import DOG

PHONE = "07700 900123"
ADDRESS = {"line1": "4 Mill Row", "city": "Harrogate", "postalCode": "HG1 2AB", "country": "GB"}


@pytest.fixture(scope="module")
def world(contracts, request):
    """A suite of its own: empty databases, an empty mail catcher, the clock at today."""
    work = Path(tempfile.mkdtemp(prefix="marketplace-journey-"))
    work.chmod(0o755)
    with launched_suite(work, lambda: bool(request.session.testsfailed)) as suite:
        yield suite, Api(suite.gateway_url, "gateway", contracts, wait_out_rate_limits=True)


def mails(suite, address: str) -> list[dict]:
    query = urllib.parse.quote(f"to:{address}")
    with urllib.request.urlopen(f"{suite.mail_url}/api/v1/search?query={query}", timeout=5) as answer:
        return json.load(answer)["messages"]


def mail_text(suite, mail_id: str) -> str:
    with urllib.request.urlopen(f"{suite.mail_url}/api/v1/message/{mail_id}", timeout=5) as answer:
        return json.load(answer)["Text"]


class Person:
    """Someone who signs up through the gateway and confirms their address from the mailed link."""

    def __init__(self, suite, api: Api, role: str, name: str, business: str | None = None):
        self.api, self.name, self.role = api, name, role
        self.email = unique_email(name.split()[0].lower())
        body = {"email": self.email, "password": PASSWORD, "displayName": name, "role": role}
        if business:
            body["businessProfile"] = {"businessName": business, "location": {"city": "Ripon", "country": "GB"}}
        self.id = api.post("/v1/auth/register", json=body).expect(201).json()["id"]
        sent = wait_until(lambda: mails(suite, self.email), timeout=30, describe=f"{name}'s verification mail")
        assert [m["Subject"] for m in sent] == ["Confirm your email address"]
        link = re.search(r"Confirm my address: (\S+)", mail_text(suite, sent[0]["ID"])).group(1)
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
        api.post("/v1/auth/verify-email", json={"token": token}).expect(204)
        self.token = api.post("/v1/auth/login", json={"email": self.email, "password": PASSWORD}).expect(200).json()["accessToken"]
        assert api.get("/v1/users/me", token=self.token).expect(200).json()["emailVerified"] is True


def poll(describe, fetch, ok, timeout=30):
    """`fetch()` until `ok` holds of its answer, which is returned; on timeout, the last answer is shown."""
    last = []

    def attempt():
        value = fetch()
        last[:] = [value]
        return (value,) if ok(value) else None  # a tuple: an empty answer may be the one awaited
    try:
        return wait_until(attempt, timeout=timeout, describe=describe)[0]
    except AssertionError as error:
        raise AssertionError(f"{error}; the last answer: {json.dumps(last[0], default=str)[:2000] if last else None}") from None


def test_the_marketplace_from_sign_up_to_erasure(world):
    suite, api = world

    # Staff: the first admin from the command line (an operator's step), a moderator named by it.
    admin_email = unique_email("journey-admin")
    create_admin(suite, admin_email, PASSWORD)
    admin = _signed_in_staff(api, admin_email)
    mod = Person(suite, api, "buyer", "Moira Desk")
    api.put(f"/v1/admin/users/{mod.id}/roles", json={"roles": ["buyer", "moderator"], "reason": "moderation desk"}, token=admin).expect(200)
    moderator = _signed_in_staff(api, mod.email)

    # The vendor signs up, verifies, and starts a trial with a card that works.
    vera = Person(suite, api, "vendor", "Vera Fenwick", business="Fenwick Labradors")
    plans = api.get("/v1/plans").expect(200).json()["items"]
    assert "breeder-monthly" in [p["code"] for p in plans]
    sub = api.post("/v1/subscriptions", json={"plan": "breeder-monthly", "paymentMethod": "pm_card_visa"}, token=vera.token,
                   headers={"Idempotency-Key": str(uuid.uuid4())}).expect(201).json()
    assert sub["status"] == "trialing" and sub["trialEnd"] is not None
    sub_path = f"/v1/subscriptions/{sub['id']}"

    # Five dogs: every dog is reviewed; one is rejected, fixed and approved.
    names = ["Bramble", "Juniper", "Clover", "Hazel", "Sorrel"]
    listings = []
    for index, name in enumerate(names):
        body = {**DOG, "title": f"Labrador puppy {name}", "attributes": {**DOG["attributes"], "breed": "Labrador Retriever",
                                                                      "sex": "male" if index % 2 else "female", "color": "yellow"},
                "price": {"amount": 90000 + 5000 * index, "currency": "GBP"}, "quantity": 1}
        created = api.post("/v1/listings", json=body, token=vera.token).expect(201).json()
        submitted = poll("publishing once the trial's entitlement arrived",
                         lambda: api.post(f"/v1/listings/{created['id']}/publish", token=vera.token), lambda r: r.status == 200, timeout=30).json()
        assert submitted["status"] == "pending_review"
        listings.append(submitted)
    queue = api.get("/v1/moderation/listings", query={"limit": 100}, token=moderator).expect(200).json()["items"]
    assert [item["id"] for item in queue] == [item["id"] for item in listings], "the queue, oldest first"
    fixed = listings[4]
    rejected = api.post(f"/v1/moderation/listings/{fixed['id']}/reject", json={"reason": "The photo shows an adult dog."},
                        token=moderator).expect(200).json()
    for listing in listings[:4]:
        api.post(f"/v1/moderation/listings/{listing['id']}/approve", token=moderator).expect(200)
    edited = api.request("PATCH", f"/v1/listings/{fixed['id']}", body=json.dumps({"media": [{"url": "https://img.example.com/sorrel.jpg"}]}).encode(),
                         headers={"Content-Type": "application/merge-patch+json", "If-Match": f'"{rejected["version"]}"'}, token=vera.token).expect(200)
    assert edited.json()["status"] == "rejected"
    api.post(f"/v1/listings/{fixed['id']}/publish", token=vera.token).expect(200)
    api.post(f"/v1/moderation/listings/{fixed['id']}/approve", token=moderator).expect(200)
    ids = [item["id"] for item in listings]

    # Two buyers find them: full text, filters and facets.
    bea = Person(suite, api, "buyer", "Bea Holloway")
    cal = Person(suite, api, "buyer", "Cal Mercer")

    def search(**query):
        return api.get("/v1/listings", query={"vendor": vera.id, **query}).expect(200).json()
    found = poll("all five in search", lambda: search(q="labrador", category="dogs", facets="attr.sex", limit="10"),
                 lambda page: sorted(i["id"] for i in page["items"]) == sorted(ids))
    sexes = {bucket["value"]: bucket["count"] for bucket in found["facets"]["attr.sex"]}
    assert sexes == {"female": 3, "male": 2}
    cheap = search(category="dogs", priceMax="100000", sort="price_asc")
    assert [i["id"] for i in cheap["items"]] == ids[:3]
    assert [i["id"] for i in search(**{"attr.sex": "male"})["items"]] != []

    # They write to the vendor; the phone number is hidden from the vendor until an order is paid.
    bea_chat = api.post("/v1/conversations", json={"listingId": ids[0], "body": f"Is Bramble still free? Ring me on {PHONE}."},
                        token=bea.token).expect(201).json()
    api.post("/v1/conversations", json={"listingId": ids[1], "body": "Could I visit Juniper on Saturday?"}, token=cal.token).expect(201)
    vendor_view = api.get(f"/v1/conversations/{bea_chat['id']}/messages", token=vera.token).expect(200).json()["items"]
    assert vendor_view[0]["body"] == "Is Bramble still free? Ring me on [contact details hidden]."
    api.post(f"/v1/conversations/{bea_chat['id']}/messages", json={"body": "Yes, he is. Order him and we can arrange collection."},
             token=vera.token).expect(201)

    # Three orders, each paid with the sandbox's test card.
    def order(buyer, listing_id):
        placed = api.post("/v1/orders", json={"listingId": listing_id, "quantity": 1, "shippingAddress": {"name": buyer.name, **ADDRESS}},
                          token=buyer.token, headers={"Idempotency-Key": str(uuid.uuid4())}).expect(201).json()
        intent = poll("billing's payment intent", lambda: api.get(f"/v1/orders/{placed['id']}", token=buyer.token).expect(200).json(),
                      lambda o: o["payment"] is not None)["payment"]["intentId"]
        api.post(f"/v1/payments/{intent}/confirm", json={"paymentMethod": "pm_card_visa"}, token=buyer.token).expect(200)
        return poll("the order paid", lambda: api.get(f"/v1/orders/{placed['id']}", token=buyer.token).expect(200).json(),
                    lambda o: o["status"] == "paid")

    def fulfil(o):
        api.post(f"/v1/orders/{o['id']}/ship", json={"carrier": "Royal Mail", "trackingNumber": f"RM{o['id'][:8]}"}, token=vera.token).expect(200)
        return api.post(f"/v1/orders/{o['id']}/deliver", token=vera.token).expect(200).json()

    first, second, third = order(bea, ids[0]), order(cal, ids[1]), order(bea, ids[2])
    unmasked = poll("the number shown once an order is paid",
                    lambda: api.get(f"/v1/conversations/{bea_chat['id']}/messages", token=vera.token).expect(200).json()["items"],
                    lambda items: items[-1]["body"].endswith(f"Ring me on {PHONE}."))
    assert unmasked

    # The first runs to receipt, both reviews and a payout.
    fulfil(first)
    received = api.post(f"/v1/orders/{first['id']}/receive", token=bea.token).expect(200).json()
    assert [c["event"] for c in received["history"]] == ["placed", "given its stock", "paid", "shipped", "delivered", "received"]
    api.post(f"/v1/orders/{first['id']}/reviews", json={"rating": 5, "text": "Bramble is a delight."}, token=bea.token).expect(201)
    api.post(f"/v1/orders/{first['id']}/reviews", json={"rating": 5, "text": "Kind, punctual buyer."}, token=vera.token).expect(201)
    reviews = api.get(f"/v1/orders/{first['id']}/reviews", token=bea.token).expect(200).json()["items"]
    assert [r["status"] for r in reviews] == ["published", "published"]
    assert api.get(f"/v1/orders/{first['id']}", token=bea.token).expect(200).json()["status"] == "completed"
    assert api.get(f"/v1/vendors/{vera.id}/reviews").expect(200).json()["summary"] == {"average": 5, "count": 1}
    poll("the rating on the vendor's listings", lambda: api.get(f"/v1/listings/{ids[3]}").expect(200).json()["vendor"],
         lambda v: v["rating"] == 5 and v["ratingCount"] == 1)

    # The second is canceled by its buyer before shipping: refunded in full, the puppy listed again.
    canceled = api.post(f"/v1/orders/{second['id']}/cancel", json={"reason": "We found one nearer home."}, token=cal.token).expect(200).json()
    assert canceled["status"] == "canceled"
    poll("the full refund", lambda: api.get(f"/v1/orders/{second['id']}", token=cal.token).expect(200).json(),
         lambda o: o["refundedAmount"] == o["total"])
    poll("the stock back", lambda: api.get(f"/v1/listings/{ids[1]}").expect(200).json(), lambda l: l["quantityAvailable"] == 1)

    # The third is disputed and partly refunded; the rest goes to the vendor.
    fulfil(third)
    dispute = api.post(f"/v1/orders/{third['id']}/disputes", json={"reason": "health", "description": "Clover has an ear infection."},
                       token=bea.token).expect(201).json()
    api.post(f"/v1/disputes/{dispute['id']}/evidence", json={"text": "The vet's note.", "attachments": ["https://files.example.com/vet.pdf"]},
             token=bea.token).expect(201)
    api.post(f"/v1/disputes/{dispute['id']}/evidence", json={"text": "Vet-checked before leaving; the record."}, token=vera.token).expect(201)
    poll("the money frozen", lambda: api.get("/v1/vendor/balance", token=vera.token).expect(200).json(),
         lambda b: sum(m["amount"] for m in b["inDispute"]) == third["total"]["amount"])
    part = {"amount": 20000, "currency": "GBP"}
    api.post(f"/v1/moderation/disputes/{dispute['id']}/resolve", json={"outcome": "refund", "refundAmount": part, "note": "The vet's bill."},
             token=moderator).expect(200)
    poll("the partial refund", lambda: api.get(f"/v1/orders/{third['id']}", token=bea.token).expect(200).json(),
         lambda o: o["status"] == "refunded" and o["refundedAmount"] == part)

    # The daily payout pays what was released: the first order's share and the dispute's rest.
    api.post("/v1/vendor/payout-account", token=vera.token).expect(201)
    balance = poll("the vendor's balance", lambda: api.get("/v1/vendor/balance", token=vera.token).expect(200).json(),
                   lambda b: b["inDispute"] == [{"amount": 0, "currency": "GBP"}] and b["available"] and b["available"][0]["amount"] > 0)
    advance_clock(suite, days=1)
    payout = poll("the daily payout", lambda: api.get("/v1/vendor/payouts", token=vera.token).expect(200).json()["items"],
                  lambda items: items and items[0]["status"] == "paid")[0]
    assert payout["amount"] == balance["available"][0] and sorted(payout["orders"]) == sorted([first["id"], third["id"]])

    # The trial nears its end (the notice mail); the card starts failing; the first charge fails.
    advance_clock(suite, days=10, hours=12)
    poll("the trial-ending notice", lambda: [m["Subject"] for m in mails(suite, vera.email)], lambda s: any(x.startswith("Your trial ends") for x in s))
    api.put(f"{sub_path}/payment-method", json={"paymentMethod": "pm_card_chargeCustomerFail"}, token=vera.token).expect(200)
    advance_clock(suite, days=3)
    poll("past due", lambda: api.get(sub_path, token=vera.token).expect(200).json(), lambda s: s["status"] == "past_due")
    for _ in range(15):
        advance_clock(suite, days=1)
        time.sleep(0.3)
    suspended = poll("suspended after the eighth try", lambda: api.get(sub_path, token=vera.token).expect(200).json(),
                     lambda s: s["status"] == "suspended")
    assert suspended["latestInvoice"]["attemptCount"] == 8
    poll("the listings gone from search", lambda: search(category="dogs")["items"], lambda items: items == [])
    api.get(f"/v1/listings/{ids[3]}").expect_problem(404, "not-found")

    # A working card: the invoice is paid at once, and the listings are back.
    api.put(f"{sub_path}/payment-method", json={"paymentMethod": "pm_card_visa"}, token=vera.token).expect(200)
    poll("active again", lambda: api.get(sub_path, token=vera.token).expect(200).json(), lambda s: s["status"] == "active")
    back = poll("the listings back in search", lambda: search(category="dogs")["items"], lambda items: len(items) == 3)
    assert sorted(i["id"] for i in back) == sorted([ids[1], ids[3], ids[4]]), "the sold puppies stay sold"

    # Cal exports everything, then erases the account.
    export = api.post("/v1/users/me/exports", token=cal.token).expect(202).json()
    ready = poll("the export", lambda: api.get(f"/v1/users/me/exports/{export['id']}", token=cal.token).expect(200).json(),
                 lambda e: e["status"] == "ready")
    assert ready["parts"]["orders"]["orders"][0]["id"] == second["id"]
    assert ready["parts"]["messaging"]["messages"][0]["body"] == "Could I visit Juniper on Saturday?"
    api.delete("/v1/users/me", json={"password": PASSWORD}, token=cal.token).expect(202)
    erased = poll("the erasure", lambda: api.get(f"/v1/admin/users/{cal.id}", token=admin).expect(200).json(), lambda u: u["status"] == "erased")
    assert erased["displayName"] == "Deleted user" and erased["email"].endswith("@erased.invalid")
    api.post("/v1/auth/login", json={"email": cal.email, "password": PASSWORD}).expect_problem(401, "invalid-credentials")

    # The books balance.
    trial = api.get("/v1/admin/ledger/trial-balance", token=admin).expect(200).json()
    assert all(c["debits"] == c["credits"] for c in trial["currencies"])
    assert sum(a["balance"] for a in trial["accounts"]) == 0

    # Every mail owed, once: each subject (a pattern) as many times as its cause happened.
    titles = {i: f"Labrador puppy {n}" for i, n in enumerate(names)}
    expected = {
        vera.email: {
            "Confirm your email address": 1,
            **{f'Your listing "{titles[i]}" is live': 1 for i in range(5)},
            f'Your listing "{titles[4]}" needs changes': 1,
            f"New message from Bea Holloway about {titles[0]}": 1,
            f"New message from Cal Mercer about {titles[1]}": 1,
            **{f"New order for {titles[i]}": 1 for i in range(3)},
            **{f"Order for {titles[i]} paid: please ship": 1 for i in range(3)},
            f"Order for {titles[1]} canceled": 1,
            f"re:{re.escape(titles[0])} received: .+ is yours": 1,
            f"The buyer disputes the order for {titles[2]}": 1,
            f"Dispute about {titles[2]} decided": 1,
            "re:Your trial ends on .+": 1,
            "re:We could not take your payment of .+": 7,
            "Your listings are hidden until payment": 1,
            "Your listings are back": 1,
        },
        bea.email: {
            "Confirm your email address": 1,
            f"New message from Vera Fenwick about {titles[0]}": 1,
            **{f"{titles[i]} is on its way": 1 for i in (0, 2)},
            **{f"{titles[i]} was delivered": 1 for i in (0, 2)},
            f"re:.+ refunded for {re.escape(titles[2])}": 1,
            f"Dispute about {titles[2]} decided": 1,
        },
        cal.email: {
            "Confirm your email address": 1,
            f"Order for {titles[1]} canceled": 1,
            f"re:.+ refunded for {re.escape(titles[1])}": 1,
        },
    }
    for address, owed in expected.items():
        want = {subject[3:] if subject.startswith("re:") else re.escape(subject): count for subject, count in owed.items()}

        def tally():
            counted = collections.Counter()
            for mail in mails(suite, address):
                matching = [pattern for pattern in want if re.fullmatch(pattern, mail["Subject"])]
                counted[matching[0] if len(matching) == 1 else f"unexpected: {mail['Subject']}"] += 1
            return dict(counted)
        got, deadline = tally(), time.monotonic() + 30
        while got != want and time.monotonic() < deadline:
            time.sleep(0.5)
            got = tally()
        assert got == want, address
