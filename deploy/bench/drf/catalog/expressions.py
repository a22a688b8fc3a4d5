"""Full-text and earthdistance expressions. indexes.sql indexes exactly these expressions: change
one, change the other (explain.py shows whether the plans still use them)."""
from django.contrib.postgres.search import SearchConfig, SearchVector, SearchVectorCombinable, SearchVectorField
from django.db.models import BooleanField, F, FloatField, Func, Value

# english stemming after unaccent (indexes.sql creates it): "Montreal" finds "Montréal".
TS_CONFIG = "english_unaccent"


class AttributeValuesVector(SearchVectorCombinable, Func):
    """The string values of a jsonb document (not its keys) as a weighted tsvector."""
    function = "jsonb_to_tsvector"
    output_field = SearchVectorField()

    def __init__(self, expression, *, config, weight):
        super().__init__(expression)
        self.config = SearchConfig.from_parameter(config)
        self.weight = weight

    def as_sql(self, compiler, connection, **extra):
        config_sql, config_params = compiler.compile(self.config)
        doc_sql, doc_params = compiler.compile(self.source_expressions[0])
        sql = f"setweight(jsonb_to_tsvector({config_sql}, {doc_sql}, '[\"string\"]'::jsonb), '{self.weight}')"
        return sql, [*config_params, *doc_params]


def listing_vector():
    """Title (A), attribute values (B), description (C)."""
    return (SearchVector("title", config=TS_CONFIG, weight="A")
            + AttributeValuesVector(F("attributes"), config=TS_CONFIG, weight="B")
            + SearchVector("description", config=TS_CONFIG, weight="C"))


class LLToEarth(Func):
    function = "ll_to_earth"
    output_field = FloatField()  # really `earth`; only passed on to the functions below


class EarthDistance(Func):
    function = "earth_distance"
    output_field = FloatField()


class EarthBoxContains(Func):
    """earth_box(centre, radius) @> point: the GiST-indexable bounding-box test."""
    template = "earth_box(%(expressions)s)"
    output_field = BooleanField()

    def __init__(self, centre, radius_m, point):
        super().__init__(centre, Value(float(radius_m)), point)

    def as_sql(self, compiler, connection, **extra):
        centre, radius, point = (compiler.compile(e) for e in self.source_expressions)
        return f"earth_box({centre[0]}, {radius[0]}) @> {point[0]}", [*centre[1], *radius[1], *point[1]]


def listing_point():
    return LLToEarth(F("lat"), F("lon"))


def centre_point(lat: float, lon: float):
    return LLToEarth(Value(float(lat)), Value(float(lon)))
