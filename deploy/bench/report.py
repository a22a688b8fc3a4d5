#!/usr/bin/env python3
"""`make bench-report` (and the last step of `make bench`): the README's benchmark table,
regenerated from the results the benchmarks wrote.

Every bench writes its full report as Markdown (deploy/bench/*results.md) and, next to it, its
headline figures as JSON (the same name, `.json`):

    {"format": 1, "area": "billing", "markdown": "billing-results.md",
     "date": "2026-12-05 08:22 UTC", "commit": "ab72372", "dirty": false,
     "machine": {"cores": 2, "cpu": "AMD EPYC", "memory": "23.5 GiB", "kernel": "6.18.44-fc-v1272"},
     "figures": [{"id": "billing.webhooks", "name": "verified webhooks accepted by one instance (8 connections)",
                  "value": 925.0, "unit": "/s", "goal": {"op": ">=", "value": 1000}, "note": "p99 35.9 ms",
                  "check": {"text": "no non-2xx answer", "ok": true}}]}

FIGURES below is the list of headline figures (what, unit, goal); the benches build their JSON
with `figure()` and `write_results_json()` from this module. This script reads the five JSON
files, checks that each holds every headline figure of its area and that it comes from the same
run as the Markdown beside it (else it stops, naming the file and the figure: it never prints a
number it did not read), and rewrites README.md between the markers

    <!-- bench-table:begin -->  ...  <!-- bench-table:end -->

(inserted at the top of the "## Benchmarks" section the first time) with one row per figure:
area, what, measured, goal, met or missed, date and commit of the run, and a line naming the
machine(s). The output depends only on the JSON, so a second run changes nothing.

Bootstrap: results written before the benches wrote JSON have only their Markdown. `--from-markdown`
derives every area's JSON from its Markdown report (the figures as printed there, so rounded as
printed; the file says `derivedFrom`), then regenerates the table. It was run once for the
results committed before 2026-12-06; a bench run writes its JSON itself.

    deploy/bench/report.py [--from-markdown] [--check] [--readme README.md] [--results deploy/bench]

--check: change nothing; exit 1 if README.md's table is not what the results give.
Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "deploy" / "bench"
README = ROOT / "README.md"
BEGIN = "<!-- bench-table:begin -->"
END = "<!-- bench-table:end -->"
FORMAT = 1

# Each area's Markdown report (its JSON has the same name with .json), in the README's order.
SOURCES = {
    "search": "search-results.md",
    "core": "results.md",  # deploy/bench/run.sh: front door, identity, events, jobs
    "billing": "billing-results.md",
    "orders": "orders-results.md",
    "messaging": "messaging-results.md",
}
OPS = {">=": ("≥", lambda v, g: v >= g), ">": (">", lambda v, g: v > g),
       "<=": ("≤", lambda v, g: v <= g), "<": ("<", lambda v, g: v < g)}


class ReportError(Exception):
    pass


@dataclass(frozen=True)
class Spec:
    id: str
    area: str       # key of SOURCES: the results file that holds it
    section: str    # the table's "area" column
    name: str       # what was measured; {fields} filled in by whoever writes the figure
    unit: str
    decimals: int
    goal: dict | None = None


def goal(op: str | None = None, value: float | None = None, text: str | None = None) -> dict:
    out: dict = {}
    if op is not None:
        out.update(op=op, value=value)
    if text is not None:
        out["text"] = text
    return out


CHEAPLY = goal(text="“cheaply” (no number set)")
FIGURES = [
    Spec("search.cache-off.throughput-vs-drf", "search", "Search",
         "listing search, answer cache off: throughput over the DRF twin's ({connections} connections, 1 wrk thread)",
         "×", 0, goal(">=", 5)),
    Spec("search.cache-off.p99-vs-drf", "search", "Search", "the same: p99, DRF's over the Swift service's",
         "× lower", 0, goal(">", 1, "> 1× (a better p99 than DRF's)")),
    Spec("search.cache-off.p95", "search", "Search",
         "listing search, answer cache off: p95 at {connections} connections (1 wrk thread)", "ms", 1, goal("<", 20)),
    Spec("search.cache-off.p99", "search", "Search", "the same: p99", "ms", 1, goal("<", 50)),
    Spec("search.deployed.throughput", "search", "Search",
         "listing search as deployed (answer cache on; the mix repeats): requests/s, 1 wrk thread", "/s", 0),
    Spec("search.copy", "search", "Search", "{listings:,} listings generated and loaded (COPY)", "s", 1,
         goal("<", 180, "< 3 min")),
    Spec("front-door.jwt-vs-nginx", "core", "Front door",
         "gateway, JWT verified: throughput as a share of nginx's (heavy load, {connections} connections)", "%", 0,
         goal(">=", 70)),
    Spec("front-door.jwt-p99-added", "core", "Front door",
         "gateway, JWT verified: p99 added over straight to billing (moderate load, median of rounds)", "ms", 2,
         goal("<", 1)),
    Spec("identity.logins-per-core", "core", "Identity", "logins per core (Argon2id; {clients} clients)", "/s", 1),
    Spec("identity.refresh", "core", "Identity", "refresh-token rotations ({connections} connections)", "/s", 0),
    Spec("events.steady-p99", "core", "Events",
         "outbox → consumer p99 at a steady ~250 events/s (four consumers, fetch wait 10 ms)", "ms", 1, goal("<=", 50)),
    Spec("events.burst", "core", "Events",
         "a burst of {events:,} at once, per consumer (four consumers at once, fetch wait 10 ms)", "events/s", 0,
         goal(">=", 5000)),
    Spec("jobs.drain", "core", "Jobs", "{jobs:,} due jobs drained by one service", "jobs/s", 0, goal(">=", 1000)),
    Spec("jobs.lateness-p99", "core", "Jobs", "due-to-start lateness p99 at a steady {rate}/s", "ms", 1, goal("<=", 250)),
    Spec("billing.renewals", "billing", "Billing", "{count:,} renewals due at once: invoiced, charged once and paid",
         "s", 1, goal("<", 120, "< 120 s, no double charge")),
    Spec("billing.webhooks", "billing", "Billing", "verified webhooks accepted by one instance ({connections} connections)",
         "/s", 0, goal(">=", 1000)),
    Spec("orders.throughput", "orders", "Orders",
         "orders placed → `paid` through the gateway ({orders:,} orders, {clients} clients)", "/s", 0, goal(">=", 200)),
    Spec("orders.webhook-to-paid-p99.50", "orders", "Orders",
         "webhook arrived → order `paid`, p99, at a steady {rate:,.0f} orders/s", "ms", 0, goal("<=", 200)),
    Spec("orders.webhook-to-paid-p99.80", "orders", "Orders",
         "webhook arrived → order `paid`, p99, at a steady {rate:,.0f} orders/s", "ms", 0, goal("<=", 200)),
    Spec("messaging.posts", "messaging", "Messaging", "messages posted through the gateway ({connections} connections)",
         "/s", 0, goal(">=", 1500)),
    Spec("messaging.posts-direct", "messaging", "Messaging", "the same straight to messaging", "/s", 0),
    Spec("messaging.mails", "messaging", "Messaging", "mails sent to the dev catcher ({mails:,} queued by events)", "/s",
         0, goal(">=", 200)),
    Spec("messaging.stream-memory", "messaging", "Messaging", "{streams:,} open event streams: messaging's memory per stream",
         "KiB", 1, CHEAPLY),
    Spec("messaging.gateway-stream-memory", "messaging", "Messaging",
         "{streams:,} open event streams: the gateway's memory per stream", "KiB", 1, CHEAPLY),
    Spec("messaging.stream-delivery-p99", "messaging", "Messaging",
         "{streams:,} open event streams: a message to its reader's streams, p99", "ms", 1),
]
SPEC_BY_ID = {spec.id: spec for spec in FIGURES}
SECTIONS = {area: [] for area in SOURCES}
for _spec in FIGURES:
    if _spec.section not in SECTIONS[_spec.area]:
        SECTIONS[_spec.area].append(_spec.section)


# ============================================================================ writing (the benches)
def figure(id: str, value: float, *, note: str | None = None, check: tuple[str, bool] | None = None,
           **fields) -> dict:
    """One headline figure for a results JSON: FIGURES' name (filled with `fields`), unit and goal.
    `check`: (what must hold, whether it did); the goal counts as missed when it did not."""
    spec = SPEC_BY_ID[id]
    out = {"id": id, "name": spec.name.format(**fields), "value": round(float(value), 4), "unit": spec.unit}
    if spec.goal:
        out["goal"] = dict(spec.goal)
    if note:
        out["note"] = note
    if check is not None:
        out["check"] = {"text": check[0], "ok": bool(check[1])}
    return out


def write_results_json(markdown: Path, area: str, *, when: dt.datetime | str, machine: dict, figures: list[dict],
                       derived_from: str | None = None) -> Path:
    """Writes `markdown`'s JSON twin (same name, .json). `machine` is bench.machine()'s dict
    (cores, cpu, memory, kernel, commit with " (with uncommitted changes)" when the tree was dirty)."""
    if area not in SOURCES:
        raise ValueError(f"unknown area {area!r}")
    commit = str(machine.get("commit") or "unknown")
    dirty = commit.endswith("(with uncommitted changes)")
    data = {
        "format": FORMAT,
        "area": area,
        "markdown": markdown.name,
        "date": when if isinstance(when, str) else f"{when:%Y-%m-%d %H:%M} UTC",
        "commit": commit.split()[0],
        "dirty": dirty,
        "machine": {"cores": int(machine["cores"]) if str(machine.get("cores", "")).isdigit() else machine.get("cores"),
                    "cpu": machine.get("cpu"), "memory": machine.get("memory"), "kernel": machine.get("kernel")},
        "figures": figures,
    }
    if derived_from:
        data["derivedFrom"] = derived_from
    path = markdown.with_suffix(".json")
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


# ============================================================================ the Markdown reports (bootstrap)
NUMBER = re.compile(r"[+\-−]?\d[\d,]*(?:\.\d+)?")


def number(text: str, where: str) -> float:
    m = NUMBER.search(text.replace("**", ""))
    if not m:
        raise ReportError(f"{where}: no number in {text!r}")
    return float(m.group(0).replace(",", "").replace("−", "-"))


def find(pattern: str, text: str, where: str, flags=re.M) -> re.Match:
    m = re.search(pattern, text, flags)
    if not m:
        raise ReportError(f"{where}: not found (looked for /{pattern}/)")
    return m


def tables(text: str) -> list[tuple[list[str], list[list[str]], int]]:
    """Every Markdown table: (header cells, rows of cells, offset of its header in `text`)."""
    out = []
    lines = text.splitlines(keepends=True)
    offsets, at = [], 0
    for line in lines:
        offsets.append(at)
        at += len(line)

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            header, rows, start = cells(lines[i]), [], offsets[i]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            out.append((header, rows, start))
        else:
            i += 1
    return out


def table(text: str, where: str, first: str, *, after: int = 0) -> tuple[list[str], list[dict[str, str]]]:
    """The first table (from offset `after`) whose first header cell starts with `first`; rows as dicts."""
    for header, rows, start in tables(text):
        if start >= after and header[0].startswith(first):
            return header, [dict(zip(header, row)) for row in rows]
    raise ReportError(f"{where}: no table whose first column is {first!r}")


def row(rows: list[dict[str, str]], where: str, **match) -> dict[str, str]:
    """The first row whose cells start with the given values (keys: header names, `_0` the first column)."""
    for r in rows:
        values = list(r.values())
        if all((values[0] if k == "_0" else r.get(k.replace("_", " "), "")).startswith(v) for k, v in match.items()):
            return r
    raise ReportError(f"{where}: no row {match}")


def cell(r: dict[str, str], column: str, where: str) -> str:
    if column not in r:
        raise ReportError(f"{where}: no column {column!r}")
    return r[column]


def header(text: str, path: Path) -> dict:
    """Date, commit and machine from a report's first lines (each bench words them its own way)."""
    head = "\n".join(text.splitlines()[:12])
    where = f"{path}: the run's"
    date = find(r"\b(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) UTC", head, f"{where} date").group(1)
    c = find(r"commit:? `?([0-9a-f]{7,40}|unknown)( \(with uncommitted changes\))?", head, f"{where} commit")
    for pattern, keys in (
            (r"(\d+) cores \((.+?)\), ([\d.]+ GiB) RAM, Linux (\S+)", ("cores", "cpu", "memory", "kernel")),  # bench.py, search
            (r" on ((?:[^()]|\([A-Z]+\))+?) \((\d+) cores, ([\d.]+ GiB)\), Linux ([^\s;]+)",
             ("cpu", "cores", "memory", "kernel")),  # billing, orders (cpu "Intel(R) Xeon(R) Processor")
            (r"· (\d+) cores, (.+?), ([\d.]+ GiB) ·", ("cores", "cpu", "memory"))):  # messaging
        m = re.search(pattern, head)
        if m:
            machine = dict(zip(keys, m.groups()))
            break
    else:
        raise ReportError(f"{where} machine: not found in its first lines")
    machine.setdefault("kernel", None)
    machine["commit"] = c.group(1) + (c.group(2) or "")
    return {"date": f"{date} UTC", "machine": machine}


def agrees(fig: dict, stated: str, where: str) -> dict:
    """The report's own met/missed must be what the figure and its goal give."""
    said = "missed" if "missed" in stated else "met" if "met" in stated else None
    if said is None:
        raise ReportError(f"{where}: no met/missed in {stated!r}")
    ours = "met" if judged(fig)[0] else "missed"
    if said != ours:
        raise ReportError(f"{where}: the report says {said!r} ({stated!r}) but {fig['value']:g} {fig['unit']} "
                          f"against the goal gives {ours!r}")
    return fig


def from_core(text: str, path: Path) -> list[dict]:
    w = f"{path}"
    _, front = table(text, f"{w}: front door", "load")
    heavy = row(front, f"{w}: front door, heavy load", load="heavy", route="gateway, JWT verified")
    moderate = row(front, f"{w}: front door, moderate load", load="moderate", route="gateway, JWT verified")
    _, ident = table(text, f"{w}: identity", "identity scenario")
    login = row(ident, f"{w}: identity login", _0="identity `POST /v1/auth/login`")
    refresh = row(ident, f"{w}: identity refresh", _0="identity `POST /v1/auth/refresh`")
    per_core = find(r"^- logins/s per core: ([\d.,]+) \(([\d.,]+) logins/s ÷ (\d+) cores", text,
                    f"{w}: identity.logins-per-core (the 'logins/s per core' line)")
    _, events = table(text, f"{w}: events", "event path")
    steady = row(events, f"{w}: events, steady", _0="four consumers, fetch wait 10 ms", load="steady")
    burst = row(events, f"{w}: events, burst", _0="four consumers, fetch wait 10 ms", load="burst")
    _, jobs = table(text, f"{w}: jobs", "job runner")
    drain = next((r for r in jobs if re.fullmatch(r"[\d,]+ due jobs drained", list(r.values())[0])), None)
    if drain is None:
        raise ReportError(f"{w}: jobs.drain: no 'N due jobs drained' row")
    drained = list(drain.values())[0].split()[0]
    late = row(jobs, f"{w}: jobs lateness", _0="due-to-start lateness")
    rate = find(r"at a steady (\d+)/s", list(late.values())[0], f"{w}: jobs.lateness-p99 rate")
    return [
        figure("front-door.jwt-vs-nginx", number(cell(heavy, "vs nginx", w), f"{w}: front-door.jwt-vs-nginx"),
               connections=int(number(cell(heavy, "connections", w), w))),
        figure("front-door.jwt-p99-added", number(cell(moderate, "p99 added vs direct", w), f"{w}: front-door.jwt-p99-added")),
        figure("identity.logins-per-core", number(per_core.group(1), w), clients=int(number(cell(login, "connections", w), w)),
               note=f"{per_core.group(2)} logins/s on {per_core.group(3)} cores"),
        figure("identity.refresh", number(cell(refresh, "requests/s", w), f"{w}: identity.refresh"),
               connections=int(number(cell(refresh, "connections", w), w))),
        figure("events.steady-p99", number(cell(steady, "p99", w), f"{w}: events.steady-p99")),
        figure("events.burst", number(cell(burst, "throughput", w), f"{w}: events.burst"),
               events=int(number(cell(burst, "load", w), w))),
        figure("jobs.drain", number(cell(drain, "figure", w), f"{w}: jobs.drain"), jobs=int(number(drained, w))),
        figure("jobs.lateness-p99", number(find(r"p99 ([\d.]+) ms", cell(late, "figure", w).replace("**", ""),
                                                f"{w}: jobs.lateness-p99").group(1), w), rate=int(rate.group(1))),
    ]


def from_search(text: str, path: Path) -> list[dict]:
    w = f"{path}"
    _, runs = table(text, f"{w}: search runs", "implementation")
    off = row(runs, f"{w}: the cache-off run with 1 wrk thread", implementation="Swift listings service, answer cache off",
              wrk_threads="1")
    on = next((r for r in runs if r["implementation"] == "Swift listings service" and r.get("wrk threads") == "1"), None)
    if on is None:
        raise ReportError(f"{w}: search.deployed.throughput: no 'Swift listings service' row with 1 wrk thread")
    ratio = find(r"^- Swift listings service, answer cache off / DRF, wrk -t1: throughput ([\d.]+)x, p99 ([\d.]+)x lower$",
                 text, f"{w}: search.cache-off.throughput-vs-drf (the '/ DRF, wrk -t1' line)")
    connections = int(find(r"`wrk -t<threads> -c(\d+)", text, f"{w}: the wrk connections").group(1))
    listings = int(number(find(r"^- data: ([\d,]+) listings", text, f"{w}: the listings count").group(1), w))
    if listings != 1_000_000:
        raise ReportError(f"{w}: search.copy: the run loaded {listings:,} listings, not the goal's 1,000,000")
    copy = find(r"generate \+ COPY ([\d.]+) s", text, f"{w}: search.copy")
    return [
        figure("search.cache-off.throughput-vs-drf", float(ratio.group(1)), connections=connections),
        figure("search.cache-off.p99-vs-drf", float(ratio.group(2))),
        figure("search.cache-off.p95", number(cell(off, "p95", w), f"{w}: search.cache-off.p95"), connections=connections),
        figure("search.cache-off.p99", number(cell(off, "p99", w), f"{w}: search.cache-off.p99")),
        figure("search.deployed.throughput", number(cell(on, "requests/s", w), f"{w}: search.deployed.throughput")),
        figure("search.copy", float(copy.group(1)), listings=listings),
    ]


def from_billing(text: str, path: Path) -> list[dict]:
    w = f"{path}"
    _, hooks = table(text, f"{w}: billing.webhooks", "requests")
    hook = row(hooks, f"{w}: billing.webhooks", _0="")
    connections = int(find(r"^wrk, \d+ threads?, (\d+) connections", text, f"{w}: the wrk connections").group(1))
    count = int(number(find(r"^## ([\d,]+) renewals due at once", text, f"{w}: billing.renewals (its heading)").group(1), w))
    if count < 100_000:
        raise ReportError(f"{w}: billing.renewals: the run renewed {count:,}, not the goal's 100,000")
    _, renewals = table(text, f"{w}: billing.renewals", "all paid")
    renewal = row(renewals, f"{w}: billing.renewals", _0="")
    paid = list(renewal.values())[0]
    holds = find(r"^No double charge: .*\((holds|DOES NOT HOLD)\)\.?$", text, f"{w}: billing.renewals (the double-charge line)")
    rate = re.search(r"\(([\d,]+/s)\)", paid)
    return [
        agrees(figure("billing.renewals", number(paid, f"{w}: billing.renewals"), count=count,
                      note=rate.group(1) if rate else None, check=("no double charge", holds.group(1) == "holds")),
               cell(renewal, "goal", w), f"{w}: billing.renewals"),
        agrees(figure("billing.webhooks", number(cell(hook, "requests/s", w), f"{w}: billing.webhooks"), connections=connections,
                      note=f"p99 {cell(hook, 'p99', w)}",
                      check=("no non-2xx answer", number(cell(hook, "non-2xx", w), w) == 0)),
               cell(hook, "goal", w), f"{w}: billing.webhooks"),
    ]


def from_orders(text: str, path: Path) -> list[dict]:
    w = f"{path}"
    _, runs = table(text, f"{w}: orders.throughput", "orders paid")
    run = row(runs, f"{w}: orders.throughput", _0="")
    paid = find(r"^([\d,]+) of ([\d,]+)$", cell(run, "orders paid", w), f"{w}: orders.throughput (orders paid)")
    figures = [agrees(figure("orders.throughput", number(cell(run, "orders/s", w), f"{w}: orders.throughput"),
                             orders=int(number(paid.group(2), w)), clients=int(number(cell(run, "clients", w), w)),
                             check=("every order paid", paid.group(1) == paid.group(2))),
                      cell(run, "goal", w), f"{w}: orders.throughput")]
    for m in re.finditer(r"^### At a steady ([\d,]+) orders/s \((\d+)% of the measured throughput; (.*)\)$", text, re.M):
        id = f"orders.webhook-to-paid-p99.{m.group(2)}"
        if id not in SPEC_BY_ID:
            continue
        _, steps = table(text, f"{w}: {id}", "step", after=m.end())
        step = row(steps, f"{w}: {id}", step="**webhook arrived → order `paid`**")
        figures.append(agrees(figure(id, number(cell(step, "p99", w), f"{w}: {id}"), rate=number(m.group(1), w)),
                              m.group(3), f"{w}: {id}"))
    return figures


def from_messaging(text: str, path: Path) -> list[dict]:
    w = f"{path}"
    _, posts = table(text, f"{w}: messaging.posts", "posts/s")
    gateway = next((r for r in posts if "straight to messaging" not in r["posts/s"]), None)
    direct = next((r for r in posts if "straight to messaging" in r["posts/s"]), None)
    if gateway is None or direct is None:
        raise ReportError(f"{w}: messaging.posts / messaging.posts-direct: the posts table lacks a row")
    connections = int(find(r"^wrk, \d+ threads?, (\d+) connections", text, f"{w}: the wrk connections").group(1))
    _, mails_table = table(text, f"{w}: messaging.mails", "mails/s")
    mails = row(mails_table, f"{w}: messaging.mails", _0="")
    queued = int(number(find(r"^([\d,]+) `notification.requested` events", text, f"{w}: the mails queued").group(1), w))
    streams_at = find(r"^## Open event streams$", text, f"{w}: the open event streams section").end()
    _, memory = table(text, f"{w}: the streams' memory", "", after=streams_at)
    streams = int(number(find(r"^([\d,]+) Server-Sent Events connections", text, f"{w}: the streams opened").group(1), w))
    delivery = find(r"^Delivery \(.*?\): ([\d,]+) of ([\d,]+) delivered; p50 [\d.]+ ms, p99 ([\d.]+) ms", text,
                    f"{w}: messaging.stream-delivery-p99")
    sent_ok = number(cell(mails, "sent", w), w) == queued and number(cell(mails, "failed", w), w) == 0
    return [
        agrees(figure("messaging.posts", number(cell(gateway, "posts/s", w), f"{w}: messaging.posts"), connections=connections,
                      note=f"p99 {cell(gateway, 'p99', w)}", check=("no non-2xx answer", number(cell(gateway, "non-2xx", w), w) == 0)),
               cell(gateway, "goal", w), f"{w}: messaging.posts"),
        figure("messaging.posts-direct", number(cell(direct, "posts/s", w), f"{w}: messaging.posts-direct"),
               note=f"p99 {cell(direct, 'p99', w)}"),
        agrees(figure("messaging.mails", number(cell(mails, "mails/s (first queued → last sent)", w), f"{w}: messaging.mails"),
                      mails=queued, check=("every mail sent", sent_ok)),
               cell(mails, "goal", w), f"{w}: messaging.mails"),
        figure("messaging.stream-memory",
               number(cell(row(memory, f"{w}: messaging.stream-memory", _0="messaging RSS"), "per stream", w), w), streams=streams),
        figure("messaging.gateway-stream-memory",
               number(cell(row(memory, f"{w}: messaging.gateway-stream-memory", _0="gateway RSS"), "per stream", w), w),
               streams=streams),
        figure("messaging.stream-delivery-p99", float(delivery.group(3)), streams=streams,
               note=f"{delivery.group(1)} of {delivery.group(2)} delivered",
               check=("every event delivered", delivery.group(1) == delivery.group(2))),
    ]


PARSERS = {"core": from_core, "search": from_search, "billing": from_billing, "orders": from_orders,
           "messaging": from_messaging}


def bootstrap(results: Path) -> list[Path]:
    """Every area's JSON derived from its Markdown report."""
    written = []
    for area, name in SOURCES.items():
        md = results / name
        if not md.exists():
            raise ReportError(f"{md}: missing (needed by --from-markdown)")
        text = md.read_text()
        head = header(text, md)
        written.append(write_results_json(md, area, when=head["date"], machine=head["machine"],
                                          figures=PARSERS[area](text, md), derived_from=name))
    return written


# ============================================================================ the table
def load(results: Path) -> dict[str, dict]:
    """Each area's JSON, checked: every headline figure there, the same run as its Markdown."""
    out = {}
    for area, name in SOURCES.items():
        md, path = results / name, (results / name).with_suffix(".json")
        if not path.exists():
            raise ReportError(f"{path}: missing. Run the bench that writes {name} (`make bench`), or, for results "
                              f"written before the benches wrote JSON, `deploy/bench/report.py --from-markdown`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{path}: not JSON ({e})") from None
        for key in ("date", "commit", "machine", "figures"):
            if key not in data:
                raise ReportError(f"{path}: no {key!r}")
        if data.get("area") != area:
            raise ReportError(f"{path}: area {data.get('area')!r}, expected {area!r}")
        if md.exists():
            head = header(md.read_text(), md)
            if head["date"] != data["date"]:
                raise ReportError(f"{md} is the run of {head['date']} but {path.name} of {data['date']}: rerun the bench, "
                                  f"or derive the JSON from the Markdown with --from-markdown")
        by_id = {f.get("id"): f for f in data["figures"]}
        for spec in FIGURES:
            if spec.area != area:
                continue
            f = by_id.get(spec.id)
            if f is None:
                raise ReportError(f"{path}: no figure {spec.id!r} ({spec.section}: {spec.name}); "
                                  f"the bench did not measure it (a partial or non-default run?)")
            if not isinstance(f.get("value"), (int, float)) or isinstance(f.get("value"), bool):
                raise ReportError(f"{path}: figure {spec.id!r} has no numeric value")
        out[area] = data
    return out


def amount(value: float, unit: str, decimals: int) -> str:
    text = f"{value:,.{decimals}f}"
    if not unit:
        return text
    return text + unit if unit[0] in "/×" else f"{text} {unit}"


def judged(f: dict) -> tuple[bool | None, str]:
    """(met?, the table's wording); None when there is no number to judge against."""
    g, check = f.get("goal") or {}, f.get("check")
    failed = f" (check failed: {check['text']})" if check is not None and not check["ok"] else ""
    if "op" not in g:
        return (False, "check failed: " + check["text"]) if failed else (None, "—")
    # Only met or missed: a margin worked out here from a figure rounded as printed could differ
    # from the one the report states (worked out from the unrounded figure).
    if OPS[g["op"]][1](f["value"], g["value"]) and not failed:
        return True, "met"
    return False, "**missed**" + failed


def goal_text(f: dict, spec: Spec) -> str:
    g = f.get("goal") or {}
    if "text" in g or "op" not in g:  # a goal's own wording, when it has one
        return g.get("text", "")
    target = g["value"]
    return f"{OPS[g['op']][0]} {amount(target, f.get('unit', ''), 0 if float(target).is_integer() else spec.decimals)}"


def esc(text: str) -> str:
    return text.replace("|", "\\|")


def machine_text(m: dict) -> str:
    return f"{m.get('cores')} cores ({m.get('cpu')}), {m.get('memory')} RAM"


def render(data: dict[str, dict], results: Path, readme: Path) -> str:
    rows = ["| area | figure | measured | goal | result | date | commit |", "|---|---|---:|---|---|---|---|"]
    dirty = False
    for area in SOURCES:
        d = data[area]
        by_id = {f["id"]: f for f in d["figures"]}
        commit = f"`{d['commit']}`" + ("\\*" if d.get("dirty") else "")
        dirty |= bool(d.get("dirty"))
        for spec in (s for s in FIGURES if s.area == area):
            f = by_id[spec.id]
            measured = f"**{amount(f['value'], f.get('unit', ''), spec.decimals)}**" + (f" ({f['note']})" if f.get("note") else "")
            rows.append(f"| {spec.section} | {esc(f['name'])} | {esc(measured)} | {esc(goal_text(f, spec))} "
                        f"| {esc(judged(f)[1])} | {d['date'][:10]} | {commit} |")
    machines: dict[str, list[str]] = {}
    for area in SOURCES:
        machines.setdefault(machine_text(data[area]["machine"]), []).extend(s.lower() for s in SECTIONS[area])
    line = ("Machine: " if len(machines) == 1 else "Machines: ") + "; ".join(
        f"{m} ({', '.join(sections)})" for m, sections in machines.items()) + "."
    if dirty:
        line += " \\*: the tree had uncommitted changes when it ran."
    links = ", ".join(f"[{name}]({Path(os.path.relpath(results / name, readme.parent)).as_posix()})" for name in SOURCES.values())
    return "\n".join([
        BEGIN,
        "<!-- Generated by `make bench-report` (deploy/bench/report.py) from deploy/bench/*results.json; "
        "a rerun overwrites edits here. -->",
        "",
        *rows,
        "",
        line + " Full reports: " + links + ".",
        END,
    ])


def splice(text: str, block: str, readme: Path) -> str:
    begins, ends = text.count(BEGIN), text.count(END)
    if begins == ends == 1 and text.index(BEGIN) < text.index(END):
        return text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    if begins or ends:
        raise ReportError(f"{readme}: expected one {BEGIN} before one {END}, found {begins} and {ends}")
    m = re.search(r"^## Benchmarks[ \t]*\n", text, re.M)
    if not m:
        raise ReportError(f"{readme}: no '## Benchmarks' section to put the table in")
    return text[:m.end()] + "\n" + block + "\n" + text[m.end():]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", type=Path, default=RESULTS_DIR, help="the results files' directory (deploy/bench)")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--from-markdown", action="store_true",
                   help="first derive every area's JSON from its Markdown report (bootstrap)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if the README's table is out of date")
    args = p.parse_args(argv)
    try:
        if args.from_markdown:
            if args.check:
                raise ReportError("--check and --from-markdown: --check changes nothing")
            for path in bootstrap(args.results):
                print(f"bench report: wrote {path} (from its Markdown)", file=sys.stderr)
        block = render(load(args.results), args.results, args.readme)
        if not args.readme.exists():
            raise ReportError(f"{args.readme}: missing")
        before = args.readme.read_text()
        after = splice(before, block, args.readme)
    except ReportError as e:
        print(f"bench report: error: {e}", file=sys.stderr)
        return 1
    print(block)
    if args.check:
        if after != before:
            print(f"bench report: {args.readme}'s table is out of date (make bench-report)", file=sys.stderr)
            return 1
        print(f"bench report: {args.readme} is up to date", file=sys.stderr)
        return 0
    if after != before:
        args.readme.write_text(after)
        print(f"bench report: {args.readme} updated", file=sys.stderr)
    else:
        print(f"bench report: {args.readme} unchanged", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
