#!/usr/bin/env python3
"""EXPLAIN (ANALYZE, BUFFERS) of every query the DRF view runs for the given request paths.

    PYTHONPATH=deploy/bench/drf:<tools> DJANGO_SETTINGS_MODULE=benchsite.settings DRF_DATABASE_URL=... \
        python3 deploy/bench/drf/explain.py '/v1/listings?q=labrador' ...

Runs the real view (RequestFactory), records the SQL it sends, then explains each statement:
Markdown on stdout, for the benchmark report."""
import sys

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test import RequestFactory  # noqa: E402

from catalog.views import ListingSearchView  # noqa: E402


def main(paths: list[str]) -> int:
    view = ListingSearchView.as_view()
    for path in paths:
        statements = []

        def record(execute, sql, params, many, context):
            statements.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            response = view(RequestFactory().get(path))
            response.render()
        print(f"#### `GET {path}` → {response.status_code}, {len(statements)} queries\n")
        for sql, params in statements:
            if '"listings"' not in sql:
                continue  # psycopg's type lookups, the per-worker category cache filling up
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            print("```\n" + plan + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
