"""The search's FilterSet: declared filters for the fixed parameters, attr.<name>[.min|.max] applied
from the schema of the categories searched."""
import datetime as dt
import re

import django_filters
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db.models import Q

from .categories import category_tree
from .errors import InvalidParameter
from .expressions import TS_CONFIG, EarthBoxContains, EarthDistance, centre_point, listing_point, listing_vector
from .models import Listing

WORD = re.compile(r"\w+", re.UNICODE)
DEFAULT_RADIUS_KM = 50
MAX_RADIUS_KM = 500


def prefix_query(text: str) -> str | None:
    """'labrador puppi' -> 'labrador' & 'puppi':* (every word, the last one as a prefix)."""
    words = WORD.findall(text.lower())
    if not words:
        return None
    return " & ".join([f"'{w}'" for w in words[:-1]] + [f"'{words[-1]}':*"])


class ListingFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_q", max_length=200)
    category = django_filters.CharFilter(method="filter_category")
    priceMin = django_filters.NumberFilter(field_name="price_amount", lookup_expr="gte", min_value=0)
    priceMax = django_filters.NumberFilter(field_name="price_amount", lookup_expr="lte", min_value=0)
    currency = django_filters.CharFilter(method="filter_currency")
    vendor = django_filters.UUIDFilter(field_name="vendor_id")
    minRating = django_filters.NumberFilter(field_name="vendor__rating_average", lookup_expr="gte",
                                            min_value=0, max_value=5)
    near = django_filters.CharFilter(method="filter_near")
    radiusKm = django_filters.NumberFilter(method="filter_nothing", min_value=0.1, max_value=MAX_RADIUS_KM)

    class Meta:
        model = Listing
        fields = []

    def filter_q(self, queryset, name, value):
        raw = prefix_query(value)
        if raw is None:
            return queryset
        query = SearchQuery(raw, search_type="raw", config=TS_CONFIG)
        vector = listing_vector()
        # alias(): the vector is matched (GIN index), not sent back.
        return queryset.alias(search=vector).annotate(rank=SearchRank(vector, query)).filter(search=query)

    def filter_category(self, queryset, name, value):
        tree = category_tree()
        if value not in tree.by_slug:
            raise InvalidParameter("category", f"unknown category {value!r}")
        return queryset.filter(category_id__in=[c.id for c in tree.subtree(value)])

    def filter_currency(self, queryset, name, value):
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise InvalidParameter("currency", "an ISO 4217 code, e.g. GBP")
        return queryset.filter(currency=value)

    def filter_near(self, queryset, name, value):
        try:
            lat, lon = (float(x) for x in value.split(","))
        except ValueError:
            raise InvalidParameter("near", "expected <lat>,<lon>")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidParameter("near", "latitude or longitude out of range")
        radius_km = self.form.cleaned_data.get("radiusKm") or DEFAULT_RADIUS_KM
        radius_m = float(radius_km) * 1000
        centre, point = centre_point(lat, lon), listing_point()
        # The box test uses the GiST index; the distance test trims the box's corners.
        return (queryset.filter(EarthBoxContains(centre, radius_m, point))
                .annotate(distance_m=EarthDistance(centre, point))
                .filter(distance_m__lte=radius_m))

    def filter_nothing(self, queryset, name, value):
        return queryset  # radiusKm is read by filter_near

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        return self.filter_attributes(queryset)

    def filter_attributes(self, queryset):
        known = category_tree().attributes(self.form.cleaned_data.get("category") or None)
        for key in self.data:
            if not key.startswith("attr."):
                continue
            name, _, bound = key[len("attr."):].partition(".")
            attr = known.get(name)
            if attr is None or bound not in ("", "min", "max"):
                raise InvalidParameter(key, "unknown attribute for this category")
            values = self.data.getlist(key)
            if bound:
                if not attr.rangeable or len(values) != 1:
                    raise InvalidParameter(key, "a range needs one number or date")
                lookup = "gte" if bound == "min" else "lte"
                queryset = queryset.filter(**{f"attributes__{name}__{lookup}": self._typed(key, attr, values[0])})
            else:
                any_of = Q()
                for v in values:
                    typed = self._typed(key, attr, v)
                    any_of |= Q(attributes__contains={name: [typed] if attr.type == "array" else typed})
                queryset = queryset.filter(any_of)
        return queryset

    @staticmethod
    def _typed(key, attr, raw: str):
        try:
            if attr.type == "boolean":
                if raw not in ("true", "false"):
                    raise ValueError
                return raw == "true"
            if attr.type == "integer":
                return int(raw)
            if attr.type == "number":
                return float(raw)
            if attr.type == "date":
                return dt.date.fromisoformat(raw).isoformat()
        except ValueError:
            raise InvalidParameter(key, f"not a valid {attr.type}")
        if attr.enum and raw not in attr.enum:
            raise InvalidParameter(key, f"one of {sorted(attr.enum)}")
        return raw
