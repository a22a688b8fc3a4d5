"""Keyset pagination for every sort: ORDER BY (key, id) and a cursor holding the last row's
(key, id). DRF's CursorPagination keys on one field and falls back to offsets on ties, and cannot
order by an annotation such as rank or distance: hence this small class in its spirit."""
import base64
import datetime as dt
import hashlib
import json

from django.db.models import F, FloatField, Q, Value
from django.db.models.functions import Cast
from rest_framework.pagination import BasePagination

from .errors import InvalidParameter

# sort -> (field or annotation, descending, annotation it needs)
SORTS = {
    "relevance": ("rank", True, "rank"),
    "newest": ("published_at", True, None),
    "price_asc": ("price_amount", False, None),
    "price_desc": ("price_amount", True, None),
    "distance": ("distance_m", False, "distance_m"),
}
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class RealField(FloatField):
    """ts_rank() is a float4: the cursor's rank must be compared as one, or the row it came from
    (0.06079269945... as a double) sorts below its own cursor (0.0607927) and repeats."""
    def db_type(self, connection):
        return "real"


def filter_fingerprint(params) -> str:
    """The search a cursor belongs to: every parameter but the cursor itself."""
    items = sorted((k, v) for k in params for v in params.getlist(k) if k != "cursor")
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


class KeysetPagination(BasePagination):
    next_cursor: str | None = None

    def paginate_queryset(self, queryset, request, view=None):
        params = request.query_params
        sort = params.get("sort") or ("relevance" if "rank" in queryset.query.annotations else "newest")
        if sort not in SORTS:
            raise InvalidParameter("sort", f"one of {', '.join(SORTS)}")
        key, descending, needs = SORTS[sort]
        if needs and needs not in queryset.query.annotations:
            raise InvalidParameter("sort", f"{sort} needs {'q' if needs == 'rank' else 'near'}")
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            raise InvalidParameter("limit", "an integer")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidParameter("limit", f"between 1 and {MAX_LIMIT}")
        fingerprint = filter_fingerprint(params)

        if params.get("cursor"):
            value, last_id = self._decode(params["cursor"], sort, fingerprint)
            if key == "published_at":
                value = dt.datetime.fromisoformat(value)
            elif key == "rank":
                value = Cast(Value(value), RealField())
            if descending:
                after = Q(**{f"{key}__lt": value}) | Q(**{key: value, "id__lt": last_id})
            else:
                after = Q(**{f"{key}__gt": value}) | Q(**{key: value, "id__gt": last_id})
            queryset = queryset.filter(after)

        order = (F(key).desc(), F("id").desc()) if descending else (F(key).asc(), F("id").asc())
        rows = list(queryset.order_by(*order)[: limit + 1])
        self.next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            value = getattr(last, key)
            self.next_cursor = self._encode(sort, value.isoformat() if isinstance(value, dt.datetime) else value,
                                            str(last.id), fingerprint)
        return rows

    @staticmethod
    def _encode(sort, value, last_id, fingerprint) -> str:
        raw = json.dumps({"s": sort, "v": value, "i": last_id, "f": fingerprint}, separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _decode(cursor, sort, fingerprint):
        try:
            data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
            value, last_id = data["v"], data["i"]
            same = data["s"] == sort and data["f"] == fingerprint
        except (ValueError, KeyError, TypeError):
            raise InvalidParameter("cursor", "not a cursor of this search")
        if not same:
            raise InvalidParameter("cursor", "a cursor of another search")
        return value, last_id
