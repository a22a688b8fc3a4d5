"""deploy/bench/report.py: the README's benchmark table, from the benches' results (no suite, no network).

    python3 -m pytest deploy/test/test_bench_report.py -q
"""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "deploy" / "bench"
_spec = importlib.util.spec_from_file_location("bench_report", BENCH / "report.py")
report = importlib.util.module_from_spec(_spec)
sys.modules["bench_report"] = report  # dataclasses look their module up
_spec.loader.exec_module(report)

README = "# Marketplace\n\nIntro.\n\n## Benchmarks\n\nProse about the benchmarks.\n\n## Deploying\n\nMore.\n"
AMD = {"cores": "2", "cpu": "AMD EPYC", "memory": "23.5 GiB", "kernel": "6.18.44", "commit": "1111111"}
XEON = {"cores": "2", "cpu": "Intel(R) Xeon(R) Processor", "memory": "23.6 GiB", "kernel": None,
        "commit": "2222222 (with uncommitted changes)"}
MACHINES = {"search": AMD, "core": AMD, "billing": AMD, "orders": XEON, "messaging": XEON}
# Every name's {fields}; str.format ignores the ones a name does not use.
FIELDS = dict(connections=8, listings=1_000_000, clients=16, events=10_000, jobs=20_000, rate=24, count=100_000,
              orders=5_000, mails=2_000, streams=5_000)
PER_FIGURE = {"orders.webhook-to-paid-p99.80": dict(rate=38), "jobs.lateness-p99": dict(rate=100),
              "identity.refresh": dict(connections=32), "orders.throughput": dict(clients=128)}
VALUES = {
    "search.cache-off.throughput-vs-drf": 422.1, "search.cache-off.p99-vs-drf": 986.7, "search.cache-off.p95": 14.8,
    "search.cache-off.p99": 18.7, "search.deployed.throughput": 14422.9, "search.copy": 31.1,
    "front-door.jwt-vs-nginx": 72.74, "front-door.jwt-p99-added": 0.5123, "identity.logins-per-core": 36.2,
    "identity.refresh": 1161, "events.steady-p99": 21.4, "events.burst": 5901, "jobs.drain": 1504.2,
    "jobs.lateness-p99": 4.5, "billing.renewals": 71.3, "billing.webhooks": 925, "orders.throughput": 47,
    "orders.webhook-to-paid-p99.50": 157, "orders.webhook-to-paid-p99.80": 1328, "messaging.posts": 878,
    "messaging.posts-direct": 1052, "messaging.mails": 125, "messaging.stream-memory": 29.3,
    "messaging.gateway-stream-memory": 16.8, "messaging.stream-delivery-p99": 45.7,
}


def run(tmp: Path, *args: str) -> int:
    return report.main(["--results", str(tmp), "--readme", str(tmp / "README.md"), *args])


def fixture(tmp: Path, *, checks: dict[str, tuple[str, bool]] | None = None) -> Path:
    """Every area's results JSON with VALUES (no Markdown beside them), and a README."""
    assert set(VALUES) == {spec.id for spec in report.FIGURES}
    for area, name in report.SOURCES.items():
        figures = [report.figure(spec.id, VALUES[spec.id], check=(checks or {}).get(spec.id),
                                 **{**FIELDS, **PER_FIGURE.get(spec.id, {})})
                   for spec in report.FIGURES if spec.area == area]
        report.write_results_json(tmp / name, area, when="2026-12-07 10:00 UTC", machine=MACHINES[area], figures=figures)
    (tmp / "README.md").write_text(README)
    return tmp / "README.md"


def row(text: str, fragment: str) -> str:
    rows = [line for line in text.splitlines() if line.startswith("| ") and fragment in line]
    assert len(rows) == 1, (fragment, rows)
    return rows[0]


def test_table_between_the_markers_and_a_second_run_changes_nothing(tmp_path, capsys):
    readme = fixture(tmp_path)
    assert run(tmp_path) == 0
    text = readme.read_text()
    assert text.count(report.BEGIN) == text.count(report.END) == 1
    # At the top of the Benchmarks section, the rest of the README as it was.
    assert text.index("## Benchmarks") < text.index(report.BEGIN) < text.index(report.END) < text.index("Prose about")
    assert text.replace(text[text.index(report.BEGIN):text.index(report.END) + len(report.END)] + "\n\n", "") == README
    table = text[text.index(report.BEGIN):text.index(report.END)]
    assert len([line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| area")]) == len(VALUES)
    assert row(table, "due jobs drained") == (
        "| Jobs | 20,000 due jobs drained by one service | **1,504 jobs/s** | ≥ 1,000 jobs/s | met | 2026-12-07 | `1111111` |")
    assert row(table, "verified webhooks") == (
        "| Billing | verified webhooks accepted by one instance (8 connections) | **925/s** | ≥ 1,000/s | **missed** "
        "| 2026-12-07 | `1111111` |")
    assert "| **73 %** | ≥ 70 % | met |" in row(table, "share of nginx")
    assert "| **0.51 ms** | < 1 ms | met |" in row(table, "p99 added")
    assert "| **1,328 ms** | ≤ 200 ms | **missed** | 2026-12-07 | `2222222`\\* |" in row(table, "steady 38 orders/s")
    assert "| **1,052/s** |  | — |" in row(table, "straight to messaging")
    assert ("Machines: 2 cores (AMD EPYC), 23.5 GiB RAM (search, front door, identity, events, jobs, billing); "
            "2 cores (Intel(R) Xeon(R) Processor), 23.6 GiB RAM (orders, messaging).") in table
    assert "[billing-results.md](billing-results.md)" in table
    first = text
    assert run(tmp_path) == 0
    assert readme.read_text() == first
    assert "unchanged" in capsys.readouterr().err
    assert run(tmp_path, "--check") == 0


def test_check_says_when_the_table_is_out_of_date(tmp_path):
    readme = fixture(tmp_path)
    assert run(tmp_path) == 0
    path = tmp_path / "billing-results.json"
    data = json.loads(path.read_text())
    data["figures"][1]["value"] = 1100
    path.write_text(json.dumps(data))
    before = readme.read_text()
    assert run(tmp_path, "--check") == 1
    assert readme.read_text() == before
    assert run(tmp_path) == 0
    assert "| **1,100/s** | ≥ 1,000/s | met |" in row(readme.read_text(), "verified webhooks")


def test_a_failed_check_misses_the_goal(tmp_path):
    readme = fixture(tmp_path, checks={"billing.renewals": ("no double charge", False)})
    assert run(tmp_path) == 0
    assert "| **missed** (check failed: no double charge) |" in row(readme.read_text(), "renewals due at once")


def test_a_missing_figure_fails_loudly_and_changes_nothing(tmp_path, capsys):
    readme = fixture(tmp_path)
    path = tmp_path / "billing-results.json"
    data = json.loads(path.read_text())
    data["figures"] = [f for f in data["figures"] if f["id"] != "billing.webhooks"]
    path.write_text(json.dumps(data))
    assert run(tmp_path) == 1
    captured = capsys.readouterr()
    assert "billing-results.json" in captured.err and "'billing.webhooks'" in captured.err
    assert captured.out == ""  # no table, no number
    assert readme.read_text() == README


def test_a_missing_results_file_fails_loudly(tmp_path, capsys):
    fixture(tmp_path)
    (tmp_path / "orders-results.json").unlink()
    assert run(tmp_path) == 1
    assert "orders-results.json: missing" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the bootstrap from Markdown
def committed_markdown(tmp: Path) -> None:
    for name in report.SOURCES.values():
        shutil.copy(BENCH / name, tmp / name)
    (tmp / "README.md").write_text(README)


def test_the_committed_markdown_reports_give_every_figure_as_printed(tmp_path):
    committed_markdown(tmp_path)
    assert run(tmp_path, "--from-markdown") == 0
    for area, name in report.SOURCES.items():
        text = (tmp_path / name).read_text()
        data = json.loads((tmp_path / name).with_suffix(".json").read_text())
        assert data["date"] == report.header(text, tmp_path / name)["date"]
        assert data["derivedFrom"] == name
        figures = {f["id"]: f for f in data["figures"]}
        for spec in (s for s in report.FIGURES if s.area == area):
            value = figures[spec.id]["value"]
            # Read, not made up: the number is printed in the report as it is in the JSON.
            printed = {f"{value:,.{k}f}" for k in range(3)} | {f"{value:.{k}f}" for k in range(3)}
            assert any(re.search(rf"(?<![\d.,]){re.escape(p)}(?![\d])", text) for p in printed), (name, spec.id, value)
    first = (tmp_path / "README.md").read_text()
    assert run(tmp_path) == 0  # from the JSON now
    assert (tmp_path / "README.md").read_text() == first


def test_a_figure_missing_from_the_markdown_fails_loudly(tmp_path, capsys):
    committed_markdown(tmp_path)
    path = tmp_path / "messaging-results.md"
    path.write_text(re.sub(r"(?m)^\| mails/s.*\n(\|.*\n)*", "", path.read_text()))
    assert run(tmp_path, "--from-markdown") == 1
    err = capsys.readouterr().err
    assert "messaging-results.md" in err and "messaging.mails" in err
    assert (tmp_path / "README.md").read_text() == README


def test_a_report_whose_verdict_disagrees_with_its_figure_fails(tmp_path, capsys):
    committed_markdown(tmp_path)
    path = tmp_path / "billing-results.md"
    text = path.read_text()
    assert "| 0 | 0 | missed |" in text
    path.write_text(text.replace("| 0 | 0 | missed |", "| 0 | 0 | met |"))
    assert run(tmp_path, "--from-markdown") == 1
    assert "billing.webhooks" in capsys.readouterr().err


def test_json_from_another_run_than_its_markdown_fails(tmp_path, capsys):
    committed_markdown(tmp_path)
    assert run(tmp_path, "--from-markdown") == 0
    path = tmp_path / "billing-results.md"
    path.write_text(re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "2027-01-01 00:00 UTC", path.read_text(), count=1))
    assert run(tmp_path) == 1
    err = capsys.readouterr().err
    assert "billing-results.md is the run of 2027-01-01 00:00 UTC" in err and "--from-markdown" in err


@pytest.mark.parametrize("markers", [report.BEGIN, report.END, report.END + "\n" + report.BEGIN])
def test_broken_markers_fail(tmp_path, capsys, markers):
    readme = fixture(tmp_path)
    readme.write_text(README.replace("Prose", markers + "\nProse"))
    assert run(tmp_path) == 1
    assert "expected one" in capsys.readouterr().err
