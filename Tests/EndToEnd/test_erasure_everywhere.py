"""Erasure reaches every service's real data. A buyer deals with a vendor — writes with a phone
number, orders to a street address, disputes, gives evidence, reviews — and exports it all; while
the order and the dispute run their course, erasure is refused (identity learns of them from
orders' events); once they have, the buyer is erased, every service acknowledges, and a scan of
every text column of every service's schema finds none of the buyer's email address, name,
phone number or street address. The money records stay."""

from __future__ import annotations

import secrets

from e2e_support import psql, sql_literal, wait_until
from test_disputes import delivered_order
from test_listings import admin, broker, moderator, verified  # noqa: F401 (fixtures)
from test_orders import orderable_listing, place, pay, status_of

SCHEMAS = ("identity", "listings", "billing", "orders", "messaging")


def obligations(suite, user_id):
    return sorted(r[0] for r in psql(suite.superuser_dsn, f"SELECT kind FROM identity.user_obligations WHERE user_id = {sql_literal(user_id)}::uuid"))


def residue(suite, values: dict[str, str]) -> list[str]:
    """Every (schema.table.column, value) whose text holds one of `values`, case-insensitively:
    every column of a character, JSON or array type, and every bytea column read as escaped text (event
    payloads kept in outboxes)."""
    columns = psql(suite.superuser_dsn, f"""
        SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns
        WHERE table_schema IN ({", ".join(sql_literal(s) for s in SCHEMAS)})
          AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'ARRAY', 'bytea')
          AND table_name IN (SELECT table_name FROM information_schema.tables WHERE table_schema = columns.table_schema AND table_type = 'BASE TABLE')
        ORDER BY 1, 2, 3""")
    found = []
    for schema, table, column, kind in columns:
        text = f'encode("{column}", \'escape\')' if kind == "bytea" else f'"{column}"::text'
        checks = " OR ".join(f"strpos(lower({text}), lower({sql_literal(v)})) > 0" for v in values.values())
        count = psql(suite.superuser_dsn, f'SELECT count(*) FROM "{schema}"."{table}" WHERE {checks}')[0][0]
        if count != "0":
            hits = [label for label, v in values.items()
                    if psql(suite.superuser_dsn, f'SELECT count(*) FROM "{schema}"."{table}" WHERE strpos(lower({text}), lower({sql_literal(v)})) > 0')[0][0] != "0"]
            found.append(f"{schema}.{table}.{column}: {', '.join(hits)} ({count} rows)")
    return found


def test_an_erased_buyer_leaves_no_trace_in_any_schema_once_their_order_and_dispute_have_run_their_course(
        suite, gateway, register, broker, moderator, admin):  # noqa: F811
    vendor, vendor_token, lid = orderable_listing(suite, gateway, register, broker, moderator, quantity=2)
    tag = secrets.token_hex(3)
    name = f"Quillon Ashgrove{tag}"
    buyer = register("buyer", display_name=name)
    token = verified(suite, buyer)
    phone = "+44 7700 900461"
    street = f"17 Larkspur Mews {tag}"
    values = {"email": buyer.email, "name": name, "phone": "7700 900461", "address": street}

    # What the buyer gives the suite: a message with a phone number, an order to a street address,
    # a dispute and evidence naming both, a review.
    gateway.post("/v1/conversations", json={"listingId": lid, "body": f"Hello, {name} here: ring me on {phone}."},
                 token=token).expect(201)
    address = {"name": name, "line1": street, "city": "York", "postalCode": "YO31 8QQ", "country": "GB"}
    order = wait_until(lambda: (lambda r: r if r.status == 201 else None)(place(gateway, token, lid, shippingAddress=address)),
                       timeout=30, describe="orders knows the listing").json()
    oid = order["id"]
    wait_until(lambda: obligations(suite, buyer.id) == ["order"], timeout=30, describe="the open order known to identity")
    blocked = gateway.delete("/v1/users/me", json={"password": buyer.password}, token=token).expect_problem(409, "erasure-blocked")
    assert "1 open order" in blocked["detail"]
    pay(gateway, token, order)
    gateway.post(f"/v1/orders/{oid}/ship", json={"carrier": "DPD", "trackingNumber": "DPD9"}, token=vendor_token).expect(200)
    gateway.post(f"/v1/orders/{oid}/deliver", token=vendor_token).expect(200)
    dispute = gateway.post(f"/v1/orders/{oid}/disputes", token=token, json={
        "reason": "not_as_described", "description": f"Not the colour shown. Call {phone}."}).expect(201).json()
    gateway.post(f"/v1/disputes/{dispute['id']}/evidence", json={"text": f"Delivered to {street}, photos attached.",
                                                                "attachments": ["https://files.example.com/pup.jpg"]}, token=token).expect(201)
    wait_until(lambda: obligations(suite, buyer.id) == ["dispute", "order"], timeout=30, describe="the open dispute known to identity")
    blocked = gateway.delete("/v1/users/me", json={"password": buyer.password}, token=token).expect_problem(409, "erasure-blocked")
    assert "1 open dispute" in blocked["detail"] and "1 open order" in blocked["detail"]
    gateway.post(f"/v1/moderation/disputes/{dispute['id']}/resolve", json={"outcome": "release", "note": "As described."},
                 token=moderator).expect(200)
    gateway.post(f"/v1/orders/{oid}/reviews", json={"rating": 3, "text": f"{name}: fine, but the colour was off."}, token=token).expect(201)
    wait_until(lambda: obligations(suite, buyer.id) == [], timeout=30, describe="nothing left open for the buyer")

    # The export holds all of it.
    export = gateway.post("/v1/users/me/exports", token=token).expect(202).json()
    ready = wait_until(lambda: (lambda v: v if v["status"] == "ready" else None)(
        gateway.get(f"/v1/users/me/exports/{export['id']}", token=token).expect(200).json()), timeout=30, describe="the export")
    parts = ready["parts"]
    assert parts["orders"]["orders"][0]["shippingAddress"]["line1"] == street
    assert parts["orders"]["disputes"][0]["description"].endswith(f"Call {phone}.")
    assert parts["orders"]["disputes"][0]["evidence"][0]["text"].startswith(f"Delivered to {street}")
    assert parts["orders"]["reviews"][0]["rating"] == 3
    assert phone in parts["messaging"]["messages"][0]["body"]
    assert residue(suite, values), "the scan finds the buyer before erasure (it can fail)"

    # Erased: every service acknowledges, identity completes, and nothing of the buyer is left.
    gateway.delete("/v1/users/me", json={"password": buyer.password}, token=token).expect(202)
    wait_until(lambda: psql(suite.superuser_dsn, f"SELECT 1 FROM identity.erasures WHERE user_id = {sql_literal(buyer.id)}::uuid AND completed_at IS NOT NULL"),
               timeout=30, describe="the erasure completed")
    left = residue(suite, values)
    assert left == [], "\n".join(left)

    # What the law keeps stays: the order, its money and the ledger.
    kept = status_of(gateway, vendor_token, oid)
    assert kept["status"] == "received" and kept["total"] == order["total"] and kept["shippingAddress"]["name"] == "Deleted user"
    trial = gateway.get("/v1/admin/ledger/trial-balance", token=admin).expect(200).json()
    assert sum(a["balance"] for a in trial["accounts"]) == 0
