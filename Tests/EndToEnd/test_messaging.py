"""Messaging through the gateway: a buyer writes to a vendor about a listing, contact details
masked until an order between them is paid and shown after; read marks and unread counts; the
author's soft delete; a report worked at the moderation desk and the audit entry an admin reads;
blocks; in-app notifications and mail preferences with the signed unsubscribe link; and the
event stream (Server-Sent Events) through the gateway, resumed with Last-Event-ID. Listings,
orders and billing are real: the paid order is paid at the sandbox. Every answer is checked
against openapi.yaml."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import time
import urllib.parse
import uuid

from e2e_support import psql, sql_literal, wait_until
from test_listings import admin, broker, moderator, verified  # noqa: F401 (fixtures)
from test_orders import orderable_listing, pay, place

PHONE = "Ring me on 07700 900123 or write to bea dot buyer at example dot com"
MASKED = "Ring me on [contact details hidden] or write to [contact details hidden]"


def problem(response, status, slug):
    return response.expect_problem(status, slug)


def open_conversation(gateway, token, listing_id, body):
    """Messaging learns of a listing from listings' events: until then it answers 404."""
    def opened():
        response = gateway.post("/v1/conversations", json={"listingId": listing_id, "body": body}, token=token)
        return response if response.status in (200, 201) else None
    return wait_until(opened, timeout=30, describe="messaging to know the listing")


def messages(gateway, token, conversation):
    return gateway.get(f"/v1/conversations/{conversation}/messages", token=token).expect(200).json()["items"]


class EventStream:
    """One Server-Sent Events connection through the gateway, read event by event."""

    def __init__(self, suite, contracts, token, last_event_id=None):
        url = urllib.parse.urlsplit(suite.gateway_url)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", "/v1/events/stream", headers=headers)
        self.response = self.connection.getresponse()
        self.headers = {k.lower(): v for k, v in self.response.getheaders()}
        self.contracts = contracts
        self.seen = b""

    def next_event(self, wanted: str, timeout: float = 20) -> dict:
        """The next event of type `wanted` (heartbeats and other types are passed over)."""
        deadline = time.monotonic() + timeout
        fields: dict = {}
        while time.monotonic() < deadline:
            line = self.response.readline()
            self.seen += line
            text = line.decode().rstrip("\n")
            if text == "":
                if fields.get("event") == wanted:
                    return {"id": int(fields["id"]), "data": json.loads(fields["data"])}
                fields = {}
            elif not text.startswith(":"):
                name, _, value = text.partition(": ")
                fields[name] = value
        raise AssertionError(f"no {wanted} event within {timeout}s; read so far: {self.seen[-500:]!r}")

    def close(self):
        # What was read is checked against the contract: the status, the headers and the text.
        self.contracts.check("gateway", "GET", "/v1/events/stream", self.response.status, self.headers, self.seen)
        self.connection.close()


def test_a_conversation_from_masked_to_paid_with_the_desk_and_its_audit_log(suite, gateway, contracts, register, broker, moderator, admin):
    vendor, vendor_token, listing = orderable_listing(suite, gateway, register, broker, moderator)
    buyer = register("buyer", display_name="Bea Buyer")
    buyer_token = verified(suite, buyer)
    stranger = register("buyer")
    stranger_token = verified(suite, stranger)

    # Unverified callers may read but not write.
    problem(gateway.post("/v1/conversations", json={"listingId": listing, "body": "hi"}, token=register("buyer").login()["accessToken"]),
            403, "email-not-verified")
    problem(gateway.post("/v1/conversations", json={"listingId": str(uuid.uuid4()), "body": "hi"}, token=buyer_token), 404, "listing-not-found")
    problem(gateway.post("/v1/conversations", json={"listingId": listing, "body": "  "}, token=buyer_token), 422, "validation-failed")
    problem(gateway.post("/v1/conversations", body=b"{not json", headers={"Content-Type": "application/json"}, token=buyer_token),
            400, "malformed-request")

    stream = EventStream(suite, contracts, vendor_token)
    assert stream.response.status == 200 and stream.headers["content-type"].startswith("text/event-stream")

    first = open_conversation(gateway, buyer_token, listing, PHONE).expect(201)
    conversation = first.json()["id"]
    assert first.headers["location"] == f"/v1/conversations/{conversation}"
    assert first.json()["otherParty"] == {"id": vendor.id, "displayName": vendor.display_name}
    again = gateway.post("/v1/conversations", json={"listingId": listing, "body": "Are they still available?"}, token=buyer_token).expect(200)
    assert again.json()["id"] == conversation, "one conversation per buyer and listing"

    # The vendor hears of it as it happens, masked like everything the vendor reads.
    event = stream.next_event("message.created")
    assert event["data"]["body"] == MASKED and event["data"]["masked"] is True
    resume_from = event["id"]
    stream.close()

    listed = gateway.get("/v1/conversations", token=vendor_token).expect(200).json()["items"]
    mine = next(c for c in listed if c["id"] == conversation)
    assert mine["unreadCount"] == 2 and mine["contactDetailsShared"] is False and mine["otherParty"]["displayName"] == "Bea Buyer"
    assert [m["body"] for m in messages(gateway, vendor_token, conversation)] == ["Are they still available?", MASKED]
    assert messages(gateway, buyer_token, conversation)[-1]["body"] == PHONE, "the author reads what they wrote"
    assert gateway.post(f"/v1/conversations/{conversation}/read", token=vendor_token).expect(200).json()["unreadCount"] == 0
    assert gateway.get(f"/v1/conversations/{conversation}", token=vendor_token).expect(200).json()["unreadCount"] == 0

    # Reconnecting with Last-Event-ID replays what came after it: the second message, the read mark.
    resumed = EventStream(suite, contracts, vendor_token, last_event_id=resume_from)
    assert resumed.next_event("message.created")["data"]["body"] == "Are they still available?"
    assert resumed.next_event("conversation.read")["data"]["userId"] == vendor.id
    resumed.close()

    # Strangers (staff included, outside the desk) do not see it.
    for path in (f"/v1/conversations/{conversation}", f"/v1/conversations/{conversation}/messages"):
        problem(gateway.get(path, token=stranger_token), 404, "not-found")
    problem(gateway.post(f"/v1/conversations/{conversation}/messages", json={"body": "hi"}, token=stranger_token), 404, "not-found")
    problem(gateway.post(f"/v1/conversations/{conversation}/read", token=moderator), 404, "not-found")
    problem(gateway.get(f"/v1/conversations/{conversation}/messages", query={"limit": 0}, token=buyer_token), 422, "validation-failed")
    problem(gateway.post(f"/v1/conversations/{conversation}/messages", json={"body": "x" * 4001}, token=buyer_token), 422, "validation-failed")
    problem(gateway.post(f"/v1/conversations/{conversation}/messages", body=b"[", headers={"Content-Type": "application/json"}, token=buyer_token),
            400, "malformed-request")

    # The buyer orders and pays: from then on nothing between the two is hidden.
    order = place(gateway, buyer_token, listing).expect(201).json()
    pay(gateway, buyer_token, order)
    wait_until(lambda: messages(gateway, vendor_token, conversation)[-1]["body"] == PHONE, timeout=30,
               describe="messaging to hear the order was paid")
    assert gateway.get(f"/v1/conversations/{conversation}", token=vendor_token).expect(200).json()["contactDetailsShared"] is True
    # The vendor hears of the order in app too.
    wait_until(lambda: any(n["kind"] == "order.paid" for n in gateway.get("/v1/notifications", token=vendor_token).expect(200).json()["items"]),
               timeout=30, describe="the order.paid notification")

    # The buyer regrets a message and deletes it; the vendor sees that it was deleted.
    rude = gateway.post(f"/v1/conversations/{conversation}/messages", json={"body": "You are a crook"}, token=buyer_token).expect(201).json()
    problem(gateway.delete(f"/v1/conversations/{conversation}/messages/{rude['id']}", token=vendor_token), 403, "forbidden")
    gateway.delete(f"/v1/conversations/{conversation}/messages/{rude['id']}", token=buyer_token).expect(204)
    problem(gateway.delete(f"/v1/conversations/{conversation}/messages/{rude['id']}", token=buyer_token), 404, "not-found")
    assert rude["id"] not in [m["id"] for m in messages(gateway, buyer_token, conversation)]
    assert next(m for m in messages(gateway, vendor_token, conversation) if m["id"] == rude["id"])["state"] == "deleted"

    # The vendor reports it (twice: one report), and a moderator works the queue.
    report = gateway.post(f"/v1/conversations/{conversation}/reports", json={"messageId": rude["id"], "reason": "Insults"},
                          token=vendor_token).expect(201).json()
    assert gateway.post(f"/v1/conversations/{conversation}/reports", json={"messageId": rude["id"], "reason": "Insults"},
                        token=vendor_token).expect(200).json()["id"] == report["id"]
    problem(gateway.post(f"/v1/conversations/{conversation}/reports", json={"messageId": str(uuid.uuid4()), "reason": "Insults"},
                         token=vendor_token), 422, "validation-failed")
    problem(gateway.post(f"/v1/conversations/{conversation}/reports", body=b"nope", headers={"Content-Type": "application/json"},
                         token=vendor_token), 400, "malformed-request")
    problem(gateway.post(f"/v1/conversations/{uuid.uuid4()}/reports", json={"reason": "Insults"}, token=vendor_token), 404, "not-found")

    problem(gateway.get("/v1/moderation/reports", token=buyer_token), 403, "forbidden")
    problem(gateway.get("/v1/moderation/reports", query={"status": "closed"}, token=moderator), 422, "validation-failed")
    queue = gateway.get("/v1/moderation/reports", query={"status": "open", "limit": 100}, token=moderator).expect(200).json()["items"]
    assert report["id"] in [r["id"] for r in queue]
    desk = gateway.get(f"/v1/moderation/conversations/{conversation}", token=moderator).expect(200).json()
    original = next(m for m in desk["items"] if m["id"] == rude["id"])
    assert original["body"] == "You are a crook" and original["deletedAt"] is not None
    assert next(m for m in desk["items"] if m["body"] == PHONE)["maskedBody"] == MASKED
    problem(gateway.get(f"/v1/moderation/conversations/{conversation}", token=buyer_token), 403, "forbidden")
    problem(gateway.get(f"/v1/moderation/conversations/{uuid.uuid4()}", token=moderator), 404, "not-found")
    problem(gateway.get(f"/v1/moderation/conversations/{conversation}", query={"reason": "x"}, token=moderator), 422, "validation-failed")

    problem(gateway.post(f"/v1/moderation/reports/{report['id']}/resolve", json={"action": "ban", "note": "x"}, token=moderator),
            422, "validation-failed")
    problem(gateway.post(f"/v1/moderation/reports/{report['id']}/resolve", body=b"{", headers={"Content-Type": "application/json"},
                         token=moderator), 400, "malformed-request")
    problem(gateway.post(f"/v1/moderation/reports/{uuid.uuid4()}/resolve", json={"action": "dismiss", "note": "x"}, token=moderator),
            404, "not-found")
    problem(gateway.post(f"/v1/moderation/reports/{report['id']}/resolve", json={"action": "dismiss", "note": "x"}, token=buyer_token),
            403, "forbidden")
    resolved = gateway.post(f"/v1/moderation/reports/{report['id']}/resolve", json={"action": "remove_message", "note": "Insults a member"},
                            token=moderator).expect(200).json()
    assert resolved["status"] == "resolved" and resolved["action"] == "remove_message"
    problem(gateway.post(f"/v1/moderation/reports/{report['id']}/resolve", json={"action": "dismiss", "note": "again"}, token=moderator),
            409, "invalid-transition")
    assert next(m for m in messages(gateway, vendor_token, conversation) if m["id"] == rude["id"])["state"] == "removed"

    # A conversation nobody reported: the desk needs a reason, and the admin sees why it was read.
    other = open_conversation(gateway, stranger_token, listing, "Do you ship to Leeds?").expect(201).json()["id"]
    problem(gateway.get(f"/v1/moderation/conversations/{other}", token=moderator), 403, "reason-required")
    gateway.get(f"/v1/moderation/conversations/{other}", query={"reason": "Dispute about a late delivery"}, token=moderator).expect(200)
    problem(gateway.get("/v1/moderation/audit-log", token=moderator), 403, "forbidden")
    problem(gateway.get("/v1/moderation/audit-log", query={"limit": 101}, token=admin), 422, "validation-failed")
    log = gateway.get("/v1/moderation/audit-log", query={"limit": 100}, token=admin).expect(200).json()["items"]
    mine = [(e["subject"], e["subjectId"], e["reason"]) for e in log if e["subjectId"] in (conversation, other, report["id"])]
    assert mine[:3] == [("conversation", other, "Dispute about a late delivery"), ("report.remove_message", report["id"], "Insults a member"),
                        ("conversation", conversation, "reported")], "newest first: who read what, and why"
    cannot = psql(suite.superuser_dsn, "SELECT count(*) FROM messaging.staff_reads")
    try:
        psql(suite.superuser_dsn, "UPDATE messaging.staff_reads SET reason = 'edited'")
        raise AssertionError("the audit log was edited")
    except Exception as error:  # noqa: BLE001 (psql raises on the trigger's refusal)
        assert "append-only" in str(error), error
    assert psql(suite.superuser_dsn, "SELECT count(*) FROM messaging.staff_reads") == cannot

    # Blocks: the blocked buyer can neither read nor write; the vendor reads but cannot write.
    problem(gateway.post("/v1/blocks", json={"userId": vendor.id}, token=vendor_token), 422, "validation-failed")
    problem(gateway.post("/v1/blocks", json={"userId": str(uuid.uuid4())}, token=vendor_token), 404, "user-not-found")
    problem(gateway.post("/v1/blocks", body=b"x", headers={"Content-Type": "application/json"}, token=vendor_token), 400, "malformed-request")
    gateway.post("/v1/blocks", json={"userId": buyer.id}, token=vendor_token).expect(201)
    gateway.post("/v1/blocks", json={"userId": buyer.id}, token=vendor_token).expect(200)
    assert [b["userId"] for b in gateway.get("/v1/blocks", token=vendor_token).expect(200).json()["items"]] == [buyer.id]
    problem(gateway.get("/v1/blocks", query={"limit": "many"}, token=vendor_token), 422, "validation-failed")
    problem(gateway.post(f"/v1/conversations/{conversation}/messages", json={"body": "Why?"}, token=buyer_token), 403, "blocked")
    problem(gateway.get(f"/v1/conversations/{conversation}", token=buyer_token), 403, "blocked")
    problem(gateway.get(f"/v1/conversations/{conversation}/messages", token=buyer_token), 403, "blocked")
    problem(gateway.post(f"/v1/conversations/{conversation}/read", token=buyer_token), 403, "blocked")
    problem(gateway.post("/v1/conversations", json={"listingId": listing, "body": "again"}, token=buyer_token), 403, "blocked")
    problem(gateway.post(f"/v1/conversations/{conversation}/messages", json={"body": "Bye"}, token=vendor_token), 403, "blocked")
    gateway.get(f"/v1/conversations/{conversation}/messages", token=vendor_token).expect(200)
    gateway.delete(f"/v1/blocks/{buyer.id}", token=vendor_token).expect(204)
    problem(gateway.delete(f"/v1/blocks/{buyer.id}", token=vendor_token), 404, "not-found")
    gateway.post(f"/v1/conversations/{conversation}/messages", json={"body": "Let us start again."}, token=buyer_token).expect(201)


def test_notifications_preferences_and_the_unsubscribe_link(suite, gateway, register, broker, moderator):
    vendor, vendor_token, listing = orderable_listing(suite, gateway, register, broker, moderator)
    # The vendor's listing was approved: an in-app notification, unread first.
    wait_until(lambda: gateway.get("/v1/notifications", token=vendor_token).expect(200).json()["items"], timeout=30,
               describe="the listing.approved notification")
    items = gateway.get("/v1/notifications", token=vendor_token).expect(200).json()["items"]
    assert items[0]["kind"] == "listing.approved" and items[0]["read"] is False
    problem(gateway.get("/v1/notifications", query={"limit": 0}, token=vendor_token), 422, "validation-failed")
    problem(gateway.post("/v1/notifications/read", json={}, token=vendor_token), 422, "validation-failed")
    problem(gateway.post("/v1/notifications/read", body=b"]", headers={"Content-Type": "application/json"}, token=vendor_token),
            400, "malformed-request")
    marked = gateway.post("/v1/notifications/read", json={"ids": [items[0]["id"]]}, token=vendor_token).expect(200).json()
    assert marked["marked"] == 1
    assert gateway.post("/v1/notifications/read", json={"all": True}, token=vendor_token).expect(200).json()["unreadCount"] == 0

    preferences = gateway.get("/v1/notifications/preferences", token=vendor_token).expect(200).json()["items"]
    assert {p["kind"]: p["canTurnOff"] for p in preferences}["account.password_reset"] is False
    problem(gateway.put("/v1/notifications/preferences", json={"items": [{"kind": "account.password_reset", "email": False}]},
                        token=vendor_token), 422, "validation-failed")
    problem(gateway.put("/v1/notifications/preferences", body=b"{{", headers={"Content-Type": "application/json"}, token=vendor_token),
            400, "malformed-request")
    changed = gateway.put("/v1/notifications/preferences", json={"items": [{"kind": "order.placed", "email": False}]},
                          token=vendor_token).expect(200).json()["items"]
    assert {p["kind"]: p["email"] for p in changed}["order.placed"] is False

    # The signed link of a mail turns its kind off without signing in; a forged one does nothing.
    # (Users verified by hand for these tests have no proven address at messaging, so no mail was
    # queued for them: the link is signed here as messaging signs it, with the key in its schema.
    # A real mail's link is followed in MessagingIntegrationTests.)
    key = bytes.fromhex(psql(suite.superuser_dsn, "SELECT encode(key, 'hex') FROM messaging.link_keys")[0][0])
    for method, kind in (("get", "listing.approved"), ("post", "order.paid")):
        signed = f"{vendor.id}.{kind}"
        token = signed + "." + base64.urlsafe_b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode().rstrip("=")
        answer = getattr(gateway, method)(f"/v1/notifications/unsubscribe/{token}").expect(200).json()
        assert answer == {"kind": kind, "email": False}
    problem(gateway.get(f"/v1/notifications/unsubscribe/{vendor.id}.order.shipped.AAAA"), 422, "validation-failed")
    problem(gateway.post("/v1/notifications/unsubscribe/x"), 422, "validation-failed")
    now = {p["kind"]: p["email"] for p in gateway.get("/v1/notifications/preferences", token=vendor_token).expect(200).json()["items"]}
    assert now["listing.approved"] is False and now["order.paid"] is False and now["order.shipped"] is True


def test_the_event_stream_needs_a_token_and_a_numeric_last_event_id(gateway, register, suite):
    user = register("buyer")
    token = user.login()["accessToken"]
    problem(gateway.get("/v1/events/stream", headers={"Last-Event-ID": "yesterday"}, token=token), 422, "validation-failed")
    problem(gateway.get("/v1/events/stream"), 401, "unauthorized")


def test_every_messaging_endpoint_but_the_unsubscribe_link_needs_a_token(gateway):
    some = str(uuid.uuid4())
    for method, path in [("GET", "/v1/conversations"), ("POST", "/v1/conversations"), ("GET", f"/v1/conversations/{some}"),
                         ("GET", f"/v1/conversations/{some}/messages"), ("POST", f"/v1/conversations/{some}/messages"),
                         ("POST", f"/v1/conversations/{some}/read"), ("DELETE", f"/v1/conversations/{some}/messages/{some}"),
                         ("POST", f"/v1/conversations/{some}/reports"), ("GET", "/v1/blocks"), ("POST", "/v1/blocks"),
                         ("DELETE", f"/v1/blocks/{some}"), ("GET", "/v1/moderation/reports"), ("POST", f"/v1/moderation/reports/{some}/resolve"),
                         ("GET", f"/v1/moderation/conversations/{some}"), ("GET", "/v1/moderation/audit-log"), ("GET", "/v1/notifications"),
                         ("POST", "/v1/notifications/read"), ("GET", "/v1/notifications/preferences"), ("PUT", "/v1/notifications/preferences"),
                         ("GET", "/v1/events/stream")]:
        body = {"json": {}} if method in ("POST", "PUT") else {}
        problem(gateway.request(method, path, **body), 401, "unauthorized")
