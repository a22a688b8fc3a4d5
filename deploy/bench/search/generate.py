#!/usr/bin/env python3
"""Deterministic listings for the search benchmark (and `make seed`), loaded with COPY.

    generate.py --dsn postgres://postgres:postgres@127.0.0.1:PORT/marketplace
                [--count 1000000] [--vendors COUNT/200] [--seed 20261204] [--schema listings]
                [--anchor YYYY-MM-DD] [--jobs 2] [--replace] [--keep-indexes]

Creates vendors (rows in users, vendors, entitlements) and listings across every category of the
schema (read from its `categories` table), attributes valid against each category's JSON Schema
(checked on a sample, all of them below 50,000 rows). Same seed, count and anchor date (default:
today, UTC) -> the same rows, ids included (UUIDv7-like, time-ordered, lower case).

Loading: rows are generated in chunks by --jobs worker processes (each chunk has its own seeded
random stream, so the output does not depend on the number of workers) and streamed into one
`psql -c 'COPY ... FROM STDIN'`. The listings table's secondary indexes are dropped first and
rebuilt after the load (unless --keep-indexes): one sorted build is far cheaper than a million
random index insertions. With a superuser DSN, foreign-key triggers are skipped during COPY
(session_replication_role = replica): the generator only uses category ids it read from the table.
Then ANALYZE and `NOTIFY listings_changed, '*'` (the service's read model reloads on it).

Stdlib only: psql does the talking to Postgres.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from bisect import bisect
from itertools import accumulate
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vocabulary as V  # noqa: E402

DEFAULT_SEED = 20261204
CHUNK = 25_000
LISTING_COLUMNS = ("id", "vendor_id", "category_id", "status", "hidden_reason", "title", "description",
                   "attributes", "price_amount", "currency", "quantity", "quantity_available", "lat",
                   "lon", "city", "region", "country", "media", "rejection_reason", "version",
                   "created_at", "updated_at", "submitted_at", "published_at", "first_published_at")
# Share of listings per category slug; a category the generator does not know gets UNKNOWN_WEIGHT
# and attributes drawn from its schema alone.
CATEGORY_WEIGHTS = {"dogs": 0.35, "cats": 0.22, "birds": 0.08, "small-animals": 0.07,
                    "pet-supplies": 0.12, "pet-food": 0.09, "cages-and-carriers": 0.07}
UNKNOWN_WEIGHT = 0.02
# Status mix: about 90% published, the rest spread over the other states.
STATUSES = (("published", 0.90), ("draft", 0.03), ("closed", 0.025), ("sold", 0.03),
            ("pending_review", 0.01), ("rejected", 0.005))
SUSPENDED_VENDOR_SHARE = 0.02  # lapsed subscriptions: their published listings are hidden
DAY = 86400.0


def say(msg: str) -> None:
    print(f"generate: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- ids and helpers
def uuid7(ms: int, rng: random.Random) -> str:
    """A UUIDv7-like id: 48-bit Unix milliseconds, version 7, variant 10, seeded random bits."""
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | rng.getrandbits(12) << 64 \
        | 0b10 << 62 | rng.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timestamp(seconds: float) -> str:
    whole = int(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f".{int((seconds - whole) * 1e6):06d}+00"


def date_text(seconds: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(seconds))


def weighted(items, weights):
    """A picker: rng -> one of items with the given relative weights (bisect on cumulative)."""
    cumulative = list(accumulate(weights))
    total = cumulative[-1]
    return lambda rng: items[bisect(cumulative, rng.random() * total)]


def copy_text(value) -> str:
    """One COPY text-format field (vocabulary strings need no escaping; JSON might)."""
    if value is None:
        return "\\N"
    return value if isinstance(value, str) else str(value)


def json_field(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("\\", "\\\\")


# ---------------------------------------------------------------------------- psql
class Psql:
    def __init__(self, dsn: str, schema: str):
        self.dsn, self.schema = dsn, schema
        self.psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"

    def _cmd(self, *commands: str) -> list[str]:
        cmd = [self.psql, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.dsn,
               "-c", f"SET search_path = {self.schema}"]
        for c in commands:
            cmd += ["-c", c]
        return cmd

    def run(self, *commands: str) -> str:
        r = subprocess.run(self._cmd(*commands), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise SystemExit(f"psql failed: {r.stderr.strip()}\n  in: {commands}")
        return r.stdout

    def copy_in(self, table: str, columns, *, superuser: bool) -> subprocess.Popen:
        pre = ["SET session_replication_role = replica"] if superuser else []
        cols = ", ".join(columns)
        return subprocess.Popen(self._cmd(*pre, f"COPY {table} ({cols}) FROM STDIN"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def copy_rows(self, table: str, columns, lines, *, superuser: bool) -> None:
        proc = self.copy_in(table, columns, superuser=superuser)
        _, err = proc.communicate("".join(lines).encode())
        if proc.returncode != 0:
            raise SystemExit(f"COPY {table} failed: {err.decode().strip()}")


def read_categories(db: Psql) -> list[dict]:
    out = db.run("SELECT coalesce(json_agg(json_build_object('id', id, 'slug', slug, 'parent_id', parent_id, "
                 "'schema', attribute_schema, 'facets', to_json(facet_attributes)) ORDER BY position, slug), '[]') "
                 "FROM categories")
    categories = json.loads(out)
    if not categories:
        raise SystemExit("no categories: migrate the listings schema first")
    return categories


# ---------------------------------------------------------------------------- JSON Schema (the subset the categories use)
def schema_errors(schema: dict, value, path: str = "") -> list[str]:
    errors = []
    t = schema.get("type")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in enum")
    if t == "object":
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        props = schema.get("properties", {})
        errors += [f"{path}/{k}: required" for k in schema.get("required", []) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}/{k}: not allowed" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                errors += schema_errors(props[k], v, f"{path}/{k}")
    elif t == "string":
        if not isinstance(value, str):
            return [f"{path}: not a string"]
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 10**9):
            errors.append(f"{path}: length {len(value)}")
        if schema.get("format") == "date":
            try:
                dt.date.fromisoformat(value)
            except ValueError:
                errors.append(f"{path}: not a date")
    elif t in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (t == "integer" and not isinstance(value, int)):
            return [f"{path}: not {t}"]
        if value < schema.get("minimum", -math.inf) or value > schema.get("maximum", math.inf):
            errors.append(f"{path}: {value} out of range")
    elif t == "boolean" and not isinstance(value, bool):
        errors.append(f"{path}: not a boolean")
    elif t == "array":
        if not isinstance(value, list):
            return [f"{path}: not an array"]
        if schema.get("uniqueItems") and len(set(map(json.dumps, value))) != len(value):
            errors.append(f"{path}: duplicate items")
        for i, item in enumerate(value):
            errors += schema_errors(schema.get("items", {}), item, f"{path}/{i}")
    return errors


# ---------------------------------------------------------------------------- what listings say
def _pick(rng, seq):
    return seq[int(rng.random() * len(seq))]


def _animal_birth(rng, created: float, puppy_share: float) -> str:
    if rng.random() < puppy_share:
        age_days = rng.uniform(42, 140)  # 6-20 weeks: litters for sale
    else:
        age_days = rng.uniform(180, 8 * 365)
    return date_text(created - age_days * DAY)


def _round_price(major: float, step: int) -> int:
    return max(step, int(round(major / step)) * step) * 100


def _supplies_price(lo: int, hi: int, rng) -> int:
    return max(100, int(rng.uniform(lo, hi)) * 100 + _pick(rng, (99, 49, 0, 95, 50)))


def gen_dogs(rng, created, city):
    breed, base, colours = _pick(rng, V.DOG_BREEDS)
    sex = "male" if rng.random() < 0.5 else "female"
    attrs = {"breed": breed, "sex": sex, "birthDate": _animal_birth(rng, created, 0.8)}
    for key, p in (("pedigree", 0.7), ("vaccinated", 0.85), ("microchipped", 0.8)):
        if rng.random() < p:
            attrs[key] = rng.random() < 0.75
    colour = _pick(rng, colours)
    if rng.random() < 0.9:
        attrs["color"] = colour
    puppy = attrs["birthDate"] > date_text(created - 150 * DAY)
    kc = attrs.get("pedigree") is True
    title = _pick(rng, (
        f"{'KC registered ' if kc else ''}{breed} {'puppy' if puppy else 'dog'}, {sex}",
        f"{colour.capitalize()} {breed} {'puppies' if puppy else 'for rehoming'}",
        f"Beautiful {breed} {sex} {'pup' if puppy else 'adult'} in {city}",
        f"{breed} {'puppies' if puppy else 'dog'} from {_pick(rng, V.KENNEL_NAMES)}",
        f"{_pick(rng, V.TEMPERAMENTS).capitalize()} {colour} {breed}",
    ))
    sentences = [
        f"Our {_pick(rng, V.TEMPERAMENTS)} {colour} {breed} {'puppy' if puppy else 'dog'} is looking for a loving home.",
        f"Raised in our family home near {city} with children and other pets.",
        "Fully vaccinated and wormed, with a vet health check." if attrs.get("vaccinated") else "First vaccinations are booked with our vet.",
        "Microchipped and registered." if attrs.get("microchipped") else "Will be microchipped before leaving.",
        f"Both parents can be seen; mum is a {_pick(rng, V.TEMPERAMENTS)} {breed} with a lovely nature.",
        "Comes with a puppy pack: food, blanket, toys and four weeks of free insurance.",
        f"Bred by {_pick(rng, V.KENNEL_NAMES)}, a small kennel that places every pup with care.",
        "Crate trained and starting on house training.", "Good with cats and other dogs.",
        "Viewing welcome by appointment; a deposit secures your pup.",
    ]
    price = _round_price(base * rng.uniform(0.6, 1.6) * (1.25 if kc else 1.0), 50)
    return title, sentences, attrs, price, rng.randint(1, 8) if puppy else 1


def gen_cats(rng, created, city):
    breed, base, coat = _pick(rng, V.CAT_BREEDS)
    sex = "male" if rng.random() < 0.5 else "female"
    attrs = {"breed": breed, "sex": sex, "birthDate": _animal_birth(rng, created, 0.75), "coat": coat}
    for key, p in (("pedigree", 0.6), ("vaccinated", 0.85), ("neutered", 0.5)):
        if rng.random() < p:
            attrs[key] = rng.random() < 0.7
    colour = _pick(rng, V.CAT_COLOURS)
    kitten = attrs["birthDate"] > date_text(created - 150 * DAY)
    title = _pick(rng, (
        f"{breed} {'kitten' if kitten else 'cat'}, {colour}",
        f"{'GCCF registered ' if attrs.get('pedigree') else ''}{breed} {'kittens' if kitten else 'cat'} available",
        f"{colour.capitalize()} {breed} {sex} {'kitten' if kitten else 'cat'}",
        f"{breed} from {_pick(rng, V.KENNEL_NAMES)}",
    ))
    sentences = [
        f"A {_pick(rng, V.TEMPERAMENTS)} {colour} {breed} {'kitten' if kitten else 'cat'} with a {coat} coat.",
        "Litter trained and eating both wet and dry food.",
        "Vaccinated, wormed and flea treated." if attrs.get("vaccinated") else "First vaccination due next week.",
        f"Raised indoors in {city} around children and a friendly dog.",
        "Neutered and microchipped." if attrs.get("neutered") else "Sold on a neutering contract.",
        f"Parents are {_pick(rng, V.TEMPERAMENTS)} and can be seen; pedigree papers on request.",
        "Leaves with a kitten pack, a blanket that smells of mum and insurance cover.",
        "Loves climbing, chasing feathers and a cuddle in the evening.",
    ]
    price = _round_price(base * rng.uniform(0.6, 1.5), 25)
    return title, sentences, attrs, price, rng.randint(1, 6) if kitten else 1


def gen_birds(rng, created, city):
    species, base = _pick(rng, V.BIRD_SPECIES)
    attrs = {"species": species}
    if rng.random() < 0.8:
        attrs["sex"] = _pick(rng, ("male", "female", "unknown"))
    if rng.random() < 0.7:
        attrs["hatchDate"] = date_text(created - rng.uniform(60, 5 * 365) * DAY)
    if rng.random() < 0.7:
        attrs["ringed"] = rng.random() < 0.6
    pair = rng.random() < 0.3
    title = _pick(rng, (
        f"Hand-reared {species}{' pair' if pair else ''}",
        f"{species} {'pair' if pair else 'for sale'} in {city}",
        f"Young {species}, {'closed ringed' if attrs.get('ringed') else 'tame'}",
        f"{_pick(rng, V.TEMPERAMENTS).capitalize()} {species} looking for a home",
    ))
    sentences = [
        f"A {_pick(rng, V.TEMPERAMENTS)} {species} from our garden aviary near {city}.",
        "Hand-reared and used to being handled daily.", "Closed ringed with paperwork." if attrs.get("ringed") else "Not ringed.",
        "Eating a varied diet of seed, pellets, fruit and vegetables.",
        "Can be sold with its cage, toys and a bag of food.", "DNA sexed certificate available.",
        "Whistles and is starting to talk.",
    ]
    price = _round_price(base * rng.uniform(0.7, 1.4) * (1.8 if pair else 1.0), 5)
    return title, sentences, attrs, price, rng.randint(1, 6)


def gen_small(rng, created, city):
    species = _pick(rng, tuple(V.SMALL_ANIMAL_PRICES))
    name = V.SMALL_ANIMAL_NAMES[species]
    attrs = {"species": species}
    if rng.random() < 0.8:
        attrs["sex"] = _pick(rng, ("male", "female", "unknown"))
    if rng.random() < 0.7:
        attrs["birthDate"] = date_text(created - rng.uniform(40, 3 * 365) * DAY)
    kind = f"{_pick(rng, V.RABBIT_TYPES)} rabbit" if species == "rabbit" else name.lower()
    title = _pick(rng, (f"{kind.capitalize()} babies ready now", f"Friendly {kind} for sale in {city}",
                        f"{_pick(rng, V.TEMPERAMENTS).capitalize()} {kind}, hand-tamed", f"Pair of {kind}s"))
    sentences = [f"A {_pick(rng, V.TEMPERAMENTS)} {kind} used to being handled by children.",
                 "Comes with a starter bag of food and hay.", "Sexed by our vet.",
                 f"Collection from {city} or can meet halfway.", "Cage available separately if needed.",
                 "Eats fresh greens every day and loves a run in the garden."]
    price = _round_price(V.SMALL_ANIMAL_PRICES[species] * rng.uniform(0.6, 1.6), 5)
    return title, sentences, attrs, price, rng.randint(1, 8)


def _suitable(rng, base: tuple[str, ...]) -> list[str]:
    chosen = list(base) if rng.random() < 0.8 else [base[0]]
    return sorted(set(chosen))


def gen_supplies(rng, created, city):
    item, (lo, hi), suits = _pick(rng, V.SUPPLY_ITEMS)
    brand = _pick(rng, V.SUPPLY_BRANDS)
    condition = "new" if rng.random() < 0.65 else "used"
    attrs = {"condition": condition}
    if rng.random() < 0.85:
        attrs["brand"] = brand
    if rng.random() < 0.85:
        attrs["suitableFor"] = _suitable(rng, suits)
    title = _pick(rng, (f"{brand} {item}{' (used)' if condition == 'used' else ''}",
                        f"{item.capitalize()} by {brand}, {condition}", f"{'Brand new' if condition == 'new' else 'Pre-loved'} {item}"))
    sentences = [f"{'Brand new in its box' if condition == 'new' else 'Used but in very good condition'}: a {brand} {item}.",
                 "Machine washable and easy to clean.", f"Collection from {city} or posted at cost.",
                 "Smoke-free, pet-friendly home.", "Great quality, sturdy and well made.",
                 "Selling because our pet outgrew it."]
    return title, sentences, attrs, _supplies_price(lo, hi, rng), rng.randint(1, 10)


def gen_food(rng, created, city):
    item, suits = _pick(rng, V.FOOD_ITEMS)
    brand = _pick(rng, V.FOOD_BRANDS)
    weight = _pick(rng, (0.4, 0.8, 1.5, 2, 2.5, 3, 4, 6, 7.5, 10, 12, 15, 20))
    attrs = {"condition": "new", "weightKg": weight,
             "bestBefore": date_text(created + rng.uniform(60, 720) * DAY)}
    if rng.random() < 0.95:
        attrs["brand"] = brand
    if rng.random() < 0.9:
        attrs["suitableFor"] = _suitable(rng, suits)
    title = _pick(rng, (f"{brand} {item} {weight:g} kg", f"{item.capitalize()}, {brand}, {weight:g}kg bag",
                        f"{weight:g} kg {brand} {item} (sealed)"))
    sentences = [f"Sealed {weight:g} kg bag of {brand} {item}.", "Bought too much, unopened and well in date.",
                 "Complete and balanced nutrition.", f"Can deliver locally around {city}.",
                 "Multi-buy discount available.", "Recipe with real chicken, rice and vegetables; no artificial colours."]
    price = max(100, int(weight * rng.uniform(2.5, 9) * 100) // 10 * 10 + 9)
    return title, sentences, attrs, price, rng.randint(1, 10)


def gen_cages(rng, created, city):
    item, suits = _pick(rng, V.CAGE_ITEMS)
    brand = _pick(rng, V.CAGE_BRANDS)
    condition = "new" if rng.random() < 0.5 else "used"
    attrs = {"condition": condition}
    if rng.random() < 0.85:
        attrs["brand"] = brand
    if rng.random() < 0.85:
        attrs["suitableFor"] = _suitable(rng, suits)
    if rng.random() < 0.8:
        attrs["widthCm"] = rng.randint(30, 180)
    width = f" {attrs['widthCm']} cm" if "widthCm" in attrs else ""
    title = _pick(rng, (f"{brand} {item}{width}", f"{item.capitalize()} ({condition}){width}",
                        f"Large {item} by {brand}"))
    sentences = [f"{brand} {item}, {'never used' if condition == 'new' else 'used for a few months'}.",
                 "Folds flat for storage and travel.", "Secure double-door design with a removable tray.",
                 f"Collection only from {city}.", "Clean, disinfected and ready to use."]
    return title, sentences, attrs, _supplies_price(20, 400, rng), rng.randint(1, 10)


def _generic_value(rng, name: str, schema: dict, created: float):
    if "enum" in schema:
        return _pick(rng, schema["enum"])
    t = schema.get("type")
    if t == "boolean":
        return rng.random() < 0.5
    if t in ("number", "integer"):
        lo, hi = schema.get("minimum", 0), schema.get("maximum", 100)
        return rng.randint(int(math.ceil(lo)), int(hi)) if t == "integer" else round(rng.uniform(lo, hi), 1)
    if t == "array":
        items = schema.get("items", {}).get("enum") or ["a", "b"]
        return sorted(set(rng.sample(list(items), rng.randint(1, min(2, len(items))))))
    if schema.get("format") == "date":
        return date_text(created - rng.uniform(30, 700) * DAY)
    return f"{name} {_pick(rng, V.TEMPERAMENTS)}"[: schema.get("maxLength", 80)]


def make_generic(category: dict):
    """For a category the generator has no vocabulary for: attributes from its schema alone."""
    schema, name = category["schema"], category["slug"].replace("-", " ")

    def gen(rng, created, city):
        props, required = schema.get("properties", {}), set(schema.get("required", []))
        attrs = {k: _generic_value(rng, k, s, created) for k, s in props.items()
                 if k in required or rng.random() < 0.6}
        title = f"{_pick(rng, V.TEMPERAMENTS).capitalize()} {name} in {city}"
        sentences = [f"Offered in {city}.", "Good condition.", "Message for details.", "Collection or delivery."]
        return title, sentences, attrs, rng.randint(5, 500) * 100, rng.randint(1, 10)
    return gen


GENERATORS = {"dogs": gen_dogs, "cats": gen_cats, "birds": gen_birds, "small-animals": gen_small,
              "pet-supplies": gen_supplies, "pet-food": gen_food, "cages-and-carriers": gen_cages}


# ---------------------------------------------------------------------------- vendors
def make_vendors(seed: int, n: int, anchor: float) -> list[dict]:
    rng = random.Random(f"{seed}/vendors")
    start = anchor - 3 * 365 * DAY
    times = sorted(rng.uniform(start, anchor - 366 * DAY) for _ in range(n))
    vendors = []
    for t in times:
        first, last = _pick(rng, V.FIRST_NAMES), _pick(rng, V.LAST_NAMES)
        roll = rng.random()
        if roll < 0.12:
            rating, count = None, 0
        else:
            rating = round(min(5.0, max(1.0, rng.triangular(1.0, 5.0, 4.7))), 2)
            count = int(rng.paretovariate(1.2) * 3)
        business = None if rng.random() < 0.1 else (
            f"{last} {_pick(rng, V.BUSINESS_SUFFIXES)}" if rng.random() < 0.6
            else f"{_pick(rng, V.KENNEL_NAMES)} {_pick(rng, V.BUSINESS_SUFFIXES)}")
        vendors.append({"id": uuid7(int(t * 1000), rng), "display_name": f"{first} {last}",
                        "business_name": business, "rating": rating, "rating_count": count,
                        "created": t, "suspended": rng.random() < SUSPENDED_VENDOR_SHARE})
    return vendors


def vendor_lines(vendors: list[dict], anchor: float):
    users, rows, entitlements = [], [], []
    for v in vendors:
        created = timestamp(v["created"])
        users.append(f"{v['id']}\t{v['display_name']}\t{{vendor}}\tactive\t{created}\n")
        rating = copy_text(None if v["rating"] is None else f"{v['rating']:.2f}")
        rows.append(f"{v['id']}\t{copy_text(v['business_name'])}\t{rating}\t{v['rating_count']}\t{created}\n")
        ok = "f" if v["suspended"] else "t"
        # A vendor whose subscription lapsed: its published listings are hidden (subscription_inactive).
        status = "canceled" if v["suspended"] else "active"
        entitlements.append(f"{v['id']}\t{ok}\t{ok}\t1000000\t500\t{status}\t{'subscription_canceled' if v['suspended'] else 'subscribed'}"
                            f"\t{created}\t1\t{timestamp(anchor - DAY)}\n")
    return users, rows, entitlements


# ---------------------------------------------------------------------------- listings
class Plan:
    """Everything a worker needs to generate any chunk; chunk i depends only on (seed, i)."""

    def __init__(self, seed: int, count: int, anchor: float, categories: list[dict], vendors: list[dict]):
        self.seed, self.count, self.anchor = seed, count, anchor
        self.start = anchor - 365 * DAY
        self.chunks = max(1, math.ceil(count / CHUNK))
        known = [c for c in categories if c["slug"] in GENERATORS]
        self.unknown = [c["slug"] for c in categories if c["slug"] not in GENERATORS]
        cats = known + [c for c in categories if c["slug"] not in GENERATORS]
        self.categories = {c["slug"]: c for c in cats}
        self.generators = {c["slug"]: GENERATORS.get(c["slug"]) or make_generic(c) for c in cats}
        self.pick_category = weighted([c["slug"] for c in cats],
                                      [CATEGORY_WEIGHTS.get(c["slug"], UNKNOWN_WEIGHT) for c in cats])
        # Vendor popularity is skewed (a few big shops, many hobby breeders); order shuffled by seed.
        order = list(range(len(vendors)))
        random.Random(f"{seed}/vendor-order").shuffle(order)
        self.vendors = [(vendors[i]["id"], vendors[i]["suspended"]) for i in order]
        self.pick_vendor = weighted(self.vendors, [1.0 / (rank + 5) ** 0.9 for rank in range(len(order))])
        by_country: dict[str, list] = {}
        for city in V.CITIES:
            by_country.setdefault(city[1], []).append(city)
        cities, weights = [], []
        for country, share in V.COUNTRY_WEIGHTS.items():
            ranked = by_country[country]
            norm = sum(1.0 / (r + 2) for r in range(len(ranked)))
            for r, city in enumerate(ranked):
                cities.append(city)
                weights.append(share / (r + 2) / norm)
        self.pick_city = weighted(cities, weights)
        self.pick_status = weighted([s for s, _ in STATUSES], [w for _, w in STATUSES])
        self.validate_every = 1 if count <= 50_000 else 50

    def chunk(self, index: int) -> tuple[bytes, int, dict]:
        rng = random.Random(f"{self.seed}/chunk/{index}")
        n = min(CHUNK, self.count - index * CHUNK)
        span = (self.anchor - 3600 - self.start) / self.chunks
        lo = self.start + index * span
        times = sorted(rng.uniform(lo, lo + span) for _ in range(n))
        out, invalid, stats = [], 0, {}
        for i, created in enumerate(times):
            slug = self.pick_category(rng)
            category = self.categories[slug]
            city, country, region, lat, lon = self.pick_city(rng)
            title, sentences, attrs, price, quantity = self.generators[slug](rng, created, city)
            if i % self.validate_every == 0 and schema_errors(category["schema"], attrs):
                invalid += 1
                continue
            lid = uuid7(int(created * 1000), rng)
            vendor_id, suspended = self.pick_vendor(rng)
            k = rng.randint(3, min(6, len(sentences)))
            description = " ".join(rng.sample(sentences, k))
            status = self.pick_status(rng)
            hidden = "subscription_inactive" if suspended and status == "published" else None
            available = quantity if status != "published" else rng.randint(1, quantity)
            if status == "sold":
                available = 0
            n_media = bisect((0.08, 0.3, 0.55, 0.75, 0.9), rng.random())
            media = [{"url": f"https://media.marketplace.example/listings/{lid}/{m + 1}.jpg",
                      **({"alt": title} if m == 0 and rng.random() < 0.5 else {})} for m in range(n_media)]
            submitted = published = None
            if status != "draft":
                submitted = created + rng.uniform(60, DAY)
            if status in ("published", "closed", "sold"):
                published = min(submitted + rng.uniform(30, 2 * DAY), self.anchor - 60)
            updated = max(t for t in (created, submitted, published) if t is not None)
            if status in ("closed", "sold"):
                updated = min(updated + rng.uniform(DAY, 60 * DAY), self.anchor - 30)
            currency = "GBP" if country == "GB" else "EUR"
            jitter = 0.05 if rng.random() < 0.8 else 0.2  # a suburb, sometimes a nearby village
            fields = (lid, vendor_id, category["id"], status, hidden, title, description, json_field(attrs),
                      price, currency, quantity, available, f"{lat + rng.uniform(-jitter, jitter):.5f}",
                      f"{lon + rng.uniform(-jitter, jitter) * 1.6:.5f}", city, region, country, json_field(media),
                      "Photos do not show the animal offered" if status == "rejected" else None,
                      1 + (status != "draft") + (status in ("closed", "sold")), timestamp(created),
                      timestamp(updated), submitted and timestamp(submitted), published and timestamp(published),
                      published and timestamp(published))
            out.append("\t".join(copy_text(f) for f in fields) + "\n")
            stats[status] = stats.get(status, 0) + 1
            if hidden:
                stats["hidden"] = stats.get("hidden", 0) + 1
        return "".join(out).encode(), invalid, stats


_PLAN: Plan | None = None


def _worker_chunk(index: int):
    return _PLAN.chunk(index)


# ---------------------------------------------------------------------------- main
def secondary_indexes(db: Psql, schema: str) -> list[tuple[str, str]]:
    out = db.run(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
        "AND i.tablename = 'listings' AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
        "WHERE c.conname = i.indexname AND c.connamespace = current_schema()::regnamespace) ORDER BY 1")
    return [tuple(line.split("|", 1)) for line in out.splitlines() if line]


def is_superuser(db: Psql) -> bool:
    return db.run("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").strip() == "t"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dsn", required=True, help="libpq URI; a superuser's makes the load faster")
    p.add_argument("--count", type=int, default=1_000_000)
    p.add_argument("--vendors", type=int, default=None, help="default count/200 (at least 5)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--schema", default="listings")
    p.add_argument("--anchor", default=None, help="YYYY-MM-DD the data ends at (default: today, UTC)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="generator processes")
    p.add_argument("--replace", action="store_true",
                   help="first delete what an earlier run with the same seed and vendor count created")
    p.add_argument("--keep-indexes", action="store_true", help="load with the indexes in place")
    args = p.parse_args()

    anchor_date = dt.date.fromisoformat(args.anchor) if args.anchor else dt.datetime.now(dt.timezone.utc).date()
    anchor = dt.datetime.combine(anchor_date, dt.time(), dt.timezone.utc).timestamp()
    n_vendors = args.vendors or max(5, args.count // 200)
    db = Psql(args.dsn, args.schema)
    superuser = is_superuser(db)
    categories = read_categories(db)
    vendors = make_vendors(args.seed, n_vendors, anchor)
    global _PLAN
    _PLAN = plan = Plan(args.seed, args.count, anchor, categories, vendors)
    if plan.unknown:
        say(f"categories without vocabulary (attributes from their schema only): {', '.join(plan.unknown)}")

    if args.replace:
        ids = "'{" + ",".join(v["id"] for v in vendors) + "}'::uuid[]"
        db.run(f"DELETE FROM stock_reservations WHERE listing_id IN (SELECT id FROM listings WHERE vendor_id = ANY({ids}))",
               f"DELETE FROM listings WHERE vendor_id = ANY({ids})", f"DELETE FROM entitlements WHERE vendor_id = ANY({ids})",
               f"DELETE FROM vendors WHERE id = ANY({ids})", f"DELETE FROM users WHERE id = ANY({ids})")

    t0 = time.monotonic()
    users, vendor_rows, entitlements = vendor_lines(vendors, anchor)
    db.copy_rows("users", ("id", "display_name", "roles", "status", "updated_at"), users, superuser=superuser)
    db.copy_rows("vendors", ("id", "business_name", "rating_average", "rating_count", "updated_at"), vendor_rows,
                 superuser=superuser)
    db.copy_rows("entitlements", ("vendor_id", "may_publish", "may_list", "listing_quota", "commission_bps",
                                  "subscription_status", "reason", "effective_at", "version", "updated_at"),
                 entitlements, superuser=superuser)

    dropped = [] if args.keep_indexes else secondary_indexes(db, args.schema)
    if dropped:
        db.run(*(f"DROP INDEX {name}" for name, _ in dropped))

    copy = db.copy_in("listings", LISTING_COLUMNS, superuser=superuser)
    invalid, stats, written = 0, {}, 0
    jobs = max(1, min(args.jobs, plan.chunks))
    pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None
    try:
        chunks = pool.imap(_worker_chunk, range(plan.chunks)) if pool else map(_worker_chunk, range(plan.chunks))
        for data, bad, s in chunks:
            copy.stdin.write(data)
            written += len(data)
            invalid += bad
            for k, v in s.items():
                stats[k] = stats.get(k, 0) + v
    finally:
        if pool:
            pool.close()
            pool.join()
    copy.stdin.close()
    err = copy.stderr.read().decode()
    if copy.wait() != 0:
        raise SystemExit(f"COPY listings failed: {err.strip()}")
    load_s = time.monotonic() - t0
    rows = sum(v for k, v in stats.items() if k != "hidden")
    say(f"generated and copied {rows:,} listings ({written / 1e6:,.0f} MB of COPY text) and {n_vendors:,} vendors "
        f"in {load_s:.1f} s ({rows / load_s:,.0f} rows/s, {jobs} generator processes)")
    if invalid:
        raise SystemExit(f"{invalid} generated listings broke their category's schema (dropped); fix the generator")

    t1 = time.monotonic()
    for name, definition in dropped:
        db.run("SET maintenance_work_mem = '1GB'", definition)
    t2 = time.monotonic()
    db.run("ANALYZE users", "ANALYZE vendors", "ANALYZE entitlements", "ANALYZE categories", "ANALYZE listings",
           "NOTIFY listings_changed, '*'")
    t3 = time.monotonic()
    say(f"rebuilt {len(dropped)} listings indexes in {t2 - t1:.1f} s, ANALYZE in {t3 - t2:.1f} s")
    summary = {"listings": rows, "vendors": n_vendors, "byStatus": stats, "seed": args.seed,
               "anchor": anchor_date.isoformat(), "loadSeconds": round(load_s, 2),
               "indexSeconds": round(t2 - t1, 2), "analyzeSeconds": round(t3 - t2, 2), "copyBytes": written,
               "jobs": jobs}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
