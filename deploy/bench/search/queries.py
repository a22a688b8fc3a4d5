#!/usr/bin/env python3
"""A fixed mix of search requests (`/v1/listings?...`, one a line) for mixed.lua.

    queries.py --dsn DSN [--schema listings] [--count 500] [--seed 20261204] [--output FILE]

Drawn from the generator's vocabulary (vocabulary.py), the categories of the database (slugs,
subcategories, facet attributes) and its busiest vendors, so same data + same seed -> same list.
Weighted roughly like marketplace traffic: most requests browse a category and/or search words,
about half ask for facets, every sort appears (relevance only with q, distance only with near).
"""
from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
from pathlib import Path
from urllib.parse import quote, urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import vocabulary as V  # noqa: E402
from generate import DEFAULT_SEED, Psql, read_categories, weighted  # noqa: E402

# Words buyers type: whole words, two-word phrases, prefixes (the last word is prefix-matched),
# accented and unaccented spellings of the same word.
SINGLE_WORDS = ("labrador", "spaniel", "cockapoo", "chihuahua", "dachshund", "retriever", "husky", "poodle",
                "ragdoll", "bengal", "maine", "persian", "sphynx", "budgie", "cockatiel", "parrot", "canary",
                "rabbit", "hamster", "chinchilla", "harness", "crate", "carrier", "kibble", "treats", "hutch",
                "puppies", "kitten", "pedigree", "vaccinated", "microchipped", "pair", "tame", "lead", "bed")
PHRASES = ("french bulldog", "golden retriever", "cocker spaniel", "border collie", "british shorthair",
           "maine coon", "african grey", "cat tree", "dog crate", "puppy food", "kc registered",
           "hand reared", "netherland dwarf", "royal canin", "lily's kitchen", "fox red labrador",
           "blue merle", "mini lop")
PREFIXES = ("lab", "retriev", "cocka", "spani", "kitt", "pupp", "parr", "bulld", "schnau", "chihua",
            "rag", "cockat", "guinea pi", "french bull", "golden retr", "maine co")
ACCENTED = ("café au lait", "cafe au lait", "montréal", "montreal", "bichon frisé", "bichon frise",
            "sacré de birmanie", "sacre birmanie", "chartreux", "crème brûlée", "creme brulee", "münchen",
            "munchen", "málaga", "malaga", "nîmes", "nimes", "zürichsee")
PRICE_BANDS = {  # minor units, per root category
    "dogs": ((50000, 100000), (100000, 200000), (None, 80000), (150000, None)),
    "cats": ((30000, 80000), (None, 50000), (80000, None)),
    "birds": ((None, 10000), (5000, 50000), (50000, None)),
    "small-animals": ((None, 3000), (2000, 8000)),
    "pet-supplies": ((None, 2000), (1000, 5000), (5000, 20000)),
    "pet-food": ((None, 1500), (1000, 5000)),
    "cages-and-carriers": ((None, 5000), (5000, 20000)),
}


def attribute_values(slug: str) -> dict[str, list]:
    """Values each facet attribute of a category takes in the generated data."""
    if slug == "dogs":
        colours = sorted({c for _, _, cs in V.DOG_BREEDS for c in cs})
        return {"breed": [b for b, _, _ in V.DOG_BREEDS], "sex": ["male", "female"], "color": colours,
                "pedigree": ["true", "false"], "vaccinated": ["true", "false"], "microchipped": ["true", "false"]}
    if slug == "cats":
        return {"breed": [b for b, _, _ in V.CAT_BREEDS], "sex": ["male", "female"],
                "coat": ["short", "medium", "long", "hairless"], "pedigree": ["true", "false"],
                "neutered": ["true", "false"]}
    if slug == "birds":
        return {"species": [s for s, _ in V.BIRD_SPECIES], "sex": ["male", "female", "unknown"],
                "ringed": ["true", "false"]}
    if slug == "small-animals":
        return {"species": list(V.SMALL_ANIMAL_PRICES), "sex": ["male", "female", "unknown"]}
    if slug == "pet-food":
        return {"brand": list(V.FOOD_BRANDS), "suitableFor": ["dogs", "cats", "birds", "small-animals"]}
    if slug == "cages-and-carriers":
        return {"brand": list(V.CAGE_BRANDS), "condition": ["new", "used"],
                "suitableFor": ["dogs", "cats", "birds", "small-animals"]}
    if slug == "pet-supplies":
        return {"brand": list(V.SUPPLY_BRANDS), "condition": ["new", "used"],
                "suitableFor": ["dogs", "cats", "birds", "small-animals"]}
    return {}


# Range attributes: (category, attribute, pick(rng, anchor) -> {"min": ..} / {"max": ..} / both)
def _date(anchor: dt.date, days: float) -> str:
    return (anchor - dt.timedelta(days=int(days))).isoformat()


RANGES = (
    ("dogs", "birthDate", lambda r, a: {"min": _date(a, r.choice((90, 120, 180)))}),  # puppies
    ("dogs", "birthDate", lambda r, a: {"max": _date(a, r.choice((365, 730)))}),  # adult dogs
    ("cats", "birthDate", lambda r, a: {"min": _date(a, r.choice((100, 150)))}),
    ("cats", "birthDate", lambda r, a: {"min": _date(a, 5 * 365), "max": _date(a, 365)}),
    ("birds", "hatchDate", lambda r, a: {"min": _date(a, r.choice((365, 730)))}),
    ("pet-food", "weightKg", lambda r, a: {"min": r.choice((2, 5, 10))}),
    ("pet-food", "weightKg", lambda r, a: {"min": 1, "max": r.choice((3, 5))}),
    ("pet-food", "bestBefore", lambda r, a: {"min": _date(a, -r.choice((180, 365)))}),
    ("cages-and-carriers", "widthCm", lambda r, a: {"min": r.choice((60, 90, 120))}),
    ("cages-and-carriers", "widthCm", lambda r, a: {"max": r.choice((50, 70))}),
)


def build(rng: random.Random, categories: list[dict], vendors: list[str], anchor: dt.date, n: int) -> list[str]:
    slugs = [c["slug"] for c in categories]
    facets_of = {c["slug"]: list(c["facets"] or []) for c in categories}
    parent_of = {c["id"]: c["parent_id"] for c in categories}
    by_id = {c["id"]: c["slug"] for c in categories}
    parents = {c["slug"] for c in categories if any(parent_of.get(o["id"]) == c["id"] for o in categories)}
    root_of = {}
    for c in categories:
        cid = c["id"]
        while parent_of.get(cid):
            cid = parent_of[cid]
        root_of[c["slug"]] = by_id[cid]
    pick_category = weighted(slugs, [{"dogs": 10, "cats": 6, "birds": 2, "small-animals": 2, "pet-supplies": 3,
                                      "pet-food": 2, "cages-and-carriers": 1}.get(s, 1) for s in slugs])
    cities = [c for c in V.CITIES]
    pick_city = weighted(cities, [V.COUNTRY_WEIGHTS[c[1]] / (1 + i % 20) for i, c in enumerate(cities)])

    def words() -> str:
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(SINGLE_WORDS)
        if roll < 0.6:
            return rng.choice(PHRASES)
        if roll < 0.85:
            return rng.choice(PREFIXES)
        return rng.choice(ACCENTED)

    def category_words(slug: str) -> str:
        """Words that belong to the category: a breed, species or brand, whole or cut short."""
        values = attribute_values(slug)
        names = values.get("breed") or values.get("species") or values.get("brand") or []
        if not names:
            return words()
        text = rng.choice(names).lower().replace("-", " ")
        return text[: max(3, int(len(text) * rng.uniform(0.5, 1)))].strip() if rng.random() < 0.3 else text

    def facets(slug: str | None) -> str:
        names = ["category"] if slug is None or slug in parents or rng.random() < 0.5 else []
        if slug:
            attrs = facets_of.get(slug, [])
            names += [f"attr.{a}" for a in rng.sample(attrs, min(len(attrs), rng.randint(1, 3)))]
        return ",".join(names or ["category"])

    paths = []
    kinds = weighted(("browse", "text", "text_in_category", "range", "geo", "vendor", "rating", "price", "kitchen_sink"),
                     (24, 14, 16, 9, 11, 5, 5, 5, 11))
    while len(paths) < n:
        kind = kinds(rng)
        p: list[tuple[str, str]] = []
        slug = None
        has_q = has_near = False
        if kind in ("browse", "text_in_category", "rating", "kitchen_sink") or (kind == "geo" and rng.random() < 0.5):
            slug = pick_category(rng)
            p.append(("category", slug))
        if kind in ("text", "text_in_category", "kitchen_sink"):
            p.append(("q", words() if kind == "text" or rng.random() < 0.3 else category_words(slug)))
            has_q = True
        if kind == "browse" and slug:
            values = attribute_values(slug)
            facet_attrs = [a for a in facets_of.get(slug, []) if a in values]
            if facet_attrs and rng.random() < 0.6:
                name = rng.choice(facet_attrs)
                for v in rng.sample(values[name], min(len(values[name]), 1 if rng.random() < 0.7 else 2)):
                    p.append((f"attr.{name}", v))  # a repeated name is an OR
            if rng.random() < 0.35:
                lo, hi = rng.choice(PRICE_BANDS.get(root_of[slug], ((None, 10000),)))
                p += [("priceMin", str(lo))] if lo else []
                p += [("priceMax", str(hi))] if hi else []
        if kind == "range":
            cat, name, pick = rng.choice(RANGES)
            slug = cat
            p.append(("category", cat))
            for bound, value in pick(rng, anchor).items():
                p.append((f"attr.{name}.{bound}", str(value)))
        if kind == "price":
            slug = pick_category(rng) if rng.random() < 0.6 else None
            if slug:
                p.append(("category", slug))
            lo, hi = rng.choice(PRICE_BANDS.get(root_of.get(slug, "dogs"), ((None, 10000),)))
            p += [("priceMin", str(lo))] if lo else []
            p += [("priceMax", str(hi))] if hi else []
            p.append(("currency", "GBP" if rng.random() < 0.8 else "EUR"))
        if kind in ("geo", "kitchen_sink") and (kind == "geo" or rng.random() < 0.5):
            name, country, _, lat, lon = pick_city(rng)
            p.append(("near", f"{lat:.4f},{lon:.4f}"))
            if rng.random() < 0.7:
                p.append(("radiusKm", str(rng.choice((5, 10, 25, 50, 100, 200)))))
            has_near = True
        if kind == "vendor":
            p.append(("vendor", rng.choice(vendors)))
        if kind in ("rating", "kitchen_sink") and (kind == "rating" or rng.random() < 0.3):
            p.append(("minRating", rng.choice(("3", "3.5", "4", "4.5"))))
        if rng.random() < (0.7 if kind in ("browse", "kitchen_sink") else 0.35):
            p.append(("facets", facets(slug)))
        sorts = ["newest", "price_asc", "price_desc"] + (["relevance"] * 3 if has_q else []) \
            + (["distance"] * 3 if has_near else [])
        if rng.random() < 0.5:
            p.append(("sort", rng.choice(sorts)))  # otherwise the default (relevance with q, else newest)
        roll = rng.random()
        if roll < 0.1:
            p.append(("limit", "50"))
        elif roll < 0.15:
            p.append(("limit", "100"))
        paths.append("/v1/listings?" + urlencode(p, quote_via=quote, safe=","))
    return paths


def busiest_vendors(db: Psql, n: int = 40) -> list[str]:
    out = db.run("SELECT vendor_id FROM listings WHERE status = 'published' AND hidden_reason IS NULL "
                 f"GROUP BY vendor_id ORDER BY count(*) DESC, vendor_id LIMIT {n}")
    return out.split()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dsn", required=True)
    p.add_argument("--schema", default="listings")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--anchor", default=None, help="the generator's anchor date (default: today, UTC)")
    p.add_argument("--output", type=Path, default=None, help="default: stdout")
    args = p.parse_args()
    db = Psql(args.dsn, args.schema)
    anchor = dt.date.fromisoformat(args.anchor) if args.anchor else dt.datetime.now(dt.timezone.utc).date()
    paths = build(random.Random(f"{args.seed}/queries"), read_categories(db), busiest_vendors(db), anchor, args.count)
    text = "\n".join(paths) + "\n"
    if args.output:
        args.output.write_text(text)
        print(f"queries: {len(paths)} requests in {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
