"""Checks a search implementation's answers against the request that produced them.

check_answers(base_url, paths, categories) -> (checked, problems): each sampled request must be
200 with the API.md shape, and what came back must satisfy what was asked (category subtree,
price bounds, currency, attributes, radius, vendor, rating, sort order, limit, requested facets);
the first page's nextCursor must lead to a page without repeats. Stdlib only."""
from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, urlsplit

ITEM_KEYS = {"id", "title", "price", "category", "attributes", "location", "distanceKm", "vendor", "image",
             "publishedAt"}
SORT_KEYS = {"newest": (lambda i: dt.datetime.fromisoformat(i["publishedAt"]), True), "price_asc": (lambda i: i["price"]["amount"], False),
             "price_desc": (lambda i: i["price"]["amount"], True), "distance": (lambda i: i["distanceKm"], False)}


def get(url: str, timeout: float = 60) -> tuple[int, dict | None]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, None


def subtree(categories: list[dict], slug: str) -> set[str]:
    ids = {c["id"] for c in categories if c["slug"] == slug}
    grown = True
    while grown:
        more = {c["id"] for c in categories if c["parent_id"] in ids}
        grown = not more <= ids
        ids |= more
    return {c["slug"] for c in categories if c["id"] in ids}


def _matches(value, wanted: str) -> bool:
    if isinstance(value, list):
        return wanted in value
    if isinstance(value, bool):
        return str(value).lower() == wanted
    if isinstance(value, (int, float)):
        return float(value) == float(wanted)
    return value == wanted


def check_one(base: str, path: str, categories: list[dict]) -> list[str]:
    status, body = get(base + path)
    if status != 200 or body is None:
        return [f"{path}: status {status}"]
    problems = []
    params = parse_qsl(urlsplit(path).query)
    single = dict(params)
    items = body.get("items")
    if not isinstance(items, list) or not isinstance(body.get("facets"), dict) or "totalEstimate" not in body \
            or "nextCursor" not in body:
        return [f"{path}: answer lacks items/facets/totalEstimate/nextCursor"]
    if len(items) > int(single.get("limit", 20)):
        problems.append(f"{path}: {len(items)} items over the limit")
    if body["totalEstimate"] < len(items):
        problems.append(f"{path}: totalEstimate {body['totalEstimate']} < {len(items)} items")
    allowed = subtree(categories, single["category"]) if "category" in single else None
    for item in items:
        where = f"{path}: item {item.get('id')}"
        if set(item) != ITEM_KEYS:
            problems.append(f"{where}: keys {sorted(set(item) ^ ITEM_KEYS)} differ")
            continue
        if allowed is not None and item["category"] not in allowed:
            problems.append(f"{where}: category {item['category']} outside {single['category']}")
        amount = item["price"]["amount"]
        if "priceMin" in single and amount < int(single["priceMin"]) or \
                "priceMax" in single and amount > int(single["priceMax"]):
            problems.append(f"{where}: price {amount} outside the bounds")
        if "currency" in single and item["price"]["currency"] != single["currency"]:
            problems.append(f"{where}: currency {item['price']['currency']}")
        if "vendor" in single and item["vendor"]["id"] != single["vendor"]:
            problems.append(f"{where}: another vendor")
        if "minRating" in single and (item["vendor"]["rating"] is None
                                      or item["vendor"]["rating"] < float(single["minRating"])):
            problems.append(f"{where}: vendor rating {item['vendor']['rating']}")
        if "near" in single:
            radius = float(single.get("radiusKm", 50))
            if item["distanceKm"] is None or item["distanceKm"] > radius + 0.01:
                problems.append(f"{where}: distance {item['distanceKm']} beyond {radius} km")
        elif item["distanceKm"] is not None:
            problems.append(f"{where}: distanceKm without near")
        attrs = item["attributes"]
        for key in {k for k, _ in params if k.startswith("attr.")}:
            name, _, bound = key[5:].partition(".")
            value = attrs.get(name)
            if bound:
                limit = single[key]
                v = value if isinstance(value, str) else (None if value is None else float(value))
                lim = limit if isinstance(value, str) else float(limit)
                if v is None or (bound == "min" and v < lim) or (bound == "max" and v > lim):
                    problems.append(f"{where}: {name}={value!r} outside {bound} {limit}")
            elif not any(_matches(value, w) for k, w in params if k == key):
                problems.append(f"{where}: {name}={value!r} not asked for")
    sort = single.get("sort") or ("relevance" if "q" in single else "newest")
    if sort in SORT_KEYS:
        key, descending = SORT_KEYS[sort]
        keys = [key(i) for i in items if set(i) == ITEM_KEYS]
        if keys != sorted(keys, reverse=descending):
            problems.append(f"{path}: not sorted by {sort}")
    for name in (single.get("facets") or "").split(","):
        if name and name not in body["facets"]:
            problems.append(f"{path}: facet {name} missing")
    if body["nextCursor"]:
        sep = "&" if "?" in path else "?"
        status, nxt = get(f"{base}{path}{sep}cursor={body['nextCursor']}")
        if status != 200 or nxt is None:
            problems.append(f"{path}: next page status {status}")
        elif {i["id"] for i in nxt["items"]} & {i["id"] for i in items}:
            problems.append(f"{path}: next page repeats items")
    return problems


def check_answers(base: str, paths: list[str], categories: list[dict], sample: int = 60) -> tuple[int, list[str]]:
    step = max(1, len(paths) // sample)
    chosen = paths[::step][:sample]
    problems = []
    for path in chosen:
        problems += check_one(base, path, categories)
    # Unknown parameters and attributes must be refused, not ignored.
    for bad in ("/v1/listings?colour=black", "/v1/listings?category=dogs&attr.wingspan=3"):
        status, _ = get(base + bad)
        if status != 422:
            problems.append(f"{bad}: status {status}, not 422")
    return len(chosen) + 2, problems
