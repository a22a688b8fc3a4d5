#!/usr/bin/env python3
"""`make bench-messaging` (and the end of `make bench`): messaging's three figures, on a throwaway
suite of release builds with the dev mail catcher.

1. Messages posted per second through the gateway (goal: >= 1,500/s on 2 cores): wrk posts
   `POST /v1/conversations/{id}/messages` for --buyers verified buyers, each to their own
   conversation (a body with a phone number in one message of four, so the detector masks),
   --connections connections for --duration. Every post is a whole transaction: the message,
   the conversation's counters, both participants' stream rows and NOTIFY, the recipient's mail
   mark (and, once per conversation per 10 minutes, the notification and the mail).
2. Mails sent per second to the catcher (goal: >= 200/s): with messaging stopped, --mails
   `notification.requested` events (password changed) go onto identity.notifications.v1; messaging
   starts, renders and queues them (one transaction per event batch) and its job runner sends them
   over SMTP. Rate = mails / (first queued -> last sent), from the `mails` rows; the catcher's count
   must match.
3. Open event streams (goal: a replica holds thousands cheaply): --streams SSE connections through
   the gateway (spread over the buyers), messaging's and the gateway's RSS before and after, then
   --rounds rounds of one message from each vendor to each buyer's conversation: the delay from the
   POST being sent to each of that buyer's open streams receiving the event (p50, p99).

Setup, not measured: buyers and vendors registered at identity (verified with SQL), one published
listing per vendor made known to messaging with a `listing.published` event on the dev broker, and
a conversation per buyer. Postgres runs with the suite's throwaway settings (fsync off), as every
`make bench` figure does. The headline figures also go to the report's JSON twin
(messaging-results.json; deploy/bench/report.py puts them in the README's table).

    deploy/bench/messaging/run.sh [--buyers 200] [--vendors 4] [--connections 64] [--duration 20s]
                                  [--mails 2000] [--streams 5000] [--rounds 3] [--bin-dir DIR] [--output FILE] [--keep]
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
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(ROOT / "deploy" / "dev"), str(ROOT / "deploy" / "bench"), str(ROOT / "deploy" / "bench" / "orders")]

from suite import FAST_PG_SETTINGS, Suite, SuiteError, say  # noqa: E402
from bench import GATEWAY_BENCH_ENV, call_json, machine, wrk  # noqa: E402
from bench_orders import CpuMeter, HttpConnection, percentiles, produce, register, sign_in, verify_emails  # noqa: E402
from report import figure, write_results_json  # noqa: E402

GOAL_MESSAGES = 1500.0
GOAL_MAILS = 200.0
PHONE = "Call me on 07700 900123 after six"
MAIL_DOMAIN = "mail-bench.example"


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def count(suite: Suite, sql: str) -> int:
    return int(suite.psql(sql).strip() or 0)


def wait_for(suite: Suite, sql: str, target: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while count(suite, sql) < target:
        if time.monotonic() > deadline:
            raise SuiteError(f"timed out waiting for {what}")
        time.sleep(0.3)


def prepare(suite: Suite, args) -> tuple[list[dict], list[dict], list[dict]]:
    """Vendors with a listing messaging knows, buyers with a conversation each: (buyers, vendors, conversations)."""
    say(f"setup: {args.vendors} vendors, {args.buyers} buyers")
    vendors = [register(suite, "vendor", f"msg-vendor{i}") for i in range(args.vendors)]
    buyers = [register(suite, "buyer", f"msg-buyer{i}") for i in range(args.buyers)]
    verify_emails(suite, vendors + buyers)
    sign_in(suite, vendors + buyers)
    for index, vendor in enumerate(vendors):
        vendor["listing"] = str(uuid.uuid4())
        produce(suite.kafka_bootstrap_servers, "listings.listings.v1", vendor["listing"], "marketplace.listings.listing.published.v1",
                "/marketplace/listings", {"listingId": vendor["listing"], "vendorId": vendor["id"], "category": "dogs",
                                          "title": f"Collie pups {index}", "status": "published", "hiddenReason": None,
                                          "published": True, "priceAmount": 50000, "currency": "GBP", "quantityAvailable": 3,
                                          "version": 1, "changedAt": dt.datetime.now(dt.timezone.utc).isoformat()})
    wait_for(suite, "SELECT count(*) FROM messaging.listing_facts", args.vendors, 60, "messaging to know the listings")
    conversations = []
    for index, buyer in enumerate(buyers):
        vendor = vendors[index % len(vendors)]
        opened = call_json(suite.gateway_url + "/v1/conversations", {"listingId": vendor["listing"], "body": "Hello, are they available?"},
                           token=buyer["token"], expect=201)
        conversations.append({"id": opened["id"], "buyer": buyer, "vendor": vendor})
    return buyers, vendors, conversations


def post_messages(suite: Suite, args, conversations: list[dict], *, direct: bool = False) -> dict:
    """wrk posting messages, each connection cycling over (token, conversation) pairs, through the
    gateway (or straight at messaging's port, `direct`), with each process's CPU over the run."""
    pairs = Path(tempfile.mkstemp(prefix="bench-messaging-", suffix=".txt")[1])
    pairs.write_text("".join(f"{c['buyer']['token']} {c['id']}\n" for c in conversations))
    before = count(suite, "SELECT count(*) FROM messaging.messages")
    meter = CpuMeter(suite)
    meter.start()
    try:
        result = wrk((suite.url("messaging") if direct else suite.gateway_url) + "/", threads=2, connections=args.connections,
                     duration=args.duration, script="messaging/post_message.lua",
                     env={"BENCH_PAIRS_FILE": str(pairs), "BENCH_PHONE": PHONE}, timeout="10s")
    finally:
        pairs.unlink(missing_ok=True)
    cpu = meter.stop()
    stored = count(suite, "SELECT count(*) FROM messaging.messages") - before
    return {"wrk": result, "stored": stored, "cpu": cpu}


def send_mails(suite: Suite, args) -> dict:
    """Messaging stopped, the events queued on the broker, messaging started: how fast they become sent mails."""
    suite.stop_service("messaging")
    say(f"mails: {args.mails} notification.requested events while messaging is stopped")
    user = str(uuid.uuid4())
    # One kcat per event: each needs its own ce_id header (the inbox keeps one per id).
    for i in range(args.mails):
        produce(suite.kafka_bootstrap_servers, "identity.notifications.v1", user, "marketplace.identity.notification.requested.v1",
                "/marketplace/identity", {"notificationId": str(uuid.uuid4()), "userId": user, "channel": "email",
                                          "to": f"bench-{i}@{MAIL_DOMAIN}", "template": "password-changed",
                                          "data": {"displayName": f"Bench {i}"}})
    started = time.time()
    suite.start_service("messaging")
    phase = f"messaging.mails WHERE to_address LIKE '%@{MAIL_DOMAIN}'"
    wait_for(suite, f"SELECT count(*) FROM {phase} AND status <> 'queued'", args.mails, 600, "every mail sent")
    row = suite.psql(f"""SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed'), sum(attempts),
                               extract(epoch FROM min(created_at)), extract(epoch FROM max(created_at)),
                               extract(epoch FROM min(sent_at)), extract(epoch FROM max(sent_at)) FROM {phase}""").strip().split("|")
    sent, failed, attempts = int(row[0]), int(row[1]), int(row[2])
    first_queued, last_queued, first_sent, last_sent = (float(v) for v in row[3:7])
    found = call_json(suite.mail_url + f"/api/v1/search?query=to:%40{MAIL_DOMAIN}&limit=1")["total"]
    return {"sent": sent, "failed": failed, "attempts": attempts, "caught": int(found),
            "queueSeconds": last_queued - first_queued, "sendSeconds": last_sent - first_sent,
            "startToSent": last_sent - started, "rate": sent / max(last_sent - first_queued, 1e-9),
            "sendRate": sent / max(last_sent - first_sent, 1e-9)}


async def open_streams(url: str, tokens: list[str], count_: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter, int]]:
    host, port = url.split("//")[1].split(":")
    streams = []

    async def one(index: int):
        token = tokens[index % len(tokens)]
        reader, writer = await asyncio.open_connection(host, int(port), limit=1 << 20)
        writer.write(f"GET /v1/events/stream HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise SuiteError(f"stream {index}: {head[:200]!r}")
        await reader.readuntil(b": connected\n\n")
        streams.append((reader, writer, index % len(tokens)))

    for start in range(0, count_, 200):  # in steps, as clients arrive
        await asyncio.gather(*(one(i) for i in range(start, min(count_, start + 200))))
    return streams


async def stream_latency(suite: Suite, args, conversations: list[dict]) -> dict:
    buyers = [c["buyer"] for c in conversations]
    tokens = [b["token"] for b in buyers]
    messaging_before, gateway_before = rss_kib(suite.pid("messaging")), rss_kib(suite.pid("gateway"))
    opened_at = time.monotonic()
    streams = await open_streams(suite.gateway_url, tokens, args.streams)
    open_seconds = time.monotonic() - opened_at
    await asyncio.sleep(2)
    messaging_after, gateway_after = rss_kib(suite.pid("messaging")), rss_kib(suite.pid("gateway"))
    delays: list[float] = []
    sent_at: dict[str, float] = {}
    received = 0
    expected_per_round = len(streams)

    async def reader_task(reader: asyncio.StreamReader):
        nonlocal received
        while True:
            block = await reader.readuntil(b"\n\n")
            if b"event: message.created" in block:
                data = block.split(b"data: ", 1)[1].rsplit(b"\n\n", 1)[0]
                body = json.loads(data)["body"]
                if body in sent_at:
                    delays.append(time.monotonic() - sent_at[body])
                    received += 1

    readers = [asyncio.create_task(reader_task(r)) for r, _, _ in streams]
    host, port = suite.gateway_url.split("//")[1].split(":")
    connections = {c["vendor"]["id"]: HttpConnection(host, int(port)) for c in conversations}
    for round_ in range(args.rounds):
        target = received + expected_per_round
        for conversation in conversations:
            vendor = conversation["vendor"]
            body = f"round {round_} for {conversation['id']}"
            sent_at[body] = time.monotonic()
            status, _ = await connections[vendor["id"]].request("POST", f"/v1/conversations/{conversation['id']}/messages", vendor["token"],
                                                                json.dumps({"body": body}).encode())
            if status != 201:
                raise SuiteError(f"posting for the stream round answered {status}")
        deadline = time.monotonic() + 30
        while received < target and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    open_in_messaging = streams_open(suite)
    for task in readers:
        task.cancel()
    for _, writer, _ in streams:
        writer.close()
    for connection in connections.values():
        connection.close()
    # A stream learns its client left when a write fails: a heartbeat's, within two of them (30 s).
    await asyncio.sleep(32)
    left_open = streams_open(suite)
    return {"openInMessaging": open_in_messaging, "leftOpen": left_open,"streams": len(streams), "openSeconds": open_seconds, "messagingRss": (messaging_before, messaging_after),
            "gatewayRss": (gateway_before, gateway_after), "delivered": received, "expected": expected_per_round * args.rounds,
            "latency": percentiles(delays)}


def streams_open(suite: Suite) -> int | None:
    text = urllib.request.urlopen(suite.url("messaging") + "/metrics", timeout=10).read().decode()
    match = re.search(r"^messaging_event_streams_open(?:\{[^}]*\})? ([0-9.]+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else None


def cpu_table(cpu: dict, posts: int) -> list[str]:
    """Each process's CPU over the run: cores busy, and milliseconds per post."""
    rows = ["| process | cores busy | CPU per post |", "|---|---|---|"]
    for name, seconds in sorted(cpu["used"].items(), key=lambda item: -item[1]):
        if seconds >= 0.05:
            rows.append(f"| {name} | {seconds / cpu['wall']:.2f} | {seconds * 1000 / max(posts, 1):.2f} ms |")
    return rows


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def verdict(value: float, goal: float) -> str:
    return "met" if value >= goal else f"missed by {100 * (1 - value / goal):.0f} %"


def headline(posts: dict, direct: dict, mails: dict, streams: dict, args) -> list[dict]:
    """The figures of this run the README's table shows (deploy/bench/report.py)."""
    w, d, lat, opened = posts["wrk"], direct["wrk"], streams["latency"], streams["streams"]
    per_stream = {name: (after - before) / max(opened, 1)  # KiB, as render's table
                  for name, (before, after) in (("messaging", streams["messagingRss"]), ("gateway", streams["gatewayRss"]))}
    figures = [
        figure("messaging.posts", w.requests_per_s, connections=args.connections, note=f"p99 {w.p99_ms:.1f} ms",
               check=("no non-2xx answer", w.non_2xx + w.socket_errors == 0)),
        figure("messaging.posts-direct", d.requests_per_s, note=f"p99 {d.p99_ms:.1f} ms"),
        figure("messaging.mails", mails["rate"], mails=args.mails,
               check=("every mail sent", mails["sent"] == args.mails and mails["failed"] == 0)),
        figure("messaging.stream-memory", per_stream["messaging"], streams=opened),
        figure("messaging.gateway-stream-memory", per_stream["gateway"], streams=opened),
    ]
    if lat.get("p99") is not None:
        figures.append(figure("messaging.stream-delivery-p99", lat["p99"] * 1000, streams=opened,
                              note=f"{streams['delivered']:,} of {streams['expected']:,} delivered",
                              check=("every event delivered", streams["delivered"] == streams["expected"])))
    return figures


def render(posts: dict, direct: dict, mails: dict, streams: dict, *, args, m: dict, when: dt.datetime) -> str:
    w = posts["wrk"]
    rate = w.requests_per_s
    d = direct["wrk"]
    lines = [
        "# Messaging benchmark",
        "",
        f"{when:%Y-%m-%d %H:%M} UTC · commit {m['commit']} · {m['cores']} cores, {m['cpu']}, {m['memory']} · `make bench-messaging`",
        "",
        "Release builds, every service on this machine with the load generator (wrk or the Python client) and the dev",
        "mail catcher; Postgres with fsync off (throwaway settings), the dev broker.",
        "",
        "## Messages posted through the gateway",
        "",
        f"wrk, 2 threads, {args.connections} connections, {args.duration}; {args.buyers} buyers each posting to their own",
        "conversation (one body in four holds a phone number, so it is masked for the vendor).",
        "",
        "| posts/s | goal | p50 | p99 | non-2xx | messages stored |",
        "|---|---|---|---|---|---|",
        f"| **{rate:,.0f}** | ≥ {GOAL_MESSAGES:,.0f} ({verdict(rate, GOAL_MESSAGES)}) "
        f"| {w.p50_ms:.1f} ms | {w.p99_ms:.1f} ms | {w.non_2xx + w.socket_errors} | {posts['stored']:,} |",
        f"| {d.requests_per_s:,.0f} straight to messaging (no gateway) | | {d.p50_ms:.1f} ms | {d.p99_ms:.1f} ms "
        f"| {d.non_2xx + d.socket_errors} | {direct['stored']:,} |",
        "",
        f"CPU over the run through the gateway ({posts['cpu']['wall']:.1f} s, {posts['cpu']['cores']} cores; wrk is among "
        "\"client's psql and kcat\"):",
        "",
        *cpu_table(posts["cpu"], posts["stored"]),
        "",
        "## Mails sent to the catcher",
        "",
        f"{args.mails:,} `notification.requested` events put on the broker while messaging was stopped; messaging started,",
        "consumed and queued them, and its job runner sent them over SMTP (one connection per claimed set).",
        "",
        "| mails/s (first queued → last sent) | goal | sending alone (first → last sent) | sent | failed | attempts | in the catcher | queueing took | start → last sent |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| **{mails['rate']:,.0f}** | ≥ {GOAL_MAILS:,.0f} ({verdict(mails['rate'], GOAL_MAILS)}) | {mails['sendRate']:,.0f}/s "
        f"| {mails['sent']:,} | {mails['failed']} | {mails['attempts']:,} | {mails['caught']:,} | {mails['queueSeconds']:.1f} s | {mails['startToSent']:.1f} s |",
        "",
        "## Open event streams",
        "",
        f"{streams['streams']:,} Server-Sent Events connections through the gateway ({args.buyers} users, opened in "
        f"{streams['openSeconds']:.1f} s), then {args.rounds} rounds of a message from the vendor in each buyer's conversation.",
        "",
        "| | before | with the streams open | per stream |",
        "|---|---|---|---|",
    ]
    for name, (before, after) in (("messaging RSS", streams["messagingRss"]), ("gateway RSS", streams["gatewayRss"])):
        lines.append(f"| {name} | {before / 1024:.1f} MiB | {after / 1024:.1f} MiB | {(after - before) / max(streams['streams'], 1):.1f} KiB |")
    lat = streams["latency"]
    lines += [
        "",
        f"Delivery (POST sent → event read on each of the buyer's streams): {streams['delivered']:,} of {streams['expected']:,} delivered; "
        f"p50 {ms(lat.get('p50'))}, p99 {ms(lat.get('p99'))}, max {ms(lat.get('max'))}. Messaging counted "
        f"{streams['openInMessaging']} streams open (`messaging_event_streams_open`); 32 s after the clients left, {streams['leftOpen']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--buyers", type=int, default=200)
    p.add_argument("--vendors", type=int, default=4)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--duration", default="20s")
    p.add_argument("--mails", type=int, default=2000)
    p.add_argument("--streams", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--bin-dir", type=Path, default=None, help="default .build/release")
    p.add_argument("--output", type=Path, default=ROOT / "deploy" / "bench" / "messaging-results.md")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    for tool in ("kcat", "wrk"):
        if shutil.which(tool) is None:
            say(f"{tool} is needed (apt-get install {tool}, or `make build`, which installs it)")
            return 1
    # Every stream is a socket at the client and two at the gateway: the suite inherits this limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < 2 * args.streams + 1000:
        say(f"the open-files limit ({hard}) is too low for {args.streams} streams")
        return 1
    suite = Suite.throwaway(ROOT, build_config="release", bin_dir=args.bin_dir, keep=args.keep, pg_settings=dict(FAST_PG_SETTINGS),
                            service_env={"gateway": dict(GATEWAY_BENCH_ENV)})
    try:
        with suite:
            suite.start_postgres()
            suite.start_broker()
            suite.start_mail()
            suite.migrate_all()
            suite.start_all()
            buyers, vendors, conversations = prepare(suite, args)
            say(f"posting: {args.connections} connections for {args.duration}")
            posts = post_messages(suite, args, conversations)
            say(f"posting: {posts['wrk'].requests_per_s:,.0f}/s, {posts['stored']:,} stored")
            direct = post_messages(suite, args, conversations, direct=True)
            say(f"posting straight to messaging: {direct['wrk'].requests_per_s:,.0f}/s")
            mails = send_mails(suite, args)
            say(f"mails: {mails['rate']:,.0f}/s, {mails['sent']} sent, {mails['caught']} caught")
            sign_in(suite, vendors + buyers)
            streams = asyncio.run(stream_latency(suite, args, conversations))
            say(f"streams: {streams['streams']} open; latency {streams['latency']}")
            exited = suite.exited()
            if exited:
                raise SuiteError(f"services exited during the run: {exited}")
    except SuiteError as e:
        say(f"error: {e}")
        return 1
    m, when = machine(suite.bin_dir), dt.datetime.now(dt.timezone.utc)
    report = render(posts, direct, mails, streams, args=args, m=m, when=when)
    args.output.write_text(report)
    figures = write_results_json(args.output, "messaging", when=when, machine=m,
                                 figures=headline(posts, direct, mails, streams, args))
    print(report, end="")
    say(f"written to {args.output} and {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
