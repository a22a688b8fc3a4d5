import re

from django.db.models import Count, Q
from django.db.models.fields.json import KeyTransform
from django.http import JsonResponse
from rest_framework import generics
from rest_framework.response import Response

from .categories import category_tree
from .errors import InvalidParameter
from .filters import ListingFilter
from .models import Listing
from .pagination import KeysetPagination
from .serializers import ListingSearchSerializer

PARAMETERS = {"q", "category", "priceMin", "priceMax", "currency", "near", "radiusKm", "vendor", "minRating",
              "sort", "facets", "limit", "cursor"}
ATTRIBUTE_PARAMETER = re.compile(r"attr\.[A-Za-z0-9_]+(\.min|\.max)?")
FACET_VALUES = 50


def ready(request):
    return JsonResponse({"status": "ready"})


class ListingSearchView(generics.ListAPIView):
    """GET /v1/listings: search published listings (see API.md, "Listings service")."""
    serializer_class = ListingSearchSerializer
    filterset_class = ListingFilter
    pagination_class = KeysetPagination

    def get_queryset(self):
        return Listing.objects.visible().select_related("category", "vendor__user")

    def list(self, request, *args, **kwargs):
        unknown = [k for k in request.query_params if k not in PARAMETERS and not ATTRIBUTE_PARAMETER.fullmatch(k)]
        if unknown:
            raise InvalidParameter(unknown[0], "unknown parameter")
        queryset = self.filter_queryset(self.get_queryset())
        facets = self.facet_counts(queryset, request.query_params.get("facets", ""),
                                   request.query_params.get("category"))
        total = queryset.count()
        page = self.paginate_queryset(queryset)
        return Response({"items": self.get_serializer(page, many=True).data, "facets": facets,
                         "totalEstimate": total, "nextCursor": self.paginator.next_cursor})

    @staticmethod
    def facet_counts(queryset, requested: str, category: str | None) -> dict:
        """One aggregate query per facet over every match (not just the page)."""
        names = [n for n in (s.strip() for s in requested.split(",")) if n]
        attributes = category_tree().attributes(category) if names else {}
        base = queryset.order_by()
        facets = {}
        for name in names:
            if name == "category":
                rows = (base.values("category__slug").annotate(count=Count("id"))
                        .order_by("-count", "category__slug")[:FACET_VALUES])
                facets[name] = [{"value": r["category__slug"], "count": r["count"]} for r in rows]
                continue
            attr = attributes.get(name[len("attr."):]) if name.startswith("attr.") else None
            if attr is None:
                raise InvalidParameter("facets", f"unknown facet {name!r}")
            if attr.type == "array":
                # Multi-valued: count each listed value with a filtered aggregate (one query).
                counts = base.aggregate(**{f"v{i}": Count("id", filter=Q(attributes__contains={attr.name: [v]}))
                                           for i, v in enumerate(sorted(attr.enum))})
                values = [{"value": v, "count": counts[f"v{i}"]} for i, v in enumerate(sorted(attr.enum))]
                facets[name] = sorted((v for v in values if v["count"]), key=lambda v: (-v["count"], v["value"]))
                continue
            rows = (base.annotate(value=KeyTransform(attr.name, "attributes")).filter(value__isnull=False)
                    .values("value").annotate(count=Count("id")).order_by("-count", "value")[:FACET_VALUES])
            facets[name] = [{"value": r["value"], "count": r["count"]} for r in rows]
        return facets
