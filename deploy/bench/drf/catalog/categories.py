"""The category tree and its attribute schemas, cached per worker for a minute: every search
needs them (subcategories, attribute names and types) and they change a few times a year."""
import time
from dataclasses import dataclass, field

from .models import Category

TTL_SECONDS = 60.0


@dataclass
class Attribute:
    """One attribute name across the categories searched (types agree; enums are merged)."""
    name: str
    type: str  # string | number | integer | boolean | array | date
    enum: set = field(default_factory=set)  # for arrays: the items' enum

    @property
    def rangeable(self) -> bool:
        return self.type in ("number", "integer", "date")


class CategoryTree:
    def __init__(self, categories):
        self.by_slug = {c.slug: c for c in categories}
        self.children = {}
        for c in categories:
            self.children.setdefault(c.parent_id, []).append(c)

    def subtree(self, slug: str) -> list:
        root = self.by_slug[slug]
        out, stack = [], [root]
        while stack:
            c = stack.pop()
            out.append(c)
            stack.extend(self.children.get(c.id, []))
        return out

    def attributes(self, slug: str | None) -> dict[str, Attribute]:
        cats = self.subtree(slug) if slug else list(self.by_slug.values())
        attrs: dict[str, Attribute] = {}
        for c in cats:
            for name, schema in c.attribute_schema.get("properties", {}).items():
                if schema.get("type") == "array":
                    kind, enum = "array", schema.get("items", {}).get("enum", [])
                elif schema.get("format") == "date":
                    kind, enum = "date", []
                elif "enum" in schema:
                    kind, enum = "string", schema["enum"]
                else:
                    kind, enum = schema.get("type", "string"), []
                a = attrs.setdefault(name, Attribute(name, kind))
                a.enum.update(enum)
        return attrs


_cache: tuple[float, CategoryTree] | None = None


def category_tree() -> CategoryTree:
    global _cache
    now = time.monotonic()
    if _cache is None or now - _cache[0] > TTL_SECONDS:
        _cache = (now, CategoryTree(list(Category.objects.all())))
    return _cache[1]
