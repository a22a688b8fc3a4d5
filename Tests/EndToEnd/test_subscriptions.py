"""Billing through the gateway: a vendor subscribes (a trial), lists (listings learns the
entitlement from billing's own events), the trial ends and is paid, the card starts failing, the
renewal fails, dunning runs every retry on the business clock, suspension hides the listings from
search, a working card brings everything back. The sandbox provider's webhooks travel over real
HTTP to billing's endpoint. Every answer is checked against openapi.yaml.

Moves every service's business clock about two months forward (the offset stays for later
modules, as the launcher documents)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest

from e2e_http import Api
from e2e_support import advance_clock, base_env, free_ports, psql, service_env, sql_literal, wait_until
from test_listings import BOWL, admin, found, moderator, verified  # noqa: F401 (fixtures)

SANDBOX_SECRET = "whsec_sandbox_development_only"


# How long billing's entitlement may take to reach listings. Seconds normally; longer right after
# the fault-injection test, whose restarts leave consumers rejoining their groups (a killed
# member's session must expire on the broker first).
ENTITLEMENT_WAIT = 60


def key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def subscription(gateway, token) -> dict:
    return gateway.get("/v1/vendor/subscription", token=token).expect(200).json()


def wait_for_status(gateway, token, status: str, timeout: float = 30) -> dict:
    return wait_until(lambda: (lambda s: s if s["status"] == status else None)(subscription(gateway, token)),
                      timeout=timeout, describe=f"the subscription becoming {status}")


def sign(body: bytes, secret: str = SANDBOX_SECRET, at: float | None = None) -> str:
    import hashlib
    import hmac
    timestamp = str(int(at if at is not None else time.time()))
    return f"t={timestamp},v1=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def test_a_vendors_subscription_from_trial_through_dunning_to_suspension_and_back(suite, gateway, register, moderator, admin):  # noqa: F811
    vendor = register("vendor", display_name="Bea Subscriber")
    token = verified(suite, vendor)
    buyer = register("buyer")

    # Plans, then subscribing: the key is required, a buyer cannot, a bad plan or card is named.
    plans = gateway.get("/v1/plans").expect(200).json()["items"]
    breeder = next(p for p in plans if p["code"] == "breeder-monthly")
    body = {"plan": "breeder-monthly", "paymentMethod": "pm_card_visa"}
    gateway.get("/v1/vendor/subscription", token=token).expect_problem(404, "not-found")
    gateway.get("/v1/vendor/subscription", token=buyer.access_token).expect_problem(403, "forbidden")
    gateway.get("/v1/vendor/subscription").expect_problem(401, "unauthorized")
    gateway.post("/v1/subscriptions", json=body, token=token).expect_problem(400, "idempotency-key-required")
    gateway.post("/v1/subscriptions", json=body, token=buyer.access_token, headers=key()).expect_problem(403, "forbidden")
    gateway.post("/v1/subscriptions", json=body, headers=key()).expect_problem(401, "unauthorized")
    bad = gateway.post("/v1/subscriptions", json={"plan": "", "paymentMethod": ""}, token=token, headers=key()).expect_problem(422)
    assert {e["field"] for e in bad["errors"]} == {"plan", "paymentMethod"}
    unknown = gateway.post("/v1/subscriptions", json={"plan": "gold", "paymentMethod": "pm_card_visa"}, token=token, headers=key())
    assert [e["field"] for e in unknown.expect_problem(422)["errors"]] == ["plan"]
    declined = gateway.post("/v1/subscriptions", json={**body, "paymentMethod": "pm_card_chargeDeclined"}, token=token, headers=key())
    assert "card_declined" in declined.expect_problem(402, "card-declined")["detail"]
    first_key = key()
    created = gateway.post("/v1/subscriptions", json=body, token=token, headers=first_key).expect(201)
    sub = created.json()
    assert created.header("location") == f"/v1/subscriptions/{sub['id']}"
    assert sub["status"] == "trialing" and sub["plan"] == breeder and sub["latestInvoice"] is None
    assert sub["paymentMethod"]["last4"] == "4242" and not sub["paymentMethod"]["id"].startswith("pm_card_")
    replay = gateway.post("/v1/subscriptions", json=body, token=token, headers=first_key).expect(201)
    assert replay.header("idempotent-replayed") == "true" and replay.json()["id"] == sub["id"]
    gateway.post("/v1/subscriptions", json=body, token=token, headers=key()).expect_problem(409, "subscription-exists")
    path = f"/v1/subscriptions/{sub['id']}"

    # The entitlement reaches listings: a listing is published (reviewed first) and found.
    listing = gateway.post("/v1/listings", json=BOWL, token=token).expect(201).json()
    publish = f"/v1/listings/{listing['id']}/publish"
    submitted = wait_until(lambda: (lambda r: r.json() if r.status == 200 else None)(gateway.post(publish, token=token)),
                           timeout=ENTITLEMENT_WAIT, describe="publishing once billing's entitlement arrived")
    if submitted["status"] == "pending_review":
        gateway.post(f"/v1/moderation/listings/{listing['id']}/approve", token=moderator).expect(200)
    wait_until(lambda: found(gateway, listing["id"], vendor=vendor.id), timeout=10, describe="the listing in search")

    # Reads and refusals: strangers see nothing, admins see (and are recorded), the vendor's own decisions are theirs.
    other = register("vendor")
    gateway.get(path, token=other.access_token).expect_problem(404, "not-found")
    gateway.get(f"/v1/subscriptions/{uuid.uuid4()}", token=token).expect_problem(404, "not-found")
    gateway.get(path).expect_problem(401, "unauthorized")
    seen = gateway.get(path, token=admin).expect(200)
    assert seen.header("etag") == f'"{sub["version"]}"' and [c["event"] for c in seen.json()["history"]] == ["created"]
    gateway.post(f"{path}/pause", token=token).expect_problem(409, "invalid-transition")  # a trial cannot be paused
    gateway.post(f"{path}/pause", token=admin).expect_problem(403, "forbidden")
    gateway.post(f"{path}/resume", token=token).expect_problem(409, "invalid-transition")
    gateway.post(f"{path}/resume", token=admin).expect_problem(403, "forbidden")
    gateway.post(f"{path}/cancel", json={"atPeriodEnd": "soon"}, token=token).expect_problem(422, "validation-failed")
    gateway.post(f"{path}/cancel", body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    gateway.post(f"{path}/cancel", token=token, headers={"If-Match": '"99"'}).expect_problem(412, "version-mismatch")
    flagged = gateway.post(f"{path}/cancel", token=token).expect(200).json()
    assert flagged["cancelAtPeriodEnd"] and flagged["status"] == "trialing"
    kept = gateway.post(f"{path}/resume", token=token, headers={"If-Match": f'"{flagged["version"]}"'}).expect(200).json()
    assert not kept["cancelAtPeriodEnd"]
    gateway.post(f"{path}/cancel", token=other.access_token).expect_problem(404, "not-found")
    gateway.post(f"{path}/pause", token=other.access_token).expect_problem(404, "not-found")
    for action in ("cancel", "resume", "pause", "change-plan"):
        extra = {"json": {"plan": "kennel-monthly"}} if action == "change-plan" else {}
        gateway.post(f"{path}/{action}", **extra).expect_problem(401, "unauthorized")

    # The trial ends: the first invoice is charged and paid; the vendor's invoices list it.
    advance_clock(suite, days=14, hours=1)
    active = wait_for_status(gateway, token, "active")
    invoice = active["latestInvoice"]
    assert invoice["status"] == "paid" and invoice["total"] == breeder["price"] and invoice["number"].startswith("INV-")
    listed = gateway.get("/v1/invoices", token=token).expect(200).json()
    assert [i["id"] for i in listed["items"]] == [invoice["id"]]
    gateway.get(f"/v1/invoices/{invoice['id']}", token=token).expect(200)
    gateway.get(f"/v1/invoices/{invoice['id']}", token=other.access_token).expect_problem(404, "not-found")
    gateway.get(f"/v1/invoices/{invoice['id']}").expect_problem(401, "unauthorized")
    gateway.get("/v1/invoices", token=buyer.access_token).expect_problem(403, "forbidden")
    gateway.get("/v1/invoices", query={"status": "lost"}, token=token).expect_problem(422, "validation-failed")
    gateway.get("/v1/invoices").expect_problem(401, "unauthorized")

    # The card starts failing; a refused card or plan is named.
    card = f"{path}/payment-method"
    gateway.put(card, json={"paymentMethod": "pm_card_insufficientFunds"}, token=token).expect_problem(402, "card-declined")
    gateway.put(card, json={}, token=token).expect_problem(422, "validation-failed")
    gateway.put(card, body=b"[", headers={"Content-Type": "application/json"}, token=token).expect_problem(400, "malformed-request")
    gateway.put(card, json={"paymentMethod": "pm_card_visa"}, token=other.access_token).expect_problem(404, "not-found")
    gateway.put(card, json={"paymentMethod": "pm_card_visa"}, token=admin).expect_problem(403, "forbidden")
    gateway.put(card, json={"paymentMethod": "pm_card_visa"}).expect_problem(401, "unauthorized")
    gateway.put(card, json={"paymentMethod": "pm_card_visa"}, token=token, headers={"If-Match": '"1"'}).expect_problem(412, "version-mismatch")
    failing = gateway.put(card, json={"paymentMethod": "pm_card_chargeCustomerFail"}, token=token).expect(200).json()
    assert failing["paymentMethod"]["last4"] == "0341" and failing["status"] == "active"

    # The renewal fails: past_due, the listing stays, nothing new is published.
    advance_clock(suite, days=31)
    past_due = wait_for_status(gateway, token, "past_due")
    assert past_due["latestInvoice"]["status"] == "open" and past_due["latestInvoice"]["attemptCount"] == 1, past_due
    assert past_due["latestInvoice"]["nextAttemptAt"] is not None
    second = gateway.post("/v1/listings", json={**BOWL, "title": "Second bowl"}, token=token).expect(201).json()
    wait_until(lambda: gateway.post(f"/v1/listings/{second['id']}/publish", token=token).status == 403, timeout=ENTITLEMENT_WAIT,
               describe="publishing refused while past due")
    assert found(gateway, listing["id"], vendor=vendor.id), "listings stay during the grace period"

    # Dunning: a retry each scheduled day, then suspension after the last one; the listing is hidden.
    for _ in range(15):
        advance_clock(suite, days=1)
        time.sleep(0.3)
    suspended = wait_for_status(gateway, token, "suspended")
    assert suspended["latestInvoice"]["attemptCount"] == 8
    wait_until(lambda: not found(gateway, listing["id"], vendor=vendor.id), timeout=ENTITLEMENT_WAIT, describe="the listing hidden from search")
    gateway.get(f"/v1/listings/{listing['id']}").expect_problem(404, "not-found")

    # A working card: the open invoice is paid at once, the subscription and the listing are back.
    gateway.put(card, json={"paymentMethod": "pm_card_visa"}, token=token).expect(200)
    back = wait_for_status(gateway, token, "active")
    assert back["latestInvoice"]["status"] == "paid"
    wait_until(lambda: found(gateway, listing["id"], vendor=vendor.id), timeout=ENTITLEMENT_WAIT, describe="the listing back in search")
    history = [c["event"] for c in gateway.get(path, token=token).expect(200).json()["history"]]
    assert history[-1] == "paid" and "suspended" in history and history.count("charged after a failed payment") >= 1

    # Plans change: the kennel plan now, prorated; an unknown plan is named; a pause stops everything.
    gateway.post(f"{path}/change-plan", json={"plan": "nope"}, token=token).expect_problem(422, "validation-failed")
    gateway.post(f"{path}/change-plan", body=b"{", headers={"Content-Type": "application/json"}, token=token).expect_problem(400)
    gateway.post(f"{path}/change-plan", json={"plan": "kennel-monthly"}, token=admin).expect_problem(403, "forbidden")
    gateway.post(f"{path}/change-plan", json={"plan": "kennel-monthly"}, token=other.access_token).expect_problem(404, "not-found")
    gateway.post(f"{path}/change-plan", json={"plan": "kennel-monthly"}, token=token, headers={"If-Match": '"1"'}).expect_problem(412)
    upgraded = gateway.post(f"{path}/change-plan", json={"plan": "kennel-monthly"}, token=token).expect(200).json()
    assert upgraded["plan"]["code"] == "kennel-monthly" and upgraded["latestInvoice"]["reason"] == "subscription_update"
    assert [line["kind"] for line in upgraded["latestInvoice"]["lines"]] == ["proration_credit", "proration_debit"]
    gateway.post(f"{path}/pause", json={"resumeAt": "2001-01-01T00:00:00Z"}, token=token).expect_problem(422, "validation-failed")
    gateway.post(f"{path}/pause", body=b"[", headers={"Content-Type": "application/json"}, token=token).expect_problem(400)
    gateway.post(f"{path}/pause", token=token, headers={"If-Match": '"1"'}).expect_problem(412)
    paused = gateway.post(f"{path}/pause", token=token).expect(200).json()
    assert paused["status"] == "paused" and paused["pausedUntil"] is not None
    gateway.post(f"{path}/change-plan", json={"plan": "breeder-monthly"}, token=token).expect_problem(409, "invalid-transition")
    gateway.post(f"{path}/resume", token=token, headers={"If-Match": '"1"'}).expect_problem(412)
    gateway.post(f"{path}/resume", token=other.access_token).expect_problem(404)
    assert gateway.post(f"{path}/resume", token=token).expect(200).json()["status"] == "active"

    # The admin desk: every subscription, a free period with a reason, and a ledger that balances.
    page = gateway.get("/v1/admin/subscriptions", query={"vendorId": vendor.id}, token=admin).expect(200).json()
    assert [s["id"] for s in page["items"]] == [sub["id"]]
    gateway.get("/v1/admin/subscriptions", query={"status": "lost"}, token=admin).expect_problem(422)
    gateway.get("/v1/admin/subscriptions", token=token).expect_problem(403, "forbidden")
    gateway.get("/v1/admin/subscriptions").expect_problem(401, "unauthorized")
    comp = f"/v1/admin/subscriptions/{sub['id']}/comp"
    gateway.post(comp, json={"days": 0, "reason": "x"}, token=admin).expect_problem(422, "validation-failed")
    gateway.post(comp, body=b"{", headers={"Content-Type": "application/json"}, token=admin).expect_problem(400)
    gateway.post(comp, json={"days": 30, "reason": "an outage"}, token=token).expect_problem(403, "forbidden")
    gateway.post(f"/v1/admin/subscriptions/{uuid.uuid4()}/comp", json={"days": 30, "reason": "an outage"}, token=admin).expect_problem(404)
    gateway.post(comp, json={"days": 30, "reason": "an outage"}, token=admin, headers={"If-Match": '"1"'}).expect_problem(412)
    gateway.post(comp, json={"days": 30, "reason": "an outage"}).expect_problem(401, "unauthorized")
    comped = gateway.post(comp, json={"days": 30, "reason": "an outage"}, token=admin).expect(200).json()
    assert comped["history"][-1]["note"] == "an outage"
    balance = gateway.get("/v1/admin/ledger/trial-balance", token=admin).expect(200).json()
    assert balance["currencies"] and all(c["debits"] == c["credits"] for c in balance["currencies"])
    gateway.get("/v1/admin/ledger/trial-balance", token=token).expect_problem(403, "forbidden")
    gateway.get("/v1/admin/ledger/trial-balance").expect_problem(401, "unauthorized")

    # Canceled now: listings hidden, and a canceled subscription takes no more changes.
    assert gateway.post(f"{path}/cancel", json={"atPeriodEnd": False}, token=token).expect(200).json()["status"] == "canceled"
    gateway.post(f"{path}/cancel", json={"atPeriodEnd": False}, token=token).expect_problem(409, "invalid-transition")
    gateway.put(card, json={"paymentMethod": "pm_card_visa"}, token=token).expect_problem(409, "invalid-transition")
    gateway.post(comp, json={"days": 30, "reason": "too late"}, token=admin).expect_problem(409, "invalid-transition")
    wait_until(lambda: not found(gateway, listing["id"], vendor=vendor.id), timeout=ENTITLEMENT_WAIT, describe="the listing hidden once canceled")

    # The sandbox's webhooks came over HTTP, every one stored once and applied.
    rows = psql(suite.superuser_dsn, f"""
        SELECT count(*), count(*) FILTER (WHERE applied_at IS NOT NULL) FROM billing.webhook_events w
        WHERE w.object_id IN (SELECT intent_id FROM billing.payments p JOIN billing.invoices i ON i.id = p.invoice_id
                              WHERE i.vendor_id = {sql_literal(vendor.id)})""")
    total, applied = map(int, rows[0])
    assert total >= 9 and applied == total, rows


def test_webhooks_are_signed_and_stored_once(suite, gateway):
    event = {"id": f"evt_e2e_{uuid.uuid4().hex}", "object": "event", "type": "charge.updated", "created": int(time.time()),
             "data": {"object": {"id": f"ch_{uuid.uuid4().hex}", "object": "charge"}}}
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json"}
    hook = "/v1/webhooks/sandbox"
    gateway.post(hook, body=body, headers={**headers, "Sandbox-Signature": sign(body, "whsec_wrong")}).expect_problem(400, "invalid-signature")
    gateway.post(hook, body=body, headers={**headers, "Sandbox-Signature": sign(body, at=time.time() - 301)}).expect_problem(400, "invalid-signature")
    gateway.post(hook, body=body, headers=headers).expect_problem(400, "invalid-signature")
    first = gateway.post(hook, body=body, headers={**headers, "Sandbox-Signature": sign(body)}).expect(200).json()
    again = gateway.post(hook, body=body, headers={**headers, "Sandbox-Signature": sign(body)}).expect(200).json()
    assert first == {"received": True, "duplicate": False} and again == {"received": True, "duplicate": True}
    not_an_event = b'{"hello": "world"}'
    gateway.post(hook, body=not_an_event, headers={**headers, "Sandbox-Signature": sign(not_an_event)}).expect_problem(422, "validation-failed")
    gateway.post("/v1/webhooks/stripe", body=body, headers={**headers, "Stripe-Signature": sign(body)}).expect_problem(404, "not-found")


def test_a_billing_configured_for_stripe_verifies_stripe_signatures(suite, contracts, register):
    """A second billing process with PAYMENT_PROVIDER=stripe, on a database of its own (its job
    runner must not take the suite's billing jobs), Stripe's API never reachable: the events are
    about charges, which need no re-reading; a payout account cannot be made (503); the sandbox's
    confirm endpoint is not there (404). It serves the requests below and stops."""
    database = f"billing_stripe_{uuid.uuid4().hex[:8]}"
    psql(suite.superuser_dsn, f"CREATE DATABASE {database} OWNER billing")
    own_dsn = suite.superuser_dsn.rsplit("/", 1)[0] + f"/{database}"
    psql(own_dsn, "CREATE SCHEMA billing AUTHORIZATION billing")
    database_url = suite.suite.service_dsn("billing").rsplit("/", 1)[0] + f"/{database}"
    (port,) = free_ports(1)
    env = service_env("billing", port, database_url=database_url, kafka=suite.suite.kafka_bootstrap_servers, jwks_url=suite.jwks_url)
    env.update({"PAYMENT_PROVIDER": "stripe", "STRIPE_SECRET_KEY": "sk_test_e2e", "STRIPE_WEBHOOK_SECRET": "whsec_e2e",
                "STRIPE_API_BASE": "http://127.0.0.1:9", "STRIPE_TIMEOUT_MS": "1000", "DATABASE_POOL_SIZE": "6",
                "TEST_CLOCK": "on"})
    log = open(suite.work_dir / "logs" / "billing-stripe.log", "wb")
    migrated = subprocess.run([suite.binary("billing"), "migrate"], env={**base_env(), **env}, capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    process = subprocess.Popen([suite.binary("billing"), "serve"], env={**base_env(), **env}, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        api = Api(f"http://127.0.0.1:{port}", "billing", contracts)
        wait_until(lambda: api.get("/health/live").status == 200 if process.poll() is None else pytest.fail("billing exited"),
                   timeout=30, describe="billing with the Stripe provider")
        event = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "charge.updated", "created": int(time.time()),
                 "data": {"object": {"id": f"ch_{uuid.uuid4().hex}", "object": "charge"}}}
        body = json.dumps(event).encode()
        headers = {"Content-Type": "application/json"}
        hook = "/v1/webhooks/stripe"
        api.post(hook, body=body, headers={**headers, "Stripe-Signature": sign(body, SANDBOX_SECRET)}).expect_problem(400, "invalid-signature")
        assert api.post(hook, body=body, headers={**headers, "Stripe-Signature": sign(body, "whsec_e2e")}).expect(200).json()["duplicate"] is False
        garbage = b'{"id": 1}'
        api.post(hook, body=garbage, headers={**headers, "Stripe-Signature": sign(garbage, "whsec_e2e")}).expect_problem(422)
        api.post("/v1/webhooks/sandbox", body=body, headers={**headers, "Sandbox-Signature": sign(body)}).expect_problem(404, "not-found")
        vendor = register("vendor").access_token
        unavailable = api.post("/v1/vendor/payout-account", token=vendor).expect_problem(503, "service-unavailable")
        assert unavailable["detail"].startswith("The payment provider did not answer")
        api.post("/v1/payments/pi_standin/confirm", json={"paymentMethod": "pm_card_visa"}, token=vendor).expect_problem(404, "not-found")
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
