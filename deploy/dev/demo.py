#!/usr/bin/env python3
"""A five-minute walkthrough of the marketplace against a running suite (`make run`).

Run it after `make run` (and, if you like, `make seed`), from another terminal: `make demo`.
It signs up a vendor and a buyer, verifies their addresses with the links mailed to the dev
mail catcher, and then walks through what the product does: the vendor subscribes (a trial
paid by the sandbox test card) and lists puppies, a moderator approves the listing, the buyer
finds it by searching, writes to the vendor (the phone number in the message is hidden from
the vendor until they trade), orders, pays at the payment sandbox, and the order goes from
paid to received. It ends with the mails and in-app notifications the two users got.

Every step prints a sentence and the fields of the answer that matter. When something does
not answer as expected (after waiting up to --timeout seconds for what arrives through
events), it stops with a message naming the step and exits 1.

A vendor's first listings are reviewed by a moderator before they go live. The only way to
have a moderator in a fresh suite is the first-admin command (`identity create-admin`), so
the demo runs it with identity's environment from `deploy/dev/suite.py env identity`: it needs
the data directory of the `make run` (--data-dir, default .data) and the built executables
(--bin-dir, default $MARKETPLACE_BIN_DIR or .build/debug). Every run creates new accounts
(demo-{vendor,buyer,moderator}-<time>@example.com) with their subscription, listing and order.

Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"
PHONE_MESSAGE = "Hello! Are the puppies still available? You can ring me on 07700 900123."
ADDRESS = {"name": "Bea Buyer", "line1": "1 Farm Lane", "city": "York", "postalCode": "YO1 7HH", "country": "GB"}
PLAN = "breeder-monthly"
CARD = "pm_card_visa"
SEARCH = "border collie"


class DemoFailed(Exception):
    """Something did not answer as expected; the message says what."""


class Response:
    def __init__(self, method: str, url: str, status: int, headers, body: bytes):
        self.method, self.url, self.status, self.headers, self.body = method, url, status, headers, body

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except ValueError:
            raise DemoFailed(f"{self.describe()}: the body is not JSON") from None

    def describe(self) -> str:
        text = self.body[:600].decode("utf-8", "replace").strip()
        return f"{self.method} {urllib.parse.urlsplit(self.url).path} answered {self.status}" + (f": {text}" if text else "")


class Client:
    """JSON over HTTP with urllib; waits out the gateway's rate limit on the sign-in routes."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body=None, token: str | None = None, headers: dict | None = None,
                query: dict | None = None) -> Response:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        deadline = time.monotonic() + self.timeout
        while True:
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Accept", "application/json, application/problem+json")
            if data is not None:
                request.add_header("Content-Type", "application/json")
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            for name, value in (headers or {}).items():
                request.add_header(name, value)
            try:
                with urllib.request.urlopen(request, timeout=max(self.timeout, 15)) as answer:
                    response = Response(method, url, answer.status, answer.headers, answer.read())
            except urllib.error.HTTPError as error:
                response = Response(method, url, error.code, error.headers, error.read())
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise DemoFailed(f"{method} {url}: no answer ({reason}). Is the suite running (`make run`)?") from None
            if response.status == 429 and time.monotonic() < deadline:
                delay = min(max(float(response.headers.get("Retry-After") or 1), 0.5), 5)
                print(f"      (the gateway rate-limits {path}: trying again in {delay:g} s)", flush=True)
                time.sleep(delay)
                continue
            return response

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)


def expect(response: Response, *statuses: int):
    if response.status not in statuses:
        raise DemoFailed(f"expected {' or '.join(map(str, statuses))}, but {response.describe()}")
    return response.json() if response.body else None


def wait_for(probe, what: str, timeout: float, interval: float = 0.3):
    """Calls probe() until it returns something truthy; DemoFailed naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except DemoFailed as error:
            last = error
        if time.monotonic() >= deadline:
            raise DemoFailed(f"waited {timeout:g} s for {what}" + (f"; last answer: {last}" if last else ""))
        time.sleep(interval)


def answered(response: Response, *statuses: int):
    """The JSON of a response with one of these statuses, else None (for wait_for)."""
    if response.status in statuses:
        return response.json() if response.body else True
    raise DemoFailed(response.describe())


# ------------------------------------------------------------------------------------ output

def section(number: int, title: str) -> None:
    print(f"\n{number}. {title}", flush=True)


def say(sentence: str) -> None:
    print(f"   {sentence}", flush=True)


def fields(**values) -> None:
    shown = "  ".join(f"{name}={value}" for name, value in values.items())
    print(f"      {shown}", flush=True)


def money(value: dict | None) -> str:
    if not value:
        return "-"
    digits = {"JPY": 0}.get(value["currency"], 2)
    return f"{value['amount'] / 10 ** digits:,.{digits}f} {value['currency']}"


# ------------------------------------------------------------------------------------ the mail catcher

class MailCatcher:
    def __init__(self, base_url: str, timeout: float):
        self.client = Client(base_url, timeout)

    def mails_to(self, address: str) -> list[dict]:
        """Summaries of the mails to `address` (newest first) among the newest 1,000."""
        listing = expect(self.client.get("/api/v1/messages", query={"start": 0, "limit": 1000}), 200)
        return [m for m in listing["messages"] if any(a["Address"].lower() == address.lower() for a in m["To"])]

    def message(self, mail_id: str) -> dict:
        return expect(self.client.get(f"/api/v1/message/{urllib.parse.quote(mail_id)}"), 200)


# ------------------------------------------------------------------------------------ the admin (moderator)

def totp(secret: str, step_offset: int = 0) -> str:
    """The RFC 6238 code an authenticator app shows (SHA-1, 6 digits, 30 s)."""
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int(time.time() // 30) + step_offset
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def identity_environment(args) -> dict[str, str]:
    ports_file = args.data_dir / "run" / "ports.json"
    try:
        ports = json.loads(ports_file.read_text())
    except (OSError, ValueError):
        raise DemoFailed(f"no running `make run` found on the data directory {args.data_dir} ({ports_file} is missing); "
                         f"pass --data-dir with the one `make run` uses") from None
    gateway_port = urllib.parse.urlsplit(args.gateway).port or 80
    if ports.get("gateway") != gateway_port:
        raise DemoFailed(f"the `make run` on {args.data_dir} serves its gateway on port {ports.get('gateway')}, "
                         f"not {gateway_port}: pass the --data-dir of the suite at {args.gateway}")
    command = [sys.executable, str(ROOT / "deploy" / "dev" / "suite.py"), "env", "identity",
               "--data-dir", str(args.data_dir), "--pg-port", str(ports["postgres"])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise DemoFailed(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def identity_command(args) -> tuple[Path, dict[str, str]]:
    """The identity executable and the environment to run its commands against the running suite."""
    binary = args.bin_dir / "identity"
    if not os.access(binary, os.X_OK):
        raise DemoFailed(f"{binary} is not there: build first (`make run` does) or pass --bin-dir")
    return binary, {**os.environ, **identity_environment(args)}


def create_admin(binary: Path, env: dict[str, str], email: str, password: str) -> None:
    result = subprocess.run([str(binary), "create-admin", "--email", email, "--display-name", "Demo Moderator"],
                            input=password + "\n", capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0:
        raise DemoFailed(f"identity create-admin failed ({result.returncode}): {(result.stdout + result.stderr).strip()}")


def sign_in_staff(api: Client, email: str, password: str) -> str:
    """Password, then enrol an authenticator, then sign in with a code: a token with admin rights."""
    first = expect(api.post("/v1/auth/login", {"email": email, "password": password}), 200)
    enrolment = expect(api.post("/v1/auth/mfa/totp", token=first["accessToken"]), 201)
    expect(api.post("/v1/auth/mfa/totp/confirm", {"code": totp(enrolment["secret"])}, token=first["accessToken"]), 200)
    challenge = expect(api.post("/v1/auth/login", {"email": email, "password": password}), 200)
    if not challenge.get("mfaRequired"):
        raise DemoFailed(f"signing in again after enrolling an authenticator asked for no code: {challenge}")
    # The code just used at enrolment is spent: the next 30-second step's code is accepted too.
    tokens = expect(api.post("/v1/auth/mfa/verify", {"mfaToken": challenge["mfaToken"],
                                                     "code": totp(enrolment["secret"], step_offset=1)}), 200)
    return tokens["accessToken"]


# ------------------------------------------------------------------------------------ the walkthrough

class Demo:
    def __init__(self, args):
        self.args = args
        self.api = Client(args.gateway, args.timeout)
        self.mail = MailCatcher(args.mail, args.timeout)
        self.timeout = args.timeout
        self.stamp = time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2)
        self.step = ""

    # Each step names itself, so a failure says where it happened.
    def at(self, step: str) -> None:
        self.step = step

    def run(self) -> None:
        print(f"Marketplace walkthrough: gateway {self.args.gateway}, mail catcher {self.args.mail}")
        self.at("checking the suite")
        expect(self.api.get("/health/ready"), 200)
        expect(self.mail.client.get("/api/v1/messages", query={"limit": 1}), 200)
        self.identity = identity_command(self.args)  # for the moderator in step 2: fail before starting
        self.accounts()
        self.listing()
        self.search_and_message()
        self.order()
        self.inbox()
        print(f"\nDone. Open {self.args.mail} to read the mails; sign in as {self.vendor['email']} or "
              f"{self.buyer['email']} (password {PASSWORD!r}) to look around.")

    # 1 ------------------------------------------------------------------------------
    def register(self, role: str, name: str, **extra) -> dict:
        email = f"demo-{role}-{self.stamp}@example.com"
        self.at(f"registering the {role}")
        user = expect(self.api.post("/v1/auth/register", {"email": email, "password": PASSWORD, "displayName": name,
                                                          "role": role, **extra}), 201)
        say(f"A {role} signs up: {name} <{email}>.")
        fields(id=user["id"], roles=",".join(user["roles"]), emailVerified=user["emailVerified"])
        return {"email": email, "name": name, "id": user["id"], "role": role}

    def verify(self, user: dict) -> None:
        self.at(f"verifying the {user['role']}'s email address")
        mails = wait_for(lambda: self.mail.mails_to(user["email"]), f"the verification mail to {user['email']} in the catcher",
                         self.timeout)
        mail = self.mail.message(mails[-1]["ID"])
        found = re.search(r"https?://\S*[?&]token=[^\s\"'<>]+", mail["Text"])
        if not found:
            raise DemoFailed(f"the mail {mail['Subject']!r} to {user['email']} has no link with a token:\n{mail['Text']}")
        link = found.group(0)
        token = urllib.parse.parse_qs(urllib.parse.urlsplit(link).query)["token"][0]
        say(f"The catcher got {mail['Subject']!r} for {user['name']}; its link opens the client, which posts the token.")
        fields(link=link)
        expect(self.api.post("/v1/auth/verify-email", {"token": token}), 204)
        self.login(user)  # the new token carries the verified address
        me = expect(self.api.get("/v1/users/me", token=user["token"]), 200)
        fields(emailVerified=me["emailVerified"])
        if me["emailVerified"] is not True:
            raise DemoFailed(f"{user['email']} is still unverified after posting the mailed token")

    def login(self, user: dict) -> None:
        tokens = expect(self.api.post("/v1/auth/login", {"email": user["email"], "password": PASSWORD}), 200)
        user["token"] = tokens["accessToken"]

    def accounts(self) -> None:
        section(1, "Two accounts, each verified with the link in its mail")
        self.vendor = self.register("vendor", "Ada Fenland", businessProfile={
            "businessName": "Fenland Collies", "location": {"city": "Ely", "country": "GB"}})
        self.buyer = self.register("buyer", "Bea Buyer")
        self.verify(self.vendor)
        self.verify(self.buyer)

    # 2 ------------------------------------------------------------------------------
    def listing(self) -> None:
        section(2, "The vendor subscribes, lists a litter and publishes it")
        vendor = self.vendor
        self.at("subscribing the vendor")
        plans = expect(self.api.get("/v1/plans"), 200)["items"]
        say("Plans on offer (public):")
        for plan in plans:
            fields(code=plan["code"], price=f"{money(plan['price'])}/{plan['interval']}", quota=plan["listingQuota"],
                   commission=f"{plan['commissionBps'] / 100:g}%", trialDays=plan["trialDays"])
        sub = expect(self.api.post("/v1/subscriptions", {"plan": PLAN, "paymentMethod": CARD}, token=vendor["token"],
                                   headers={"Idempotency-Key": str(uuid.uuid4())}), 201)
        say(f"The vendor subscribes to {PLAN} with the sandbox card {CARD}: a free trial first.")
        fields(id=sub["id"], status=sub["status"], trialEnd=sub["trialEnd"],
               card=f"{sub['paymentMethod']['brand']} ...{sub['paymentMethod']['last4']}" if sub.get("paymentMethod") else "-")

        self.at("creating the listing")
        body = {
            "category": "dogs",
            "title": f"Border collie puppies, KC registered ({self.stamp[-4:]})",
            "description": "Two bitches from a working line.\nVet checked, first vaccinations done, ready in January.",
            "attributes": {"breed": "Border Collie", "sex": "female", "birthDate": "2026-09-01", "pedigree": True,
                           "color": "black and white"},
            "price": {"amount": 85000, "currency": "GBP"},
            "quantity": 2,
            "location": {"lat": 52.3992, "lon": 0.2628, "city": "Ely", "country": "GB"},
            "media": [{"url": "https://img.example.com/collie-1.jpg", "alt": "Two puppies on straw"}],
        }
        listing = expect(self.api.post("/v1/listings", body, token=vendor["token"]), 201)
        self.listing_id = listing["id"]
        self.listing_title = listing["title"]
        say("The vendor creates a listing (a draft, seen only by the vendor).")
        fields(id=listing["id"], status=listing["status"], title=repr(listing["title"]), price=money(listing["price"]),
               quantity=listing["quantityAvailable"])

        self.at("publishing the listing")
        publish = f"/v1/listings/{self.listing_id}/publish"
        # Listings learns of the subscription from billing's entitlement event: until it has,
        # publishing is 403 subscription-required.
        submitted = wait_for(lambda: answered(self.api.post(publish, token=vendor["token"]), 200),
                             "publishing to be allowed (billing's entitlement event reaching listings)", self.timeout)
        say("Once billing's entitlement event reaches listings, the vendor may publish.")
        fields(status=submitted["status"])
        if submitted["status"] == "pending_review":
            self.at("approving the listing as a moderator")
            say("Dogs, and every vendor's first three listings, are reviewed before they go live: "
                "a moderator approves it.")
            email = f"demo-moderator-{self.stamp}@example.com"
            password = secrets.token_urlsafe(18)
            create_admin(*self.identity, email, password)
            staff = sign_in_staff(self.api, email, password)
            approved = expect(self.api.post(f"/v1/moderation/listings/{self.listing_id}/approve", token=staff), 200)
            fields(moderator=email, status=approved["status"], publishedAt=approved.get("publishedAt"))
            submitted = approved
        if submitted["status"] != "published":
            raise DemoFailed(f"the listing is {submitted['status']}, not published")

    # 3 ------------------------------------------------------------------------------
    def search_and_message(self) -> None:
        section(3, "The buyer finds the listing and writes to the vendor")
        self.at("searching")
        query = {"q": SEARCH, "facets": "category,attr.breed", "sort": "newest", "limit": 100}

        def search():
            page = expect(self.api.get("/v1/listings", query=query), 200)
            return page if any(item["id"] == self.listing_id for item in page["items"]) else None

        page = wait_for(search, "the new listing in search results", self.timeout)
        say(f"GET /v1/listings?{urllib.parse.urlencode(query)} (public; newest first):")
        rank, item = next((n, i) for n, i in enumerate(page["items"], 1) if i["id"] == self.listing_id)
        facets = "; ".join(f"{name} " + ", ".join(f"{f['value']} {f['count']}" for f in values[:4])
                           for name, values in page["facets"].items())
        fields(totalEstimate=page["totalEstimate"], facets=f"[{facets}]")
        fields(found=f"#{rank}", title=repr(item["title"]), price=money(item["price"]), where=f"{item['location']['city']}, {item['location']['country']}",
               vendor=item["vendor"]["displayName"], publishedAt=item["publishedAt"])

        self.at("writing to the vendor")
        # Messaging learns of the listing from listings' events: until then it is 404 listing-not-found.
        conversation = wait_for(lambda: answered(self.api.post("/v1/conversations", {"listingId": self.listing_id,
                                                                                     "body": PHONE_MESSAGE},
                                                               token=self.buyer["token"]), 201, 200),
                                "messaging to know the listing (to open a conversation)", self.timeout)
        self.conversation_id = conversation["id"]
        say("The buyer writes to the vendor about the listing, with a phone number in the message:")
        fields(conversation=conversation["id"], to=conversation["otherParty"]["displayName"])
        fields(body=repr(PHONE_MESSAGE))

        self.at("reading the conversation as the vendor")
        body = self.vendor_sees()
        say("The vendor's inbox shows it with the number hidden (they have not traded yet):")
        listed = expect(self.api.get("/v1/conversations", token=self.vendor["token"]), 200)["items"]
        mine = next((c for c in listed if c["id"] == self.conversation_id), None)
        if mine is None:
            raise DemoFailed("the conversation is not in the vendor's list")
        fields(otherParty=mine["otherParty"]["displayName"], unreadCount=mine["unreadCount"],
               contactDetailsShared=mine.get("contactDetailsShared"))
        fields(body=repr(body))
        if "07700 900123" in body or "[contact details hidden]" not in body:
            raise DemoFailed(f"the vendor reads the phone number unmasked before any order: {body!r}")

    def vendor_sees(self) -> str:
        messages = expect(self.api.get(f"/v1/conversations/{self.conversation_id}/messages", token=self.vendor["token"]), 200)
        return messages["items"][-1]["body"]  # newest first: the first message is the last

    # 4 ------------------------------------------------------------------------------
    def order_of(self, token: str) -> dict:
        return expect(self.api.get(f"/v1/orders/{self.order_id}", token=token), 200)

    def wait_order(self, predicate, what: str) -> dict:
        return wait_for(lambda: (lambda o: o if predicate(o) else None)(self.order_of(self.buyer["token"])), what, self.timeout)

    def order(self) -> None:
        section(4, "The buyer orders and pays; the vendor ships; the buyer receives")
        buyer, vendor = self.buyer, self.vendor
        self.at("placing the order")
        body = {"listingId": self.listing_id, "quantity": 1, "shippingAddress": ADDRESS}
        # Orders learns of the listing from listings' events: until then it is 409 listing-unavailable.
        order = wait_for(lambda: answered(self.api.post("/v1/orders", body, token=buyer["token"],
                                                        headers={"Idempotency-Key": str(uuid.uuid4())}), 201),
                         "orders to know the published listing", self.timeout)
        self.order_id = order["id"]
        say("The buyer orders one puppy: the unit is reserved and the price fixed, payment due within 15 minutes.")
        fields(id=order["id"], status=order["status"], total=money(order["total"]), commission=money(order["commission"]),
               paymentDueAt=order["paymentDueAt"])

        self.at("paying at the payment sandbox")
        intent = self.wait_order(lambda o: o["payment"] is not None, "billing's payment intent on the order")["payment"]
        say("Billing makes a payment intent; the buyer confirms it with the sandbox card, as Stripe.js would in a browser.")
        fields(intentId=intent["intentId"], status=intent["status"])
        confirmed = expect(self.api.post(f"/v1/payments/{intent['intentId']}/confirm", {"paymentMethod": CARD},
                                         token=buyer["token"]), 200)
        fields(confirm=confirmed["status"], amount=money(confirmed["amount"]))
        paid = self.wait_order(lambda o: o["status"] == "paid", "the order to become paid (the sandbox's signed webhook)")
        say("The sandbox's signed webhook reaches billing, which takes the money into escrow: the order is paid.")
        fields(status=paid["status"], payment=paid["payment"]["status"])

        self.at("reading the conversation after payment")
        body = wait_for(lambda: (lambda b: b if "07700 900123" in b else None)(self.vendor_sees()),
                        "the vendor to see the phone number once the order is paid", self.timeout)
        say("Now that they trade, the vendor reads the message as written:")
        fields(body=repr(body))

        self.at("shipping the order")
        shipped = expect(self.api.post(f"/v1/orders/{self.order_id}/ship",
                                       {"carrier": "Royal Mail", "trackingNumber": "RM123456789GB"}, token=vendor["token"]), 200)
        say("The vendor ships it, with the carrier's tracking number.")
        fields(status=shipped["status"], shipment=f"{shipped['shipment']['carrier']} {shipped['shipment']['trackingNumber']}")
        self.at("delivering the order")
        delivered = expect(self.api.post(f"/v1/orders/{self.order_id}/deliver", token=vendor["token"]), 200)
        say("The vendor marks it delivered (receipt would be assumed 14 days later).")
        fields(status=delivered["status"])
        self.at("receiving the order")
        received = expect(self.api.post(f"/v1/orders/{self.order_id}/receive", token=buyer["token"]), 200)
        say("The buyer confirms receipt: the vendor's share, less the commission, leaves escrow.")
        fields(status=received["status"])

        self.at("reading the vendor's balance")
        share = received["total"]["amount"] - received["commission"]["amount"]
        balance = wait_for(lambda: (lambda b: b if any(m["amount"] >= share for m in b["available"]) else None)(
            expect(self.api.get("/v1/vendor/balance", token=vendor["token"]), 200)),
            "the vendor's share to become available in the balance", self.timeout)
        say("The vendor's balance: the share is available, to be paid out by the daily payout run.")
        fields(available=", ".join(map(money, balance["available"])) or "-",
               pending=", ".join(map(money, balance["pending"])) or "-")

        say("The order's timeline (history):")
        names = {buyer["id"]: "buyer", vendor["id"]: "vendor"}
        for change in received["history"]:
            actor = names.get(change.get("actorId"), "system" if change.get("actorId") is None else change["actorId"])
            note = f"  ({change['note']})" if change.get("note") else ""
            print(f"      {change['at']}  {change['status']:<16} {change['event']:<16} by {actor}{note}")

    # 5 ------------------------------------------------------------------------------
    def inbox(self) -> None:
        section(5, "What the two users were told")
        self.at("reading the mail catcher")
        # Mails go out asynchronously (events, then a durable queue, then SMTP): wait until the
        # count stops changing for two seconds.
        people = (self.vendor, self.buyer)
        last, steady_since, deadline = None, time.monotonic(), time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            counts = tuple(len(self.mail.mails_to(p["email"])) for p in people)
            if counts != last:
                last, steady_since = counts, time.monotonic()
            elif time.monotonic() - steady_since >= 2:
                break
            time.sleep(0.3)
        for person in people:
            mails = self.mail.mails_to(person["email"])
            say(f"Mails to the {person['role']} ({person['email']}), oldest first:")
            for mail in reversed(mails):
                print(f"      {mail['Created']}  {mail['Subject']}", flush=True)
        self.at("reading the in-app notifications")
        for person in people:
            items = expect(self.api.get("/v1/notifications", token=person["token"], query={"limit": 50}), 200)["items"]
            say(f"In-app notifications of the {person['role']} (GET /v1/notifications, unread first):")
            if not items:
                print("      (none)", flush=True)
            for note in items:
                print(f"      {note['createdAt']}  {note['kind']:<22} {note['title']}" + ("" if note["read"] else "  [unread]"),
                      flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="demo.py",
        description="Walk through the marketplace against a running suite (`make run`): sign-up and email "
                    "verification, a vendor's subscription and listing, search, a masked message, an order "
                    "paid at the sandbox and received, and the mails and notifications it caused.",
        epilog="Exits 1, naming the step, when an answer is not the expected one or something does not arrive "
               "within --timeout. Creates new users on every run (demo-*-<time>@example.com).")
    gateway_port = os.environ.get("MARKETPLACE_GATEWAY_PORT") or "8080"
    mail_port = os.environ.get("MARKETPLACE_MAIL_PORT") or "8025"
    parser.add_argument("--gateway", default=f"http://127.0.0.1:{gateway_port}",
                        help="the gateway (default %(default)s; $MARKETPLACE_GATEWAY_PORT moves it)")
    parser.add_argument("--mail", default=f"http://127.0.0.1:{mail_port}",
                        help="the dev mail catcher (default %(default)s; $MARKETPLACE_MAIL_PORT moves it)")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds to wait for anything that arrives through events (default %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data",
                        help="the data directory of the `make run` (default .data): for the moderator, see below")
    parser.add_argument("--bin-dir", type=Path,
                        default=Path(os.environ.get("MARKETPLACE_BIN_DIR") or ROOT / ".build" / "debug"),
                        help="where the built executables are (default $MARKETPLACE_BIN_DIR or .build/debug)")
    parser.epilog += (" A vendor's first listings are reviewed: the demo makes a moderator with "
                      "`identity create-admin` (from --bin-dir, with the environment of the `make run` on --data-dir).")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir if args.data_dir.is_absolute() else (Path.cwd() / args.data_dir)
    demo = Demo(args)
    try:
        demo.run()
    except DemoFailed as error:
        print(f"\ndemo FAILED while {demo.step}: {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print(f"\ndemo interrupted while {demo.step}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
