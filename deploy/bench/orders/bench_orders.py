#!/usr/bin/env python3
"""`make bench-orders` (and the end of `make bench`): the purchase, end to end, through the gateway.

Every service runs (release build, the defaults k8s/ sets: a pool of 10 connections, 4 job
workers, LOG_LEVEL info; the sandbox payment provider), on a throwaway suite. Each order is what
a buyer's client does: `POST /v1/orders` (an Idempotency-Key, a verified buyer's token) -> 201
`pending_payment`; `GET /v1/orders/{id}` every --poll-ms until billing's payment intent is on it;
`POST /v1/payments/{intentId}/confirm` with `pm_card_visa` -> 200. The sandbox then delivers its
signed webhook to billing, billing re-reads the intent and emits `payment.succeeded`, and orders
marks the order `paid`: the client does not wait for that, the databases say when it happened.

1. Throughput (goal: >= 200 orders/s on 2 cores): --orders orders by --concurrency clients, each
   client one order at a time. orders/s = orders paid / (first `POST /v1/orders` sent -> last
   order `paid`, orders' own timestamp).
2. Latency (goal: p99 <= 200 ms from the provider's webhook arriving at billing,
   `billing.webhook_events.received_at`, to the order `paid`, its `orders.order_history` row),
   per order from the databases after the run; also each step before it and place -> paid as the
   client sees it (its own clock: client and suite share the machine's). Reported for the
   throughput run (every client busy: queues as full as they get) and for steady runs of --paced
   orders each, arriving at a fixed rate whatever the ones before are doing: --loads fractions
   (half and 80 %) of the measured throughput, at most --rate (the goal's 200/s).

The client is one Python process: asyncio and a minimal keep-alive HTTP/1.1 client, so its CPU is
a small share of the machine's; the report says how much it used, with every other process's
CPU over the throughput run (services, each service's Postgres connections, the broker, and what
processes outside the suite took). Before measuring, --warmup orders go all the way to `paid`.

Setup, not measured: --vendors vendors (registered at identity, email verified with SQL, their
plan's `entitlement.changed` produced on the dev broker as billing would: commission 8 %),
--listings published listings each (10,000 units, the most a listing takes, through the gateway;
LISTINGS_REVIEW_FIRST_LISTINGS=0 so no moderator is needed), and --buyers verified buyers, each
signed in; orders learns of listings and rates from the events, and the run starts once it has.
The gateway's per-subject rate limits are lifted as in `make bench`: a few buyers place many orders.

    deploy/bench/orders/run.sh [--orders 5000] [--concurrency 128] [--paced 1500] [--loads 0.5,0.8] [--rate 200]
                               [--warmup 200] [--buyers 50] [--vendors 4] [--listings 5] [--poll-ms 100]
                               [--env SERVICE:KEY=VALUE ...] [--no-profile] [--bin-dir DIR]
                               [--output FILE] [--keep]

Listings' answer for each order's stock (`order.placed` -> `stock.reserved`) is not on the way to
`paid`; after each run the bench waits for all of them, so that the next run starts without a
backlog, and the report says how long they took and what the suite spent meanwhile.

The report's profile of the throughput run (--no-profile leaves it out, and what it costs):
pg_stat_statements (the services' statements by total time, per order) and `perf record` samples
of orders, billing, listings, the gateway and the services' Postgres connections. Postgres runs
with the suite's throwaway settings (fsync and synchronous_commit off), as every `make bench`
figure does; the report says so. The headline figures also go to the report's JSON twin
(orders-results.json; deploy/bench/report.py puts them in the README's table).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(ROOT / "deploy" / "dev"), str(ROOT / "deploy" / "bench")]

from suite import FAST_PG_SETTINGS, SERVICES, Suite, SuiteError, say  # noqa: E402
from bench import GATEWAY_BENCH_ENV, call_json, machine  # noqa: E402
from report import SPEC_BY_ID, figure, write_results_json  # noqa: E402

# The billing bench's settings: room for the run's tables in memory, no checkpoint in the middle.
PG_SETTINGS = {**FAST_PG_SETTINGS, "shared_buffers": "2GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"}
GOAL_RATE = 200.0  # orders/s on 2 cores
GOAL_P99_MS = 200.0  # webhook arrived -> paid
UNITS = 10_000  # per listing: the most listings accepts
PASSWORD = "bench-orders-correct-horse"
ADDRESS = {"name": "Bench Buyer", "line1": "1 Farm Lane", "city": "York", "postalCode": "YO1 7HH", "country": "GB"}
LISTING = {
    "category": "pet-supplies",
    "title": "Ceramic feeding bowl",
    "description": "Heavy, dishwasher safe.",
    "attributes": {"condition": "new", "brand": "Crockford", "suitableFor": ["dogs", "cats"]},
    "price": {"amount": 1899, "currency": "GBP"},
    "quantity": UNITS,
    "location": {"lat": 51.4545, "lon": -2.5879, "city": "Bristol", "country": "GB"},
}
PROCESSES = SERVICES + ("gateway", "devbroker")


# ----------------------------------------------------------------------------- setup


def call(url: str, body: dict | None = None, *, token: str | None = None, expect: int = 200, method: str | None = None) -> dict:
    """One JSON request (setup only; the measured requests use HttpConnection)."""
    return call_json(url, body, token=token, expect=expect, method=method)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def produce(broker: str, topic: str, key: str, type_: str, source: str, payload: dict) -> None:
    """One CloudEvent in binary mode, as a service's outbox relay sends it (kcat)."""
    headers = {"ce_specversion": "1.0", "ce_id": str(uuid.uuid4()), "ce_type": type_, "ce_source": source,
               "ce_time": now_rfc3339(), "content-type": "application/json"}
    args = ["kcat", "-b", broker, "-P", "-t", topic, "-k", key]
    for name, value in headers.items():
        args += ["-H", f"{name}={value}"]
    r = subprocess.run(args, input=json.dumps(payload).encode(), capture_output=True, timeout=30)
    if r.returncode != 0:
        raise SuiteError(f"kcat could not produce to {topic}: {r.stderr.decode(errors='replace')}")


def register(suite: Suite, role: str, label: str) -> dict:
    """A user registered straight at identity (the gateway rate-limits /v1/auth/ per address)."""
    body = {"email": f"bench-{label}-{uuid.uuid4().hex[:10]}@example.com", "password": PASSWORD,
            "displayName": f"Bench {label}", "role": role}
    if role == "vendor":
        body["businessProfile"] = {"businessName": f"Bench {label} Kennels", "location": {"city": "York", "country": "GB"}}
    user = call(suite.url("identity") + "/v1/auth/register", body, expect=201)
    return {"id": user["id"], "email": body["email"]}


def sign_in(suite: Suite, users: list[dict]) -> None:
    """An access token for each (15 minutes: setup and a run fit; signed in again before each phase)."""
    for user in users:
        user["token"] = call(suite.url("identity") + "/v1/auth/login", {"email": user["email"], "password": PASSWORD})["accessToken"]
        user["signedInAt"] = time.monotonic()


def verify_emails(suite: Suite, users: list[dict]) -> None:
    ids = ", ".join(f"'{u['id']}'" for u in users)
    suite.psql(f"UPDATE identity.users SET email_verified = true WHERE id IN ({ids})")


def wait_for(suite: Suite, sql: str, target: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = int(suite.psql(sql).strip() or 0)
        if value >= target:
            return
        if time.monotonic() > deadline:
            raise SuiteError(f"{what}: {value} of {target} after {timeout:.0f} s")
        time.sleep(0.5)


def prepare(suite: Suite, args) -> tuple[list[dict], list[str]]:
    """Vendors with a rate and published listings that orders knows; verified, signed-in buyers."""
    say(f"setup: {args.vendors} vendors with {args.listings} listings each, {args.buyers} buyers")
    vendors = [register(suite, "vendor", f"vendor{i}") for i in range(args.vendors)]
    buyers = [register(suite, "buyer", f"buyer{i}") for i in range(args.buyers)]
    verify_emails(suite, vendors + buyers)
    sign_in(suite, vendors)
    for vendor in vendors:
        produce(suite.kafka_bootstrap_servers, "billing.entitlements.v1", vendor["id"], "marketplace.billing.entitlement.changed.v1",
                "/marketplace/billing", {
                    "vendorId": vendor["id"], "mayPublish": True, "mayList": True, "listingQuota": 100, "commissionBps": 800,
                    "subscriptionStatus": "active", "reason": "bench", "effectiveAt": now_rfc3339(), "version": 1})
    listing_ids = []
    for vendor in vendors:
        for _ in range(args.listings):
            listing = call(suite.gateway_url + "/v1/listings", LISTING, token=vendor["token"], expect=201)
            deadline = time.monotonic() + 30
            while True:  # listings learns of the entitlement from the broker
                try:
                    call(suite.gateway_url + f"/v1/listings/{listing['id']}/publish", {}, token=vendor["token"])
                    break
                except SuiteError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            listing_ids.append(listing["id"])
    ids = ", ".join(f"'{i}'" for i in listing_ids)
    wait_for(suite, f"SELECT count(*) FROM orders.listing_snapshots WHERE orderable AND quantity_available >= {UNITS} AND id IN ({ids})",
             len(listing_ids), 60, "orders knows the listings")
    wait_for(suite, "SELECT count(*) FROM orders.vendor_commissions", len(vendors), 60, "orders knows the vendors' rates")
    sign_in(suite, buyers)
    return buyers, listing_ids


# ----------------------------------------------------------------------------- the client


class HttpConnection:
    """One keep-alive HTTP/1.1 connection on asyncio streams: a few dozen microseconds of Python per
    request, where http.client's header parsing costs several times that."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, token: str, body: bytes = b"", extra: str = "") -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
                f"Accept: application/json\r\n{extra}")
        if body or method == "POST":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        try:
            self.writer.write(head.encode() + b"\r\n" + body)
            raw = await self.reader.readuntil(b"\r\n\r\n")
            status = int(raw[9:12])
            length, chunked, close = None, False, False
            for line in raw.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                parts = []
                while True:
                    size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                    parts.append(await self.reader.readexactly(size + 2))
                    if size == 0:
                        break
                payload = b"".join(p[:-2] for p in parts)
            else:
                payload = await self.reader.readexactly(length or 0)
            if close:
                self.close()
            return status, payload
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Trace:
    """One order as the client saw it (wall-clock seconds, comparable with the databases')."""
    n: int
    placed: float = 0.0  # POST /v1/orders sent
    created: float = 0.0  # its 201 read
    intent: float = 0.0  # the GET that showed billing's intent read
    confirmed: float = 0.0  # the confirmation's 200 read
    polls: int = 0
    order_id: str | None = None
    ok: bool = False


@dataclass
class ClientRun:
    traces: list[Trace]
    errors: Counter = field(default_factory=Counter)
    requests: int = 0
    wall: float = 0.0
    cpu: float = 0.0  # the client process's own CPU seconds
    stale: int = 0  # requests sent again: their kept-alive connection had been closed by the server

    @property
    def first(self) -> float:
        """When the first order was sent."""
        return min(t.placed for t in self.traces if t.placed)


class Shoppers:
    """Buyers' clients: each order is place -> poll for the intent -> confirm."""

    def __init__(self, url: str, buyers: list[dict], listings: list[str], *, connections: int, poll: float):
        host, _, port = url.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.buyers, self.listings, self.poll = buyers, listings, poll
        self.idle: list[HttpConnection] = []
        self.available = asyncio.Semaphore(connections)
        self.errors: Counter = Counter()
        self.requests = 0
        self.stale = 0  # kept-alive connections found closed by the server, the request sent again

    async def send(self, method: str, path: str, token: str, body: dict | None = None, extra: str = "") -> tuple[int, bytes]:
        """One request on an idle connection (a new one if none is); 0 and no body when it failed. A kept-alive
        connection the server closed while it was idle fails before any answer: the request is sent again once on a
        new connection (safe: the server never saw it, and a placing keeps its Idempotency-Key)."""
        data = json.dumps(body).encode() if body is not None else b""
        async with self.available:
            reused = bool(self.idle)
            conn = self.idle.pop() if reused else HttpConnection(self.host, self.port)
            self.requests += 1
            for attempt in (1, 2):
                try:
                    result = await conn.request(method, path, token, data, extra)
                    self.idle.append(conn)
                    return result
                except asyncio.IncompleteReadError as e:
                    if attempt == 1 and reused and not e.partial:
                        self.stale += 1
                        conn = HttpConnection(self.host, self.port)
                        continue
                    error = e
                except (OSError, asyncio.LimitOverrunError, ValueError) as e:
                    error = e
                self.errors[f"{method} {path.split('/')[2]}: {type(error).__name__}"] += 1
                return 0, b""
            raise AssertionError("unreachable")

    async def buy(self, t: Trace) -> None:
        token = self.buyers[t.n % len(self.buyers)]["token"]
        body = {"listingId": self.listings[t.n % len(self.listings)], "quantity": 1, "shippingAddress": ADDRESS}
        t.placed = time.time()
        status, payload = await self.send("POST", "/v1/orders", token, body, f"Idempotency-Key: {uuid.uuid4()}\r\n")
        t.created = time.time()
        if status == 0:
            return
        if status != 201:
            self.errors[f"place: {status} {payload[:120]!r}"] += 1
            return
        t.order_id = json.loads(payload)["id"]
        deadline = t.created + 60
        while True:
            await asyncio.sleep(self.poll)
            status, payload = await self.send("GET", f"/v1/orders/{t.order_id}", token)
            t.polls += 1
            if status == 200:
                payment = json.loads(payload)["payment"]
                if payment is not None:
                    intent = payment["intentId"]
                    break
            elif status:  # 0: a connection error, counted by send()
                self.errors[f"poll: {status} {payload[:120]!r}"] += 1
            if time.time() > deadline:
                self.errors["no intent within 60 s"] += 1
                return
        t.intent = time.time()
        status, payload = await self.send("POST", f"/v1/payments/{intent}/confirm", token, {"paymentMethod": "pm_card_visa"})
        t.confirmed = time.time()
        if status == 0:
            return
        if status != 200:
            self.errors[f"confirm: {status} {payload[:120]!r}"] += 1
            return
        t.ok = True

    async def closed_loop(self, first: int, count: int, concurrency: int) -> list[Trace]:
        """`concurrency` clients, each placing its next order once its last is confirmed."""
        traces = [Trace(first + i) for i in range(count)]
        queue = iter(traces)

        async def client():
            for t in queue:
                await self.buy(t)

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return traces

    async def paced(self, first: int, count: int, rate: float) -> list[Trace]:
        """Orders arriving at `rate` per second, whatever the ones before are doing."""
        traces = [Trace(first + i) for i in range(count)]
        start = time.monotonic()
        tasks = []
        for i, t in enumerate(traces):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.buy(t)))
        await asyncio.gather(*tasks)
        return traces


def drive(url: str, buyers: list[dict], listings: list[str], *, first: int, count: int, poll: float,
          concurrency: int | None = None, rate: float | None = None) -> ClientRun:
    shoppers = None

    async def main() -> list[Trace]:
        nonlocal shoppers
        shoppers = Shoppers(url, buyers, listings, connections=concurrency or 256, poll=poll)
        if rate is not None:
            return await shoppers.paced(first, count, rate)
        return await shoppers.closed_loop(first, count, concurrency)

    cpu0, wall0 = cpu_self(), time.monotonic()
    traces = asyncio.run(main())
    return ClientRun(traces, shoppers.errors, shoppers.requests, time.monotonic() - wall0, cpu_self() - cpu0, shoppers.stale)


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ----------------------------------------------------------------------------- measuring


def fresh_tokens(suite: Suite, buyers: list[dict]) -> None:
    if any(time.monotonic() - b["signedInAt"] > 600 for b in buyers):
        sign_in(suite, buyers)


def wait_orders(suite: Suite, since: float, count: int, timeout: float, *, stock: bool) -> dict[str, int]:
    """Polls until the `count` orders placed since `since` (epoch seconds; the phases before have all
    settled) are no longer waiting for their payment and, with `stock`, listings has answered for
    their stock too (no phase starts with the last one's backlog). Their statuses (and how many
    still lack their stock, if any)."""
    deadline = time.monotonic() + timeout
    sql = f"""SELECT status, count(*), count(*) FILTER (WHERE NOT stock_confirmed) FROM orders.orders
              WHERE created_at >= to_timestamp({since}) GROUP BY 1"""
    while True:
        rows = [line.split("|") for line in suite.psql(sql).split()]
        statuses = {s: int(c) for s, c, _ in rows}
        unconfirmed = sum(int(u) for s, _, u in rows if s != "canceled")
        done = sum(statuses.values()) >= count and statuses.get("pending_payment", 0) == 0 and (unconfirmed == 0 or not stock)
        if done or time.monotonic() > deadline:
            return {**statuses, "stock not confirmed": unconfirmed} if unconfirmed else statuses
        time.sleep(0.5)


def timelines(suite: Suite, since: float) -> dict[str, dict]:
    """Per order placed since `since` (epoch seconds): each step's time from the databases."""
    out = suite.psql(f"""
WITH o AS (SELECT id, status, created_at, payment_intent_id FROM orders.orders WHERE created_at >= to_timestamp({since - 1})),
     h AS (SELECT order_id, min(at) FILTER (WHERE event = 'paid') AS paid, min(at) FILTER (WHERE event = 'given its stock') AS stock
           FROM orders.order_history WHERE event IN ('paid', 'given its stock') AND order_id IN (SELECT id FROM o) GROUP BY 1),
     w AS (SELECT object_id, min(received_at) AS received, min(applied_at) AS applied FROM billing.webhook_events
           WHERE provider = 'sandbox' AND type = 'payment_intent.succeeded' AND received_at >= to_timestamp({since - 1}) GROUP BY 1),
     s AS (SELECT body::jsonb #>> '{{data,object,id}}' AS intent, min(created_at) AS confirmed FROM billing.sandbox_events
           WHERE type = 'payment_intent.succeeded' AND created_at >= to_timestamp({since - 1}) GROUP BY 1),
     i AS (SELECT id, created_at FROM billing.sandbox_payment_intents WHERE created_at >= to_timestamp({since - 1}))
SELECT o.id, o.status, extract(epoch FROM o.created_at), extract(epoch FROM i.created_at), extract(epoch FROM s.confirmed),
       extract(epoch FROM w.received), extract(epoch FROM w.applied), extract(epoch FROM p.paid_at), extract(epoch FROM h.paid),
       extract(epoch FROM h.stock)
FROM o LEFT JOIN h ON h.order_id = o.id LEFT JOIN w ON w.object_id = o.payment_intent_id LEFT JOIN s ON s.intent = o.payment_intent_id
       LEFT JOIN i ON i.id = o.payment_intent_id LEFT JOIN billing.order_payments p ON p.order_id = o.id""", timeout=300)
    rows = {}
    for line in out.splitlines():
        oid, status, *times = line.split("|")
        rows[oid] = {"status": status, **dict(zip(("placed", "intent", "confirmed", "webhook", "applied", "held", "paid", "stock"),
                                                  (float(t) if t else None for t in times)))}
    return rows


def events(suite: Suite, since: float, until: float) -> list[tuple[str, int, int]]:
    """Per service: events it wrote to its outbox and events it applied from the broker (inbox) in the window."""
    out = []
    for service in SERVICES:
        window = f"BETWEEN to_timestamp({since}) AND to_timestamp({until})"
        written = int(suite.psql(f"SELECT count(*) FROM {service}.outbox WHERE created_at {window}").strip())
        applied = int(suite.psql(f"SELECT count(*) FROM {service}.inbox WHERE received_at {window}").strip())
        out.append((service, written, applied))
    return out


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    values = sorted(values)

    def at(p: float) -> float:  # nearest rank
        return values[max(0, min(len(values) - 1, int(round(p / 100 * len(values) + 0.5)) - 1))]

    return {"n": len(values), "p50": at(50), "p95": at(95), "p99": at(99), "max": values[-1], "mean": sum(values) / len(values)}


STEPS = [  # (what, from, to): "client." is the client's clock, the rest the databases'
    ("placed → 201 (client)", "client.placed", "client.created"),
    ("placed → intent seen by the client", "client.placed", "client.intent"),
    ("confirm request (client)", "client.intent", "client.confirmed"),
    ("order placed → provider's intent created", "placed", "intent"),
    ("confirmed at the provider → webhook arrived", "confirmed", "webhook"),
    ("webhook arrived → intent re-read, payment held", "webhook", "held"),
    ("payment held → order `paid` (billing's outbox, the broker, orders' consumer)", "held", "paid"),
    ("**webhook arrived → order `paid`**", "webhook", "paid"),
    ("placed (client sent) → order `paid`", "client.placed", "paid"),
    ("order placed → stock held (listings' answer applied)", "placed", "stock"),
]


def analyse(run: ClientRun, db: dict[str, dict]) -> dict:
    """Throughput and the latency of each step over the orders the client placed."""
    ok = [t for t in run.traces if t.ok]
    rows = []
    for t in ok:
        row = db.get(t.order_id)
        if row is not None:
            rows.append({**row, "client.placed": t.placed, "client.created": t.created, "client.intent": t.intent,
                         "client.confirmed": t.confirmed})
    paid = [r for r in rows if r["paid"] is not None]
    first = min(t.placed for t in run.traces)
    last = max((r["paid"] for r in paid), default=first)
    steps = []
    for what, a, b in STEPS:
        values = [(r[b] - r[a]) * 1000 for r in rows if r.get(a) is not None and r.get(b) is not None]
        steps.append((what, percentiles(values)))
    statuses = Counter(r["status"] for r in rows)
    # The rate once the pipeline is full and before it drains: between the 10th and 90th percentile paid.
    times = sorted(r["paid"] for r in paid)
    low, high = times[len(times) // 10] if times else 0, times[(len(times) * 9) // 10] if times else 0
    middle = ((len(times) * 9) // 10 - len(times) // 10) / (high - low) if high > low else 0.0
    stocked = [r["stock"] for r in rows if r["stock"] is not None]
    # webhook -> paid p99 per 10 s of the run (by the webhook's arrival): do the slow ones come together?
    windows: dict[int, list[float]] = {}
    for r in rows:
        if r["webhook"] is not None and r["paid"] is not None:
            windows.setdefault(int((r["webhook"] - first) // 10), []).append((r["paid"] - r["webhook"]) * 1000)
    series = [percentiles(windows[k]).get("p99") for k in sorted(windows)]
    return {"orders": len(run.traces), "confirmed": len(ok), "paid": len(paid), "statuses": dict(statuses),
            "lastStock": max(stocked) - first if stocked else None, "stocked": len(stocked),
            "seconds": last - first, "rate": len(paid) / (last - first) if last > first else 0.0, "middleRate": middle,
            "first": first, "last": last,
            "clientSeconds": run.wall, "clientCpu": run.cpu, "requests": run.requests,
            "pollsPerOrder": sum(t.polls for t in run.traces) / max(1, len(run.traces)),
            "errors": dict(run.errors), "stale": run.stale, "steps": steps, "series": series, "webhookToPaid": dict(steps)["**webhook arrived → order `paid`**"]}


# ----------------------------------------------------------------------------- CPU


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all processes on the machine have used (every core), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of all of a process's threads so far."""
    total = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split(":")[1])
        except (OSError, ValueError):
            pass
    return total


class CpuMeter:
    """CPU and context switches per suite process (and per service's Postgres connections) between
    start() and stop()."""

    def __init__(self, suite: Suite):
        self.suite = suite

    def sample(self) -> dict[str, tuple[float, int]]:
        counts: dict[str, tuple[float, int]] = {}
        for name in PROCESSES:
            pid = self.suite.pid(name)
            if pid:
                counts[name] = (cpu_seconds(pid) or 0.0, context_switches(pid))
        roles = dict(line.split("|") for line in self.suite.psql(
            "SELECT pid, coalesce(nullif(usename, ''), backend_type) FROM pg_stat_activity").split("\n") if line)
        postmaster = self.suite.postgres_pid()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if ppid == postmaster or int(entry.name) == postmaster:
                who = roles.get(entry.name, "other")
                key = f"postgres: {who}" if who in SERVICES else "postgres: other"
                counts[f"pid:{entry.name}:{key}"] = (cpu_seconds(int(entry.name)) or 0.0, context_switches(int(entry.name)))
        counts["machine"] = (machine_busy(), 0)
        counts["client"] = (cpu_self(), 0)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        counts["client's psql and kcat"] = (children.ru_utime + children.ru_stime, 0)
        return counts

    def start(self) -> None:
        self.before, self.started = self.sample(), time.monotonic()

    def stop(self) -> dict:
        after, wall = self.sample(), time.monotonic() - self.started
        used: Counter = Counter()
        switches: Counter = Counter()
        for key, (cpu, ctx) in after.items():
            cpu0, ctx0 = self.before.get(key, (0.0, 0))
            name = key.split(":", 2)[2] if key.startswith("pid:") else key
            used[name] += cpu - cpu0
            switches[name] += ctx - ctx0
        ours = sum(v for k, v in used.items() if k != "machine")
        used["outside the suite and the client"] = max(0.0, used.pop("machine") - ours)
        return {"wall": wall, "cores": os.cpu_count() or 1, "used": dict(used), "switches": dict(switches)}


# ----------------------------------------------------------------------------- profile


def profile(suite: Suite, orders: int, top: int = 25) -> str:
    """The services' statements (the bench's own run as `postgres`) by total time, per order."""
    services = "SELECT oid FROM pg_roles WHERE rolname IN (" + ", ".join(f"'{s}'" for s in SERVICES) + ")"
    total = suite.psql(f"""
SELECT round(sum(calls)::numeric / {orders}, 1), round(sum(total_exec_time)::numeric / 1000, 1)
FROM pg_stat_statements WHERE userid IN ({services})""").strip().split("|")
    by_role = suite.psql(f"""
SELECT r.rolname, round(sum(s.calls)::numeric / {orders}, 1), round(sum(s.total_exec_time)::numeric / 1000, 2)
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE s.userid IN ({services}) GROUP BY 1 ORDER BY 3 DESC""")
    rows = suite.psql(f"""
SELECT r.rolname, round(s.calls::numeric / {orders}, 2), round(s.total_exec_time::numeric), round(s.mean_exec_time::numeric, 3),
       left(regexp_replace(s.query, '\\s+', ' ', 'g'), 120)
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid WHERE s.userid IN ({services})
ORDER BY s.total_exec_time DESC LIMIT {top}""")
    lines = [f"The services' statements from the throughput run's first order until every order's stock was confirmed "
             f"(pg_stat_statements): {total[0]} per order, {total[1]} s executing in all (lock waits included).", "",
             "| role | statements per order | executing |", "|---|---:|---:|"]
    lines += [f"| {r} | {c} | {s} s |" for r, c, s in (line.split("|") for line in by_role.splitlines())]
    lines += ["", f"The {top} that took longest in all:", "",
              "| role | per order | total | mean | statement |", "|---|---:|---:|---:|---|"]
    for line in rows.splitlines():
        role, per, total_ms, mean, query = line.split("|", 4)
        lines.append(f"| {role} | {per} | {total_ms} ms | {mean} ms | `{query.replace('|', '/')}` |")
    return "\n".join(lines)


class Sampler:
    """`perf record` (cpu-clock samples at 499 Hz, no call graphs) of the busiest
    processes and of the services' Postgres connections, one recording each, over the throughput run."""

    NAMES = ("orders", "billing", "listings", "gateway")

    def __init__(self, suite: Suite):
        self.suite = suite
        self.dir = Path(suite.data_dir) / "perf"
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        self.dir.mkdir(exist_ok=True)
        targets = {name: [str(self.suite.pid(name))] for name in self.NAMES if self.suite.pid(name)}
        roles = ", ".join(f"'{s}'" for s in SERVICES)
        targets["postgres"] = self.suite.psql(f"SELECT pid FROM pg_stat_activity WHERE usename IN ({roles})").split()
        for name, pids in targets.items():
            if pids:
                self.procs[name] = subprocess.Popen(
                    ["perf", "record", "-q", "-F", "499", "-o", str(self.dir / f"{name}.data"), "-p", ",".join(pids)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.dir / f"{name}.log", "wb"))

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(2)  # SIGINT: perf writes its file and exits
        for proc in self.procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

    def report(self, cpu: dict, top: int = 8) -> list[str]:
        lines = ["Where each process spent its CPU from the first order placed to the last paid (`perf record -F 499`, share of "
                 "its samples; Swift names demangled):", ""]
        for name in self.procs:
            data = self.dir / f"{name}.data"
            if not data.exists():
                continue
            seconds = sum(v for k, v in cpu["used"].items() if k == name or (name == "postgres" and k.startswith("postgres: ")
                                                                               and k != "postgres: other"))
            by_dso = self._perf(data, "dso", 3.0)
            by_sym = self._perf(data, "sym", 0.0)[:top]
            lines.append(f"- **{name}** ({seconds:.1f} s of CPU): " + ", ".join(f"{what} {share:.0f} %" for share, what in by_dso))
            for share, what in by_sym:
                what = what.removeprefix("[.] ").removeprefix("[k] ")
                lines.append(f"  - {share:.1f} % `{what[:110].replace('`', chr(39))}`")
        return lines

    @staticmethod
    def _perf(data: Path, key: str, limit: float) -> list[tuple[float, str]]:
        out = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", key, "--percent-limit", str(limit)],
                             capture_output=True, text=True, timeout=300).stdout
        if shutil.which("swift"):
            out = subprocess.run(["swift", "demangle", "--simplified"], input=out, capture_output=True, text=True, timeout=120).stdout or out
        rows = []
        for line in out.splitlines():
            m = re.match(r"^\s*([\d.]+)%\s+(.+?)\s*$", line)
            if m:
                rows.append((float(m.group(1)), m.group(2)))
        return rows


# ----------------------------------------------------------------------------- report


def ms(value: float | None) -> str:
    return "–" if value is None else (f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms")


def rate_verdict(rate: float, complete: bool) -> str:
    if rate >= GOAL_RATE and complete:
        return f"**met**, {rate / GOAL_RATE - 1:.0%} over"
    return f"**missed** by {max(0.0, 1 - rate / GOAL_RATE):.0%}" + ("" if complete else " (not every order was paid)")


def latency_verdict(p99: float | None) -> str:
    if p99 is None:
        return "not measured"
    if p99 <= GOAL_P99_MS:
        return f"**met**, {1 - p99 / GOAL_P99_MS:.0%} under"
    return f"**missed** by {p99 - GOAL_P99_MS:,.0f} ms, {p99 / GOAL_P99_MS:.1f}× the goal"


def step_table(result: dict) -> list[str]:
    lines = ["| step | orders | p50 | p95 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for what, p in result["steps"]:
        if p["n"]:
            lines.append(f"| {what} | {p['n']:,} | {ms(p['p50'])} | {ms(p['p95'])} | {ms(p['p99'])} | {ms(p['max'])} |")
        else:
            lines.append(f"| {what} | 0 | – | – | – | – |")
    return lines


def problems(result: dict) -> str:
    notes = []
    if result["errors"]:
        notes.append("Client errors: " + "; ".join(f"{k} ×{v}" for k, v in result["errors"].items()) + ".")
    others = {k: v for k, v in result["statuses"].items() if k != "paid"}
    if others:
        notes.append("Not paid at the end: " + ", ".join(f"{v} {k}" for k, v in others.items()) + ".")
    if result["stale"]:
        notes.append(f"{result['stale']} requests were sent again on a new connection: the server had closed the kept-alive "
                     "one while it was idle.")
    return " ".join(notes) or "Every order placed was confirmed and paid; no request failed."


def series(result: dict) -> str:
    values = ", ".join("–" if v is None else f"{v:,.0f}" for v in result["series"])
    return f"Webhook arrived → `paid`, p99 of each 10 s of the run (ms): {values}."


def suite_cpu(cpu: dict) -> float:
    """The suite's CPU seconds in a window: services, their Postgres connections, the broker."""
    return sum(v for k, v in cpu["used"].items() if k not in ("client", "client's psql and kcat", "outside the suite and the client"))


def stock_note(result: dict) -> str:
    """Listings' side of each order (`order.placed` -> `stock.reserved` -> orders) does not hold up `paid`."""
    if result["lastStock"] is None:
        return "Listings confirmed no order's stock."
    lag = result["lastStock"] - result["seconds"]
    drain = result["drain"]
    note = (f"Listings' answers for the stock (`order.placed` → `stock.reserved` → the order's stock confirmed) are not on "
            f"the way to `paid`: {result['stocked']:,} orders' stock confirmed, the last {result['lastStock']:.1f} s after the "
            "first order was placed")
    deadlocks = (f" Postgres detected {result['deadlocks']:,} deadlocks from the first order until then (each holds its "
                 "transactions for `deadlock_timeout`, 1 s, before one is rolled back and retried)." if result["deadlocks"] else "")
    if lag <= 1:
        return note + "." + deadlocks
    busy = {k: v for k, v in drain["used"].items() if k in ("listings", "postgres: listings")}
    return (note + f", {lag:.1f} s after the last was paid ({result['stocked'] / result['lastStock']:.0f} orders/s on average)."
            + deadlocks + f" In the {drain['wall']:.1f} s after the last payment the suite used {suite_cpu(drain):.1f} s of "
            f"CPU (listings {busy.get('listings', 0):.1f} s, its Postgres connections {busy.get('postgres: listings', 0):.1f} s) "
            f"of the {drain['wall'] * drain['cores']:.1f} s the cores had: listings waits, it does not compute (see the profile).")


def headline(main: dict, paced: list[dict], args) -> list[dict]:
    """The figures of this run the README's table shows (deploy/bench/report.py): the throughput, and
    webhook -> `paid` p99 of the steady runs it lists (half and 80 % of the throughput)."""
    figures = [figure("orders.throughput", main["rate"], orders=main["orders"], clients=args.concurrency,
                      check=("every order paid", main["paid"] == main["orders"]))]
    for run in paced:
        id, p99 = f"orders.webhook-to-paid-p99.{round(run['load'] * 100)}", run["webhookToPaid"].get("p99")
        if id in SPEC_BY_ID and p99 is not None:
            figures.append(figure(id, p99, rate=run["offered"]))
    return figures


def render(main: dict, paced: list[dict], cpu: dict, prof: str | None, *, args, m: dict, when: dt.datetime, env: str) -> str:
    rate, p99 = main["rate"], main["webhookToPaid"].get("p99")
    cores = cpu["cores"]
    throughput_verdict = rate_verdict(rate, main["paid"] == main["orders"])
    used = cpu["used"]
    other = used.get("outside the suite and the client", 0.0)
    lines = [
        "# Orders benchmarks",
        "",
        f"Run {when:%Y-%m-%d %H:%M} UTC at commit `{m['commit']}` on {m['cpu']} ({m['cores']} cores, {m['memory']}), "
        f"Linux {m['kernel']}; release build. Postgres: the suite's throwaway settings (fsync, synchronous_commit and "
        "full_page_writes off; shared_buffers 2GB). Every service with the defaults k8s/ sets (DATABASE_POOL_SIZE 10, "
        f"JOBS_CONCURRENCY 4, LOG_LEVEL info), the sandbox payment provider; changed for the bench: {env}. "
        + ("Profiled: pg_stat_statements loaded, `perf record` sampling the busiest processes at 499 Hz during the throughput run. " if prof else "")
        + f"During the throughput run, processes outside the suite and the client used {other:.1f} s of CPU "
        f"({other / (cpu['wall'] * cores):.0%} of the machine's {cores} cores).",
        "",
        "Each order is what a buyer's client does, through the gateway: `POST /v1/orders` (Idempotency-Key, a verified "
        f"buyer's token) → 201 `pending_payment`; `GET /v1/orders/{{id}}` every {args.poll_ms} ms until billing's payment "
        "intent is on it; `POST /v1/payments/{intentId}/confirm` with `pm_card_visa` → 200. Then, with no client involved: "
        "the sandbox's signed webhook to billing, billing's re-read of the intent (payment held in escrow), "
        "`payment.succeeded` on the broker, the order `paid`. Listings holds the stock for each order meanwhile "
        f"(`order.placed` → `stock.reserved`). {args.buyers} buyers order one unit at a time from {args.vendors * args.listings} "
        f"listings of {args.vendors} vendors (commission 8 %). Setup (not measured): vendors and buyers registered at identity "
        "and verified with SQL, the vendors' entitlements produced on the dev broker as billing would, the listings created "
        "and published through the gateway; the gateway's per-subject rate limits lifted as in `make bench`. "
        f"{args.warmup} orders went all the way to `paid` before measuring.",
        "",
        f"## Orders placed to `paid` (goal: >= {GOAL_RATE:.0f} orders/s on 2 cores)",
        "",
        f"{main['orders']:,} orders by {args.concurrency} concurrent clients, each placing its next order once its last "
        "is confirmed. Orders/s = orders paid ÷ (first `POST /v1/orders` sent → the last order `paid`, by orders' "
        "timestamp in `order_history`).",
        "",
        "| orders paid | clients | first placed → last paid | orders/s | middle 80 % paid at | requests | GETs per order (intent polls) | goal |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {main['paid']:,} of {main['orders']:,} | {args.concurrency} | {main['seconds']:.1f} s | **{rate:,.0f}** | "
        f"{main['middleRate']:,.0f}/s | {main['requests']:,} | {main['pollsPerOrder']:.1f} | {throughput_verdict} |",
        "",
        problems(main),
        "",
        stock_note(main),
        "",
        f"The client (one Python process, asyncio) used {main['clientCpu']:.1f} s of CPU in {main['clientSeconds']:.1f} s "
        f"({main['clientCpu'] / main['clientSeconds']:.0%} of one core; its request loop is never the bottleneck while that "
        "stays well below 100 %).",
        "",
        "### Where the CPU went during the throughput run",
        "",
        f"From the first order placed to the last paid: {cpu['wall']:.1f} s of wall time, {cpu['wall'] * cores:.1f} s of CPU "
        f"on {cores} cores (per process from /proc; Postgres per service by its connections' roles).",
        "",
        "| process | CPU | share of the machine | CPU per order | context switches per order |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        ctx = cpu["switches"].get(name)
        per_order = "" if name == "outside the suite and the client" else f"{seconds / main['paid'] * 1000:.2f} ms"
        lines.append(f"| {name} | {seconds:.1f} s | {seconds / (cpu['wall'] * cores):.0%} | {per_order} | "
                     + (f"{ctx / main['paid']:.1f} |" if ctx else "|"))
    idle = cpu["wall"] * cores - sum(used.values())
    lines.append(f"| idle | {max(idle, 0):.1f} s | {max(idle, 0) / (cpu['wall'] * cores):.0%} | | |")
    spent = suite_cpu(cpu)
    lines += [
        "",
        f"The suite (services, their Postgres connections, the broker) used {spent:.1f} s: "
        f"**{spent / main['paid'] * 1000:.1f} ms of CPU per order** placed to `paid` (the goal's 200/s on {cores} cores "
        f"leaves {cores / GOAL_RATE * 1000:.0f} ms), {suite_cpu(main['drain']) / main['paid'] * 1000:.1f} ms more per order "
        "while listings caught up. Events per order until every order's stock was confirmed (written to the service's "
        "outbox; applied from the broker through its inbox):",
        "",
        "| service | events written per order | events applied per order |",
        "|---|---:|---:|",
        *(f"| {svc} | {w / main['paid']:.2f} | {a / main['paid']:.2f} |" for svc, w, a in main["events"]),
    ]
    lines += [
        "",
        f"## Latency to `paid` once the provider's webhook arrives (goal: p99 <= {GOAL_P99_MS:.0f} ms)",
        "",
        "Per order, from the databases after the run: the webhook's arrival is its row in `billing.webhook_events` "
        "(`received_at`), `paid` the order's `paid` row in `orders.order_history` (`at`); the steps before come from "
        "`billing.sandbox_payment_intents`, `billing.sandbox_events` (the confirmation) and `billing.order_payments` "
        "(`paid_at`: held in escrow); the client's steps from its own clock (the same machine's).",
        "",
    ]
    for run in paced:
        lines += [
            f"### At a steady {run['offered']:,.0f} orders/s ({run['load']:.0%} of the measured throughput; "
            f"{latency_verdict(run['webhookToPaid'].get('p99'))})",
            "",
            f"{run['orders']:,} orders arriving at that rate, whatever the ones before were doing (the suite had settled "
            f"after the run before). They were paid at {run['rate']:,.0f}/s over {run['seconds']:.1f} s; the client used "
            f"{run['clientCpu'] / run['clientSeconds']:.0%} of one core. The suite used "
            f"{run['suiteCpu'] / max(run['paid'], 1) * 1000:.1f} ms of CPU per order, placed until its stock was held "
            f"(the client read each order {run['pollsPerOrder']:.1f} times for its intent): "
            + ", ".join(f"{name} {seconds / max(run['paid'], 1) * 1000:.1f} ms" for name, seconds in
                        sorted(run["cpuBy"].items(), key=lambda kv: -kv[1])
                        if name not in ("machine", "client", "client's psql and kcat", "outside the suite and the client")
                        and seconds / max(run["paid"], 1) >= 0.0005) + ".",
            "",
            *step_table(run),
            "",
            problems(run) + " " + series(run),
            "",
        ]
    lines += [
        f"### At full load (the throughput run: every client busy; {latency_verdict(p99)})",
        "",
        *step_table(main),
        "",
        series(main),
        "",
    ]
    if prof:
        lines += ["## Profile", "", prof, ""]
    lines += [
        "## Verdict",
        "",
        f"- Throughput: **{rate:,.0f} orders/s** placed to `paid` with {args.concurrency} clients, goal {GOAL_RATE:.0f}/s: "
        f"{throughput_verdict.replace('**', '')}.",
        f"- Webhook arrived → `paid`, p99, goal {GOAL_P99_MS:.0f} ms: "
        + "; ".join([f"**{ms(r['webhookToPaid'].get('p99'))}** at a steady {r['offered']:,.0f} orders/s "
                     f"— {latency_verdict(r['webhookToPaid'].get('p99')).replace('**', '')}" for r in paced]
                    + [f"**{ms(p99)}** at full load — {latency_verdict(p99).replace('**', '')}"]) + ".",
        "",
        "Regenerate: `make bench-orders` (or `deploy/bench/orders/run.sh --orders N --output FILE`; `--no-profile` leaves out "
        "the profile and its overhead).",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_env(items: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        service, _, pair = item.partition(":")
        key, eq, value = pair.partition("=")
        if service not in PROCESSES or not eq:
            raise SystemExit(f"--env wants SERVICE:KEY=VALUE with SERVICE one of {', '.join(PROCESSES)}, not {item!r}")
        out.setdefault(service, {})[key] = value
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=int(os.environ.get("BENCH_ORDERS", "5000")))
    p.add_argument("--concurrency", type=int, default=128, help="clients in the throughput run")
    p.add_argument("--paced", type=int, default=1500, help="orders in each steady-rate run (0: none)")
    p.add_argument("--loads", default="0.5,0.8", help="the steady runs' rates, as fractions of the measured throughput")
    p.add_argument("--rate", type=float, default=GOAL_RATE, help="the most a steady run offers (orders/s)")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--buyers", type=int, default=50)
    p.add_argument("--vendors", type=int, default=4)
    p.add_argument("--listings", type=int, default=5, help="per vendor")
    p.add_argument("--poll-ms", type=int, default=100, help="the client's wait between reads of the order, for the intent")
    p.add_argument("--env", action="append", default=[], metavar="SERVICE:KEY=VALUE", help="extra service env (experiments)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="without the profile of the throughput run (pg_stat_statements, perf samples) and its cost")
    p.add_argument("--bin-dir", type=Path, default=None, help="default .build/release")
    p.add_argument("--output", type=Path, default=ROOT / "deploy" / "bench" / "orders-results.md")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.loads = [float(x) for x in args.loads.split(",") if x.strip()] if args.paced else []
    units = args.vendors * args.listings * UNITS
    total = args.warmup + args.orders + args.paced * len(args.loads)
    if total > units:
        raise SystemExit(f"{total} orders need more than the {units} units of "
                         f"{args.vendors} × {args.listings} listings: raise --vendors or --listings")
    for tool in ("kcat",):
        if shutil.which(tool) is None:
            say(f"{tool} is needed (apt-get install {tool}, or `make build`, which installs it)")
            return 1
    extra = parse_env(args.env)
    service_env = {"gateway": dict(GATEWAY_BENCH_ENV), "listings": {"LISTINGS_REVIEW_FIRST_LISTINGS": "0"}}
    for service, values in extra.items():
        service_env.setdefault(service, {}).update(values)
    settings = dict(PG_SETTINGS)
    if args.profile:
        settings.update({"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"})
    suite = Suite.throwaway(ROOT, build_config="release", bin_dir=args.bin_dir, keep=args.keep, pg_settings=settings,
                            service_env=service_env)
    poll = args.poll_ms / 1000
    paced: list[dict] = []
    prof = None
    try:
        with suite:
            suite.start_postgres()
            suite.start_broker()
            suite.migrate_all()
            suite.start_all()
            if args.profile:
                suite.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            buyers, listings = prepare(suite, args)

            say(f"warm-up: {args.warmup} orders")
            warm = drive(suite.gateway_url, buyers, listings, first=0, count=args.warmup, poll=poll, concurrency=args.concurrency)
            wait_orders(suite, warm.first, sum(t.ok for t in warm.traces), 300, stock=True)

            fresh_tokens(suite, buyers)
            say(f"throughput: {args.orders} orders, {args.concurrency} clients")
            sampler = Sampler(suite) if args.profile and shutil.which("perf") else None
            if args.profile and not sampler:
                say("perf is not installed: the profile has no CPU samples (apt-get install linux-perf)")
            if args.profile:
                suite.psql("SELECT pg_stat_statements_reset()")
            deadlocks = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            deadlocks_before = int(suite.psql(deadlocks).strip())
            meter = CpuMeter(suite)
            meter.start()
            if sampler:
                sampler.start()
            run = drive(suite.gateway_url, buyers, listings, first=args.warmup, count=args.orders, poll=poll,
                        concurrency=args.concurrency)
            ok = sum(t.ok for t in run.traces)
            statuses = wait_orders(suite, run.first, ok, 600, stock=False)
            cpu = meter.stop()
            meter.start()
            if sampler:
                sampler.stop()
            say("waiting for listings' stock answers")
            statuses = wait_orders(suite, run.first, ok, 3600, stock=True)
            drain = meter.stop()
            if args.profile:
                prof = profile(suite, args.orders) + "\n"
                if sampler:
                    prof += "\n" + "\n".join(sampler.report(cpu)) + "\n"
            result = analyse(run, timelines(suite, run.first))
            result["events"] = events(suite, result["first"], result["first"] + cpu["wall"] + drain["wall"])
            result["drain"] = drain
            result["deadlocks"] = int(suite.psql(deadlocks).strip()) - deadlocks_before
            say(f"throughput: {result['paid']} paid at {result['rate']:.1f}/s in {result['seconds']:.1f} s; statuses {statuses}; "
                f"errors {result['errors']}; webhook -> paid {result['webhookToPaid']}")

            first = args.warmup + args.orders
            for load in args.loads:
                rate = min(args.rate, load * result["rate"])
                fresh_tokens(suite, buyers)
                say(f"paced: {args.paced} orders at {rate:.0f}/s")
                meter.start()
                steady = drive(suite.gateway_url, buyers, listings, first=first, count=args.paced, poll=poll, rate=rate)
                first += args.paced
                wait_orders(suite, steady.first, sum(t.ok for t in steady.traces), 3600, stock=True)
                steady_cpu = meter.stop()
                run_result = analyse(steady, timelines(suite, steady.first))
                run_result.update(offered=rate, load=load, suiteCpu=suite_cpu(steady_cpu), cpuBy=steady_cpu["used"])
                paced.append(run_result)
                say(f"paced: {run_result['paid']} paid; errors {run_result['errors']}; webhook -> paid {run_result['webhookToPaid']}")
            exited = suite.exited()
            if exited:
                raise SuiteError(f"services exited during the run: {exited}")
    except SuiteError as e:
        say(f"error: {e}")
        return 1
    env = "; ".join(f"{svc} " + ", ".join(f"`{k}={v}`" for k, v in values.items()) for svc, values in service_env.items())
    m, when = machine(suite.bin_dir), dt.datetime.now(dt.timezone.utc)
    report = render(result, paced, cpu, prof, args=args, m=m, when=when, env=env)
    args.output.write_text(report)
    figures = write_results_json(args.output, "orders", when=when, machine=m, figures=headline(result, paced, args))
    print(report, end="")
    say(f"written to {args.output} and {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
