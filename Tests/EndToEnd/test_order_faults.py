"""Fifty orders through the whole purchase process while the suite is broken under them, in turn:
orders, billing and listings each killed with SIGKILL mid-flow and restarted, the broker down for
30 s and back, Postgres restarted in place. Buyers and vendors act through the gateway as real
clients do: they retry on 502/503/504 and on no answer, place with the same Idempotency-Key
again, and take a 409 `invalid-transition` after a retried action as done when the order is
already where the action leads.

Afterwards nothing is lost and no money moved twice: every order is in the final state its
script leads to, each listing's stock is its initial stock less what was sold, every paid order
was captured once and refunded at most once (exactly once, in full, when it was canceled after
payment), the provider agrees, each vendor was paid out exactly its received orders less the
commission, and the ledger balances. No event was dead-lettered, none was left unpublished in an
outbox, no job parked, and every service came back by itself from the broker's outage and
Postgres's restart (the same processes, still consuming and publishing).

Orders are handed to five worker threads in batches, one per fault, and each fault waits until
the orders since the last one have moved again and some are in flight at the steps it should
hit. If nothing moves for STALL seconds the run stops and names the events stranded in each
service's outbox. After a failure the broker is brought up and the domain services restarted, so
that the later tests of the session find a working suite."""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field

from e2e_http import NoResponse, Response
from e2e_support import advance_clock, http_ok, kcat, psql, wait_until
from test_listings import BOWL, admin, broker, moderator, verified  # noqa: F401 (fixtures)
from test_orders import ADDRESS, orderable_listing

ORDERS = 50
WORKERS = 5
# Orders are handed to the workers in batches: one before the first fault, then one per fault,
# so that every fault lands while orders are in the middle of their process.
BATCHES = (6, 9, 9, 9, 9, 8)
FAULTS = ("kill -9 orders", "kill -9 billing", "kill -9 listings", "broker down 30 s", "restart postgres")
BROKER_OUTAGE = 30.0
# How long one client request may keep being retried through an outage, and one wait for the
# order to move (the broker outage, a consumer group's rejoin and backed-off jobs included).
RETRY_BUDGET = 150.0
STATE_WAIT = 150.0
# No order moving for this long while no fault is in progress is a stall: the run stops and says
# where things stand (events stranded in an outbox, orders and their steps).
STALL = 60.0
# Each fault waits for this many order steps after the last one recovered: the suite works between faults.
PROGRESS_BETWEEN_FAULTS = 6
SCHEMAS = ("identity", "listings", "billing", "orders", "messaging")
TRANSIENT = (502, 503, 504)
PROBLEM = "https://marketplace.example/problems/"
COMMISSION_BPS = 800  # what test_listings.entitle grants every vendor
FINAL_STATUS = {"receive": {"received", "completed"}, "cancel_unpaid": {"canceled"},
                "cancel_paid_vendor": {"canceled"}, "cancel_paid_buyer": {"canceled"}, "unpaid": {"canceled"}}
PAID_PLANS = {"receive", "cancel_paid_vendor", "cancel_paid_buyer"}
CANCEL_REASON = {"cancel_unpaid": "buyer_canceled", "cancel_paid_vendor": "vendor_canceled",
                 "cancel_paid_buyer": "buyer_canceled", "unpaid": "payment_timeout"}
PAYMENT_STATUS = {"receive": "released", "cancel_unpaid": "canceled", "cancel_paid_vendor": "refunded",
                  "cancel_paid_buyer": "refunded", "unpaid": "canceled"}


def plan_of(index: int) -> str:
    """Each batch gets a mix: 30 orders received, 20 canceled four ways."""
    return {6: "cancel_unpaid", 7: "cancel_paid_vendor", 8: "cancel_paid_buyer", 9: "unpaid"}.get(index % 10, "receive")


@dataclass
class Listing:
    id: str
    vendor_id: str
    vendor_token: str
    price: int
    initial: int


@dataclass
class Order:
    index: int
    plan: str
    listing: Listing
    buyer_id: str
    buyer_token: str
    quantity: int
    key: str = field(default_factory=lambda: str(uuid.uuid4()))
    id: str | None = None
    total: int = 0
    commission: int = 0
    step: str = "queued"
    done: bool = False
    error: str | None = None


class Run:
    """What the workers, the fault driver and the assertions share."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.lock = threading.Lock()
        self.fault: str | None = None  # the fault in progress, if any
        self.progress = 0  # order steps taken so far
        self.last_progress = time.monotonic()
        self.abort = threading.Event()  # set when the run has stalled: the workers give up
        self.transients: Counter = Counter()  # (status or "no answer", fault) -> how often
        self.server_errors: list[str] = []  # 500s: a service's bug, whatever else is going on

    def step(self, order: Order, step: str) -> None:
        with self.lock:
            order.step = step
            self.progress += 1
            self.last_progress = time.monotonic()

    def check_abort(self) -> None:
        if self.abort.is_set():
            raise AssertionError("the run stalled and was stopped")

    def call(self, method: str, path: str, *, token: str, json=None, headers=None) -> tuple[Response, bool]:
        """One request as a client that copes with outages: 502/503/504, a 409
        `idempotency-key-in-use` and no answer at all are retried (the same request, the same
        Idempotency-Key) within RETRY_BUDGET. Answers the response and whether it was retried."""
        deadline = time.monotonic() + RETRY_BUDGET
        retried = False
        while True:
            self.check_abort()
            kwargs = {"token": token, "headers": headers, "validate": False, "timeout": 20}
            if json is not None:
                kwargs["json"] = json
            try:
                response = self.gateway.request(method, path, **kwargs)
            except NoResponse as error:
                what, last = "no answer", str(error)
            else:
                if response.status == 500:
                    with self.lock:
                        self.server_errors.append(f"during {self.fault or 'no fault'}: {response.describe()}")
                    self.gateway.validate(response)  # fails: a 500 is never part of the contract
                in_use = response.status == 409 and response.media_type == "application/problem+json" and \
                    response.json().get("type") == PROBLEM + "idempotency-key-in-use"
                if response.status not in TRANSIENT and not in_use:
                    return self.gateway.validate(response), retried
                self.gateway.validate(response)  # a documented answer, even while things are down
                what, last = response.status, response.describe()
            with self.lock:
                self.transients[(what, self.fault or "after a fault")] += 1
            retried = True
            if time.monotonic() >= deadline:
                raise AssertionError(f"{method} {path}: still failing after {RETRY_BUDGET:.0f}s of retries: {last}")
            time.sleep(0.5)

    def get_order(self, order: Order, token: str | None = None) -> dict:
        response, _ = self.call("GET", f"/v1/orders/{order.id}", token=token or order.buyer_token)
        return response.expect(200).json()

    def wait_order(self, order: Order, predicate, describe: str) -> dict:
        """Polls the order until `predicate` holds, at most STATE_WAIT (less if the run stalls)."""
        deadline = time.monotonic() + STATE_WAIT
        while True:
            current = self.get_order(order)
            if predicate(current):
                return current
            if time.monotonic() >= deadline:
                raise AssertionError(f"order {order.index} ({order.id}, {order.plan}): {describe} within {STATE_WAIT:.0f}s; "
                                     f"it is {current['status']}, payment {current['payment']}")
            time.sleep(0.25)

    def act(self, order: Order, action: str, token: str, target: set[str], json=None) -> None:
        """A party's action; a 409 `invalid-transition` after a retry is the first try having
        landed, provided the order is where the action leads (or beyond)."""
        response, retried = self.call("POST", f"/v1/orders/{order.id}/{action}", token=token, json=json)
        if response.status == 200:
            assert response.json()["status"] in target, f"order {order.index}: {action} -> {response.describe()}"
            return
        problem = response.expect_problem(409, "invalid-transition")
        status = self.get_order(order)["status"]
        assert retried and status in target, (
            f"order {order.index} ({order.id}): {action} refused although "
            f"{'it was retried' if retried else 'it was the first try'} and the order is {status}: {problem}")


def run_order(run: Run, order: Order) -> None:
    """One order's script, from placing to where its plan ends."""
    vendor_token = order.listing.vendor_token
    run.step(order, "placing")
    body = {"listingId": order.listing.id, "quantity": order.quantity, "shippingAddress": ADDRESS}
    response, _ = run.call("POST", "/v1/orders", token=order.buyer_token, json=body, headers={"Idempotency-Key": order.key})
    placed = response.expect(201).json()
    order.id, order.total, order.commission = placed["id"], placed["total"]["amount"], placed["commission"]["amount"]
    assert placed["status"] == "pending_payment" and order.total == order.listing.price * order.quantity, response.describe()

    if order.plan == "cancel_unpaid" and order.index % 20 == 6:
        run.step(order, "canceling unpaid")  # at once, perhaps before billing has made the intent
        run.act(order, "cancel", order.buyer_token, {"canceled"}, json={"reason": "Changed my mind."})
        return
    run.step(order, "awaiting intent")
    intent = run.wait_order(order, lambda o: o["payment"] is not None, "billing's intent on the order")["payment"]["intentId"]
    if order.plan == "unpaid":
        return  # left to its 15 minutes
    if order.plan == "cancel_unpaid":
        run.step(order, "canceling unpaid")
        run.act(order, "cancel", order.buyer_token, {"canceled"}, json={"reason": "Found it cheaper."})
        return

    run.step(order, "paying")
    response, retried = run.call("POST", f"/v1/payments/{intent}/confirm", token=order.buyer_token, json={"paymentMethod": "pm_card_visa"})
    if response.status != 200:
        # The first confirmation went through before its answer was lost: the intent is paid.
        response.expect_problem(409, "invalid-transition")
        assert retried, f"order {order.index}: the first confirmation was refused: {response.describe()}"
    else:
        assert response.json()["status"] == "succeeded", response.describe()
    run.step(order, "awaiting paid")
    run.wait_order(order, lambda o: o["status"] == "paid", "the webhook made it paid")

    if order.plan == "cancel_paid_vendor":
        run.step(order, "vendor canceling")
        run.act(order, "cancel", vendor_token, {"canceled"}, json={"reason": "Out of stock, sorry."})
        return
    if order.plan == "cancel_paid_buyer":
        run.step(order, "buyer canceling paid")
        run.act(order, "cancel", order.buyer_token, {"canceled"}, json={"reason": "Ordered twice."})
        return
    run.step(order, "shipping")
    run.act(order, "ship", vendor_token, {"shipped", "delivered", "received"},
            json={"carrier": "Royal Mail", "trackingNumber": f"RM{order.index:09d}GB"})
    run.step(order, "delivering")
    run.act(order, "deliver", vendor_token, {"delivered", "received"})
    run.step(order, "receiving")
    run.act(order, "receive", order.buyer_token, {"received"})


def worker(run: Run, tickets: queue.Queue) -> None:
    while (order := tickets.get()) is not None:
        try:
            run_order(run, order)
        except BaseException as error:  # noqa: BLE001 - reported with every other order's outcome
            order.error = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=4)}"
        finally:
            with run.lock:
                order.done = True
                order.step = "failed" if order.error else "done"


# --------------------------------------------------------------------------- faults


def kill_and_restart(s, name: str) -> str:
    pid = s.pid(name)
    os.kill(pid, signal.SIGKILL)
    assert s.stop_service(name) == -signal.SIGKILL  # reaps it
    time.sleep(1)  # down for a moment: requests meanwhile find nobody
    s.start_service(name)  # waits for /health/ready
    assert s.pid(name) not in (None, pid)
    return f"{name} pid {pid} killed, pid {s.pid(name)} ready"


def broker_outage(s, log_path) -> str:
    pids = {n: s.pid(n) for n in ("identity", "listings", "billing", "orders", "messaging", "gateway", "devbroker")}

    def said(what: str) -> int:
        return log_path.read_text(errors="replace").count(what)

    downs, ups = said("broker down"), said("broker up again")
    s.broker_outage(True)
    wait_until(lambda: said("broker down") > downs, timeout=10, describe="the devbroker to go down")
    time.sleep(BROKER_OUTAGE)  # the outage itself
    s.broker_outage(False)
    wait_until(lambda: said("broker up again") > ups, timeout=10, describe="the devbroker to come back")
    assert {n: s.pid(n) for n in pids} == pids, "the broker outage ended a process"
    return f"devbroker pid {pids['devbroker']} down {BROKER_OUTAGE:.0f}s and up again, its records kept"


def restart_postgres(s, suite) -> str:
    pids = {n: s.pid(n) for n in ("identity", "listings", "billing", "orders", "messaging", "gateway")}
    before = s.postgres_pid()
    s.restart_postgres()
    after = s.postgres_pid()
    assert after and after != before, (before, after)
    # Nobody restarts the services: they reconnect by themselves and say they are ready.
    for name in pids:
        url = suite.gateway_url if name == "gateway" else suite.service_url(name)
        wait_until(lambda: http_ok(f"{url}/health/ready"), timeout=60, interval=0.25,
                   describe=f"{name} ready again after the Postgres restart")
    assert {n: s.pid(n) for n in pids} == pids and not s.exited(), "a service died with Postgres"
    return f"postgres pid {before} stopped (fast), pid {after} up; every service ready again on its own"


def in_flight(run: Run, orders: list[Order]) -> list[Order]:
    with run.lock:
        return [o for o in orders if o.step not in ("queued", "done", "failed")]


def ready_for(fault: str, flying: list[Order]) -> bool:
    """Each fault waits for orders at the steps it should hit."""
    steps = Counter(o.step for o in flying)
    if fault == "kill -9 billing":
        return steps["paying"] + steps["awaiting paid"] + steps["awaiting intent"] >= 2
    if fault == "kill -9 listings":
        return steps["placing"] + steps["awaiting intent"] >= 2
    return len(flying) >= 3


# --------------------------------------------------------------------------- reading the results


def rows(dsn: str, sql: str) -> list[list[str]]:
    return psql(dsn, sql, timeout=30)


def id_list(ids) -> str:
    return "ARRAY[" + ",".join(f"'{i}'" for i in ids) + "]::uuid[]"


def unsettled(dsn: str, orders: list[Order]) -> list[str]:
    """What is not yet where it must end, in each service (empty once the suite is quiet)."""
    ids = id_list(o.id for o in orders)
    by_id = {o.id: o for o in orders}
    problems = []

    def named(oid: str) -> str:
        return f"order {by_id[oid].index} ({by_id[oid].plan}, {oid})"

    for oid, status, refunded in rows(dsn, f"SELECT id, status, refunded_amount FROM orders.orders WHERE id = ANY({ids})"):
        o = by_id[oid]
        if status not in FINAL_STATUS[o.plan]:
            problems.append(f"{named(oid)} is {status}")
        elif o.plan in ("cancel_paid_vendor", "cancel_paid_buyer") and int(refunded) != o.total:
            problems.append(f"{named(oid)} shows {refunded} refunded of {o.total}")
    payments = dict(rows(dsn, f"SELECT order_id, status FROM billing.order_payments WHERE order_id = ANY({ids})"))
    for oid, o in by_id.items():
        if payments.get(oid) != PAYMENT_STATUS[o.plan]:
            problems.append(f"{named(oid)}: billing's payment is {payments.get(oid, 'missing')}")
    for oid, in rows(dsn, f"SELECT order_id FROM billing.order_refunds WHERE order_id = ANY({ids}) AND status <> 'succeeded'"):
        problems.append(f"{named(oid)}: a refund not yet made")
    for oid, status in rows(dsn, f"""SELECT p.order_id, i.status FROM billing.order_payments p
                                     JOIN billing.sandbox_payment_intents i ON i.id = p.intent_id
                                     WHERE p.order_id = ANY({ids}) AND p.status = 'canceled' AND i.status <> 'canceled'"""):
        problems.append(f"{named(oid)}: its dead intent is still {status}")
    reservations = dict(rows(dsn, f"SELECT order_id, status FROM listings.stock_reservations WHERE order_id = ANY({ids})"))
    for oid, o in by_id.items():
        expected = "committed" if o.plan == "receive" else "released"
        if reservations.get(oid) != expected:
            problems.append(f"{named(oid)}: its stock is {reservations.get(oid, 'not reserved')} in listings, not {expected}")
    return stranded_events(dsn) + problems


def stranded_events(dsn: str, older_than: float = 5.0) -> list[str]:
    """Events a service wrote to its outbox that its relay has not published for a while."""
    found = []
    for schema in SCHEMAS:
        (count, age), = rows(dsn, f"""SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::int
                                      FROM {schema}.outbox WHERE sent_at IS NULL AND created_at < now() - interval '{older_than} seconds'""")
        if count != "0":
            types = rows(dsn, f"""SELECT type, count(*) FROM {schema}.outbox WHERE sent_at IS NULL GROUP BY 1 ORDER BY 1""")
            found.append(f"{schema}: {count} events unpublished, the oldest for {age}s ({', '.join(f'{t} x{n}' for t, n in types)})")
    return found


def parked_jobs(dsn: str, ids: set[str]) -> list[str]:
    """Jobs given up on (parked after their last attempt) whose key names one of `ids`."""
    found = []
    for schema in ("orders", "billing", "listings"):
        for job_id, kind, key, error in rows(dsn, f"SELECT id, kind, key, coalesce(last_error, '') FROM {schema}.jobs WHERE failed_at IS NOT NULL"):
            if any(i in key.lower() for i in ids):
                found.append(f"{schema}: {kind} {key} ({job_id}): {error[:300]}")
    return found


def dead_letters(kafka: str, keys: set[str]) -> list[str]:
    found = []
    for topic in ("orders.dlq.v1", "billing.dlq.v1", "listings.dlq.v1", "messaging.dlq.v1"):
        dump = kcat("-b", kafka, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%h\n", timeout=60)
        found += [f"{topic}: {line[:400]}" for line in dump.splitlines() if line.partition("\t")[0] in keys]
    return found


# --------------------------------------------------------------------------- the test


def add_listing(gateway, moderator, vendor_token: str, price: int, quantity: int) -> str:  # noqa: F811 (fixture name)
    body = {**BOWL, "title": f"Stoneware bowl at {price}", "price": {"amount": price, "currency": "GBP"}, "quantity": quantity}
    lid = gateway.post("/v1/listings", json=body, token=vendor_token).expect(201).json()["id"]
    if gateway.post(f"/v1/listings/{lid}/publish", token=vendor_token).expect(200).json()["status"] == "pending_review":
        gateway.post(f"/v1/moderation/listings/{lid}/approve", token=moderator).expect(200)
    return lid


def restore(s) -> None:
    """After a failure, the suite as the later tests need it: the broker up, Postgres running and
    every domain service started afresh (a failure here may have left one hung)."""
    steps = [("the broker up", lambda: s.broker_outage(False))]
    if not s.postgres_pid():
        steps.append(("postgres started", s.start_postgres))
    for name in ("identity", "listings", "billing", "orders", "messaging"):
        steps.append((f"{name} restarted", lambda name=name: (s.stop_service(name, timeout=5), s.start_service(name))))
    for what, step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the test's own failure is the one to report
            sys.stderr.write(f"test_order_faults: could not get {what}: {error!r}\n")


def test_fifty_orders_survive_killed_services_a_broker_outage_and_a_postgres_restart(
        suite, gateway, register, broker, moderator, admin):  # noqa: F811
    try:
        fifty_orders_under_faults(suite, gateway, register, broker, moderator, admin)
    except BaseException:
        restore(suite.suite)
        raise


def fifty_orders_under_faults(suite, gateway, register, broker, moderator, admin) -> None:  # noqa: F811
    started = time.monotonic()
    s, dsn = suite.suite, suite.superuser_dsn
    stock = 25

    # Three vendors with two listings each (prices chosen for the commission's rounding), each
    # with a payout account; five verified buyers.
    listings: list[Listing] = []
    for price in (2450, 999, 12345):
        vendor, token, first = orderable_listing(suite, gateway, register, broker, moderator, quantity=stock)
        gateway.post("/v1/vendor/payout-account", token=token).expect(201)
        second = add_listing(gateway, moderator, token, price, stock)
        listings += [Listing(first, vendor.id, token, BOWL["price"]["amount"], stock), Listing(second, vendor.id, token, price, stock)]
    buyers = []
    for n in range(WORKERS):
        buyer = register("buyer", display_name=f"Faulty Buyer {n}")
        buyers.append((buyer.id, verified(suite, buyer)))
    lids, vendors = id_list(l.id for l in listings), id_list({l.vendor_id for l in listings})
    wait_until(lambda: rows(dsn, f"SELECT count(*) FROM orders.listing_snapshots WHERE id = ANY({lids}) AND orderable "
                                 f"AND quantity_available = {stock}")[0][0] == str(len(listings))
               and rows(dsn, f"SELECT count(*) FROM orders.vendor_commissions WHERE vendor_id = ANY({vendors})")[0][0] == "3",
               timeout=60, describe="orders knows every listing and every vendor's commission")

    orders = [Order(i, plan_of(i), listings[i % len(listings)], *buyers[i % WORKERS], quantity=1 + (i % 3 == 0))
              for i in range(ORDERS)]
    run = Run(gateway)
    tickets: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=worker, args=(run, tickets), name=f"buyer-{n}", daemon=True) for n in range(WORKERS)]
    for thread in threads:
        thread.start()

    # The faults, in turn, each once the suite has shown it works again (orders moving) and the
    # orders it should hit are on their way.
    report: list[str] = []

    def where_things_stand() -> str:
        with run.lock:
            steps = Counter(o.step for o in orders)
        return f"order steps {dict(steps)}; " + ("; ".join(stranded_events(dsn)) or "no event stranded in an outbox")

    released = 0
    try:
        for batch, fault in zip(BATCHES, (None, *FAULTS)):
            for order in orders[released:released + batch]:
                tickets.put(order)
            released += batch
            if fault is None:
                continue
            with run.lock:
                base = run.progress
            wait_until(lambda: run.progress >= base + PROGRESS_BETWEEN_FAULTS and ready_for(fault, in_flight(run, orders)),
                       timeout=STALL, interval=0.05,
                       describe=lambda: f"orders moving again and in flight before {fault}: {where_things_stand()}")
            with run.lock:
                flying = Counter(o.step for o in orders if o.step not in ("queued", "done", "failed"))
            at = time.monotonic()
            with run.lock:
                run.fault = fault
            if fault.startswith("kill -9 "):
                what = kill_and_restart(s, fault.removeprefix("kill -9 "))
            elif fault.startswith("broker"):
                what = broker_outage(s, s.log_path("devbroker"))
            else:
                what = restart_postgres(s, suite)
            with run.lock:
                run.fault = None
                run.last_progress = time.monotonic()
            report.append(f"{fault} at {at - started:.0f}s, {sum(flying.values())} orders in flight "
                          f"({dict(flying)}): {what}; {time.monotonic() - at:.1f}s")
        assert released == ORDERS
        # Every order to its end; a run where nothing moves for STALL seconds is stopped.
        while not all(o.done for o in orders):
            with run.lock:
                idle = time.monotonic() - run.last_progress
            assert idle < STALL, f"no order moved for {idle:.0f}s after the faults: {where_things_stand()}\n" + "\n".join(report)
            time.sleep(0.5)
    finally:
        if not all(o.done for o in orders):
            run.abort.set()
        for _ in threads:
            tickets.put(None)
        for thread in threads:
            thread.join(timeout=RETRY_BUDGET)
    failed = [f"order {o.index} ({o.plan}, {o.id}) failed at {o.step}: {o.error}" for o in orders if o.error]
    assert not failed, "\n".join(report + failed)
    assert not run.server_errors, "\n".join(run.server_errors)
    flow_done = time.monotonic()

    # The unpaid ones expire at 15 minutes; then everything settles by itself.
    advance_clock(suite, minutes=16)
    ids = id_list(o.id for o in orders)
    wait_until(lambda: not unsettled(dsn, orders), timeout=STATE_WAIT, interval=0.5,
               describe=lambda: "every order and its money settled: " + "; ".join(unsettled(dsn, orders)[:20]))
    # The daily payout run (02:00 business time) pays each vendor its received orders.
    advance_clock(suite, days=1)
    wait_until(lambda: rows(dsn, f"""SELECT count(*) FROM billing.order_payments WHERE order_id = ANY({ids})
                                     AND status = 'released' AND payout_id IS NULL""")[0][0] == "0"
               and rows(dsn, f"SELECT count(*) FROM billing.payouts WHERE vendor_id = ANY({vendors}) AND status <> 'paid'")[0][0] == "0",
               timeout=60, interval=0.5, describe="every received order paid out")

    by_id = {o.id: o for o in orders}
    paid = {o.id for o in orders if o.plan in PAID_PLANS}
    received = {o.id for o in orders if o.plan == "receive"}
    refunded = {o.id for o in orders if o.plan in ("cancel_paid_vendor", "cancel_paid_buyer")}

    # No order lost or placed twice: exactly the fifty, each in its legal final state.
    placed = rows(dsn, f"""SELECT id, status, cancel_reason, total_amount, commission_amount, refunded_amount, quantity, listing_id
                           FROM orders.orders WHERE buyer_id = ANY({id_list(b for b, _ in buyers)})""")
    assert sorted(r[0] for r in placed) == sorted(by_id), f"{len(placed)} orders for {ORDERS} placed"
    for oid, status, reason, total, commission, refunded_amount, quantity, lid in placed:
        o = by_id[oid]
        assert status in FINAL_STATUS[o.plan], (o.index, o.plan, status)
        assert (int(total), int(commission), int(quantity), lid) == (o.total, o.commission, o.quantity, o.listing.id)
        assert o.commission == (o.total * COMMISSION_BPS + 5_000) // 10_000, (o.index, o.total, o.commission)  # 8 %, half up
        assert reason == ("" if o.plan == "receive" else CANCEL_REASON[o.plan]), (o.index, o.plan, reason)
        assert int(refunded_amount) == (o.total if oid in refunded else 0), (o.index, o.plan, refunded_amount)
    # Every change once: no event twice in any order's history.
    repeated = rows(dsn, f"SELECT order_id, event, count(*) FROM orders.order_history WHERE order_id = ANY({ids}) "
                         f"GROUP BY 1, 2 HAVING count(*) > 1")
    assert not repeated, [(by_id[r[0]].index, r[1], r[2]) for r in repeated]
    for o in orders:  # and the same through the API
        seen = run.get_order(o)
        assert seen["status"] in FINAL_STATUS[o.plan] and seen["refundedAmount"]["amount"] == (o.total if o.id in refunded else 0), seen
        if o.id in refunded:
            assert seen["payment"]["status"] == "refunded" and seen["history"][-1]["event"] == "refunded", seen

    # Stock: each listing's initial stock less what was sold; every reservation resolved.
    for listing in listings:
        sold = sum(o.quantity for o in orders if o.listing is listing and o.id in received)
        shown = gateway.get(f"/v1/listings/{listing.id}", token=listing.vendor_token).expect(200).json()
        assert shown["quantityAvailable"] == listing.initial - sold and shown["status"] == "published", (listing, sold, shown)
    reservations = dict(rows(dsn, f"SELECT order_id, status FROM listings.stock_reservations WHERE order_id = ANY({ids})"))
    assert reservations == {o.id: ("committed" if o.id in received else "released") for o in orders}, reservations

    # Billing: one payment per order, in its final state; captured once per paid order, released
    # once per received one, refunded once (in full) per order canceled after payment, never else.
    payments = {r[0]: r[1:] for r in rows(dsn, f"""SELECT order_id, status, amount, commission, refunded, payout_id IS NOT NULL
                                                   FROM billing.order_payments WHERE order_id = ANY({ids})""")}
    assert set(payments) == set(by_id), f"{len(payments)} payments for {ORDERS} orders"
    for oid, (status, amount, commission, refunded_amount, paid_out) in payments.items():
        o = by_id[oid]
        assert (status, int(amount), int(commission)) == (PAYMENT_STATUS[o.plan], o.total, o.commission), (o.index, o.plan, payments[oid])
        assert int(refunded_amount) == (o.total if oid in refunded else 0) and (paid_out == "t") == (oid in received), (o.index, payments[oid])
    entries = Counter((kind, ref) for kind, ref in rows(dsn, f"""SELECT kind, reference FROM billing.ledger_entries
                                                                 WHERE kind IN ('order_captured', 'order_released') AND reference = ANY({ids}::text[])"""))
    assert entries == Counter({("order_captured", oid): 1 for oid in paid} | {("order_released", oid): 1 for oid in received}), entries
    refunds = rows(dsn, f"SELECT order_id, id, amount, status FROM billing.order_refunds WHERE order_id = ANY({ids})")
    assert sorted((r[0], int(r[2]), r[3]) for r in refunds) == sorted((oid, by_id[oid].total, "succeeded") for oid in refunded), refunds
    refund_ids = id_list(r[1] for r in refunds)
    refund_entries = Counter(kind for kind, in rows(dsn, f"""SELECT kind FROM billing.ledger_entries
                                                             WHERE reference = ANY({refund_ids}::text[])"""))
    assert refund_entries == Counter({"order_refunded": len(refunded), "order_refund_paid": len(refunded)}), refund_entries
    # The money of each movement: escrow took the total in and gave all of it out again.
    movements = rows(dsn, f"""SELECT e.kind, coalesce(r.order_id::text, e.reference), l.account, sum(l.debit)::bigint, sum(l.credit)::bigint
                             FROM billing.ledger_entries e JOIN billing.ledger_lines l ON l.entry_id = e.id
                             LEFT JOIN billing.order_refunds r ON r.id::text = e.reference
                             WHERE e.reference = ANY({ids}::text[]) OR e.reference = ANY({refund_ids}::text[])
                             GROUP BY 1, 2, 3""")
    net = {(kind, oid, account): int(debit) - int(credit) for kind, oid, account, debit, credit in movements}
    for oid in paid:
        o = by_id[oid]
        assert net[("order_captured", oid, "order_escrow")] == -o.total
        assert net[("order_captured", oid, "provider_balance")] + net[("order_captured", oid, "provider_fees")] == o.total
    for oid in received:
        o = by_id[oid]
        assert (net[("order_released", oid, "order_escrow")], net[("order_released", oid, "vendor_payable")],
                net[("order_released", oid, "commission_revenue")]) == (o.total, -(o.total - o.commission), -o.commission), oid
    for oid in refunded:
        assert net[("order_refunded", oid, "order_escrow")] == by_id[oid].total
        assert net[("order_refund_paid", oid, "provider_balance")] == -by_id[oid].total

    # The provider agrees: one intent per order (none twice), paid once for each paid order,
    # refunded once and in full for each order canceled after payment; dead orders' intents canceled.
    intents = rows(dsn, f"""SELECT metadata->>'order_id', status, amount, amount_refunded,
                                   (SELECT count(*) FROM billing.sandbox_refunds r WHERE r.payment_intent_id = i.id)
                            FROM billing.sandbox_payment_intents i WHERE metadata->>'order_id' = ANY({ids}::text[])""")
    per_order = Counter(r[0] for r in intents)
    assert all(n == 1 for n in per_order.values()) and paid <= set(per_order), per_order
    for oid, status, amount, amount_refunded, refund_count in intents:
        o = by_id[oid]
        expected = ("succeeded", o.total, o.total if oid in refunded else 0, 1 if oid in refunded else 0) if oid in paid \
            else ("canceled", o.total, 0, 0)
        assert (status, int(amount), int(amount_refunded), int(refund_count)) == expected, (o.index, o.plan, status, amount_refunded)

    # Payouts: each vendor exactly its received orders less the commission, transferred once.
    for vendor_id in {l.vendor_id for l in listings}:
        token = next(l.vendor_token for l in listings if l.vendor_id == vendor_id)
        owed = sum(o.total - o.commission for o in orders if o.id in received and o.listing.vendor_id == vendor_id)
        payouts = rows(dsn, f"""SELECT p.id, p.amount, p.status, p.transfer_id, t.amount,
                                       (SELECT count(*) FROM billing.sandbox_transfers x WHERE x.destination = p.account_id)
                                FROM billing.payouts p LEFT JOIN billing.sandbox_transfers t ON t.id = p.transfer_id
                                WHERE p.vendor_id = '{vendor_id}'""")
        assert sum(int(p[1]) for p in payouts) == owed and all(p[2] == "paid" and p[4] == p[1] for p in payouts), (vendor_id, owed, payouts)
        assert all(int(p[5]) == len(payouts) for p in payouts), f"transfers to {vendor_id}: {payouts}"
        listed = gateway.get("/v1/vendor/payouts", query={"limit": "100"}, token=token).expect(200).json()["items"]
        assert sum(p["amount"]["amount"] for p in listed) == owed
        assert sorted(oid for p in listed for oid in p["orders"]) == sorted(
            o.id for o in orders if o.id in received and o.listing.vendor_id == vendor_id)
        assert gateway.get("/v1/vendor/balance", token=token).expect(200).json() == {
            "pending": [{"amount": 0, "currency": "GBP"}], "available": [{"amount": 0, "currency": "GBP"}], "inDispute": []}
        entries = Counter(kind for kind, in rows(dsn, f"""SELECT e.kind FROM billing.ledger_entries e
                                                         WHERE e.reference = ANY(ARRAY[{",".join(f"'{p[0]}'" for p in payouts)}]::text[])"""))
        assert entries == Counter({"payout_initiated": len(payouts), "payout_paid": len(payouts)}), entries

    # The ledger balances, in every currency and in all.
    trial = gateway.get("/v1/admin/ledger/trial-balance", token=admin).expect(200).json()
    assert trial["currencies"] and all(c["debits"] == c["credits"] for c in trial["currencies"]), trial
    assert sum(a["balance"] for a in trial["accounts"]) == 0, trial

    # Events still flow after everything: a user registered now reaches every service.
    late = register("buyer", display_name="Faulty Latecomer")
    wait_until(lambda: all(rows(dsn, f"SELECT count(*) FROM {schema}.users WHERE id = '{late.id}'")[0][0] == "1"
                           for schema in ("listings", "billing", "orders", "messaging")),
               timeout=30, describe=lambda: f"a user registered after the faults in every service: {stranded_events(dsn, 0)}")

    # Nothing given up on: no event about these orders dead-lettered, no job of theirs parked.
    keys = set(by_id) | {l.vendor_id for l in listings}
    assert not (lost := dead_letters(suite.suite.kafka_bootstrap_servers, keys)), lost
    keys |= {r[0].lower() for r in rows(dsn, f"SELECT intent_id FROM billing.order_payments WHERE order_id = ANY({ids}) AND intent_id IS NOT NULL")}
    keys |= {r[1] for r in refunds}
    assert not (parked := parked_jobs(dsn, keys)), parked
    assert not s.exited(), s.exited()

    transients = ", ".join(f"{what} x{n} ({fault})" for (what, fault), n in sorted(run.transients.items(), key=str))
    summary = (f"{ORDERS} orders in {flow_done - started:.0f}s, settled and paid out by {time.monotonic() - started:.0f}s\n"
               + "\n".join(report) + f"\nretried: {transients or 'nothing'}\n")
    (suite.log_dir / "order-faults.txt").write_text(summary)
    print("\n" + summary)
