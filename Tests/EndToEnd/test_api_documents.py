"""The API's front page through the gateway: GET /openapi.json (the merged document) and GET /docs."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

STALE_ETAG = '"' + "0" * 64 + '"'


def _etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest() + '"'


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_documents_are_cacheable_and_revalidated(gateway, path):
    first = gateway.get(path).expect(200)
    etag = first.header("etag")
    assert etag == _etag_of(first.body), first.describe()
    assert first.header("cache-control") == "public, max-age=300"

    again = gateway.get(path, headers={"If-None-Match": etag}).expect(304)
    assert again.body == b"" and again.header("etag") == etag
    listed = gateway.get(path, headers={"If-None-Match": f'{STALE_ETAG}, W/{etag}'}).expect(304)
    assert listed.header("etag") == etag

    changed = gateway.get(path, headers={"If-None-Match": STALE_ETAG}).expect(200)
    assert changed.body == first.body


def test_openapi_document_is_the_merged_api(gateway):
    response = gateway.get("/openapi.json").expect(200)
    assert response.media_type == "application/json"
    document = response.json()
    assert document["openapi"] == "3.1.0" and document["info"]["title"] == "Marketplace API"
    assert {"/v1/auth/login", "/v1/orders", "/v1/plans", "/v1/conversations", "/docs"} <= set(document["paths"])
    assert "/health/ready" not in document["paths"]
    orders = document["paths"]["/v1/orders"]["get"]
    assert orders["tags"] == ["orders"] and {"401", "429", "502", "503", "504"} <= set(orders["responses"])
    # Served without a token, and cacheable even when one is sent.
    with_token = gateway.get("/openapi.json", headers={"Authorization": "Bearer not-even-a-jwt"}).expect(200)
    assert with_token.header("cache-control") == "public, max-age=300"


def test_docs_page_is_self_contained(gateway):
    response = gateway.get("/docs").expect(200)
    assert response.header("content-type") == "text/html; charset=utf-8"
    html = response.text()
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "openapi.json" in html

    # Nothing is loaded from elsewhere: no remote script, stylesheet, font, image or frame.
    sources = re.findall(r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, re.I)
    remote = [s for s in sources if re.match(r"^(https?:)?//", s, re.I)]
    assert not remote, f"remote sources: {remote}"
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", html, re.I)
    assert not re.search(r"""<script\b[^>]*\bsrc=""", html, re.I)

    # The policy allows exactly the page's own inline script and style, by hash.
    policy = dict(
        (part.strip().split(" ", 1) + [""])[:2] for part in response.header("content-security-policy").split(";")
    )
    script = re.search(r"<script>(.*?)</script>", html, re.S).group(1)
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    sha = lambda text: "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == sha(script)
    assert policy["style-src"] == sha(style)
    assert policy["connect-src"] == "'self'"
    assert "unsafe-inline" not in response.header("content-security-policy")
