#!/usr/bin/env python3
"""`make bench-search`: listing search, the Swift listings service vs. a Django REST Framework twin.

A throwaway Postgres; the listings schema; COUNT generated listings (generate.py, COPY); the DRF
indexes (deploy/bench/drf/indexes.sql); a fixed mix of ~500 searches (queries.py); then for each
implementation that is available, a check of its answers (check.py), a warm-up and a measured
wrk run with mixed.lua. Markdown report to stdout and deploy/bench/search-results.md; the headline
figures to deploy/bench/search-results.json (deploy/bench/report.py puts them in the README's table).

    deploy/bench/search/run.sh [--count 1000000] [--duration 30s] [--warmup 10s] [--connections 8]
                               [--threads 1,2] [--bin-dir DIR] [--schema-from-sql] [--only drf|swift]
                               [--output FILE] [--keep]
Env: BENCH_SEARCH_COUNT, BENCH_SEARCH_DURATION (defaults of --count and --duration).
Both implementations read the same database with every index present (the service's own and the
DRF ones); wrk shares the machine's cores with the server under test and Postgres.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DRF_DIR = ROOT / "deploy" / "bench" / "drf"
MIGRATIONS = ROOT / "Services" / "Listings" / "Sources" / "Listings" / "Migrations"
sys.path[:0] = [str(ROOT / "deploy" / "dev"), str(ROOT / "deploy" / "bench"), str(HERE), str(DRF_DIR)]

from suite import FAST_PG_SETTINGS, HOST, Suite, SuiteError, free_port, say  # noqa: E402
from bench import machine  # noqa: E402
from report import figure, write_results_json  # noqa: E402
from check import check_answers  # noqa: E402
from drf_tools import drf_env, ensure_tools  # noqa: E402
from generate import Psql, read_categories  # noqa: E402

# Postgres sized for the machine (24 GiB) rather than the 128 MB default; both targets share it.
# JIT off: it compiles plans of facet counts over large categories, adding latency to an OLTP read.
BENCH_PG_SETTINGS = {**FAST_PG_SETTINGS, "shared_buffers": "4GB", "effective_cache_size": "12GB",
                     "work_mem": "16MB", "maintenance_work_mem": "1GB", "max_wal_size": "8GB",
                     "checkpoint_timeout": "30min", "jit": "off", "random_page_cost": "1.1"}
# The platform table the listings service's shared migrations create (users projection).
PLATFORM_USERS_SQL = ("CREATE TABLE IF NOT EXISTS users (id uuid PRIMARY KEY, display_name text NOT NULL, "
                      "roles text[] NOT NULL, status text NOT NULL, updated_at timestamptz NOT NULL);")
# Plans shown in the report: one text search with facets, one category browse with an attribute
# filter and facets, one geo search sorted by distance, one attribute range sorted by price.
EXPLAIN_PATHS = (
    "/v1/listings?q=labrador%20pupp&facets=category,attr.breed",
    "/v1/listings?category=dogs&attr.breed=Cockapoo&facets=attr.color,attr.sex",
    "/v1/listings?near=51.5074,-0.1278&radiusKm=25&sort=distance",
    "/v1/listings?category=pet-food&attr.weightKg.min=5&sort=price_asc",
)
WRK_TIMEOUT = "30s"  # a slow answer is a latency to count, not a dropped request


def psql_file(suite: Suite, path: Path, *, user: str, variables: dict[str, str] | None = None) -> None:
    password = "postgres" if user == "postgres" else user
    cmd = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(suite.pg_port), "-U", user,
           "-d", "marketplace", "-f", str(path)]
    for k, v in (variables or {}).items():
        cmd += ["-v", f"{k}={v}"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, PGPASSWORD=password))
    if r.returncode != 0:
        raise SuiteError(f"psql -f {path} failed: {r.stderr.strip()}")


# ============================================================================ the Swift listings service
def create_listings_schema(suite: Suite, *, schema_from_sql: bool) -> str:
    """Creates the `listings` schema's tables. Returns how, for the report.

    Default: `<bin-dir>/listings migrate` with DATABASE_URL = the listings role's DSN (its
    search_path is `listings`), which is what Suite.migrate("listings") runs.
    --schema-from-sql: apply Services/Listings/.../Migrations/*.sql and the platform users table with
    psql as the listings role, for when the binary is not built."""
    if not schema_from_sql:
        suite.migrate("listings")
        return f"`{suite.bin_dir / 'listings'} migrate`"
    script = suite.data_dir / "listings-schema.sql"
    files = sorted(MIGRATIONS.glob("*.sql"))
    script.write_text("SET search_path = listings;\n" + "".join(f"\\i {f}\n" for f in files) + PLATFORM_USERS_SQL + "\n")
    psql_file(suite, script, user="listings")
    return "psql: " + ", ".join(f.name for f in files) + " + the platform users table"


def start_listings_service(suite: Suite, notes: list[str]) -> str | None:
    """Starts `<bin-dir>/listings serve` (with the dev broker, as it runs anywhere) and waits until
    it is ready, which includes its search read model having loaded every visible listing. Notes
    how long that load took and the process's resident memory after it. None when not built."""
    binary = suite.bin_dir / "listings"
    if not os.access(binary, os.X_OK):
        say(f"skipping the Swift listings service: {binary} not found (swift build -c release)")
        return None
    suite.start_broker()
    suite.service_env.setdefault("listings", {}).update(SWIFT_LISTINGS_ENV)
    log = suite.log_path("listings")
    earlier = len(log.read_text().splitlines()) if log.exists() else 0  # the log is shared by every start
    started = time.monotonic()
    suite.start_service("listings")  # waits for GET /health/ready: search loaded too
    ready = time.monotonic() - started
    loaded: list[dict] = []
    for _ in range(50):  # the service logs the load just after it starts answering ready
        loaded = [json.loads(line) for line in log.read_text().splitlines()[earlier:]
                  if '"search read model loaded"' in line]
        if loaded:
            break
        time.sleep(0.1)
    pid = suite.pid("listings")
    rss = ""
    if pid:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next((line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("VmRSS")), "")
    if loaded:
        notes.append(f"Swift read model: {int(loaded[-1]['listings']):,} visible listings loaded from Postgres in "
                     f"{int(loaded[-1]['duration.ms']) / 1000:.1f} s (start to ready {ready:.1f} s); resident memory after "
                     f"loading {rss}")
    return suite.url("listings")


# The bench loads rows behind the service's back (COPY) before starting it, so its read model reads
# them at start. Extra environment for the run, if ever needed.
SWIFT_LISTINGS_ENV: dict[str, str] = {}


def index_sizes(suite: Suite) -> list[str]:
    rows = suite.psql(
        "SELECT c.relname, t.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
        "JOIN pg_class t ON t.oid = i.indrelid WHERE t.relnamespace = 'listings'::regnamespace "
        "UNION ALL SELECT NULL, t.relname, pg_relation_size(t.oid) FROM pg_class t "
        "WHERE t.relnamespace = 'listings'::regnamespace AND t.relkind = 'r' ORDER BY 2, 1 NULLS FIRST")
    lines = ["| table | index | size |", "|---|---|---:|"]
    for line in rows.splitlines():
        index, table, size = line.split("|")
        lines.append(f"| {table} | {index or '(table)'} | {int(size) / 2**20:,.1f} MiB |")
    total = suite.psql("SELECT pg_indexes_size('listings.listings'), pg_relation_size('listings.listings'), "
                       "pg_total_relation_size('listings.listings')").split("|")
    lines.append(f"| listings | all indexes | {int(total[0]) / 2**20:,.1f} MiB |")
    lines.append(f"| listings | total with TOAST | {int(total[2]) / 2**20:,.1f} MiB |")
    return lines


def start_drf(suite: Suite) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = drf_env(suite.service_dsn("listings"), bind=f"{HOST}:{port}")
    log = open(suite.log_dir / "drf.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(DRF_DIR / "gunicorn.conf.py"),
                             "benchsite.wsgi:application"], cwd=DRF_DIR, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(base + "/health/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise SuiteError(f"the DRF server did not start; see {suite.log_dir / 'drf.log'}")
        time.sleep(0.3)
    say(f"started DRF (gunicorn pid {proc.pid}) on {base}")
    return proc, base


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM to the group we created for it (gunicorn master and workers), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def explain_drf(suite: Suite) -> str:
    env = drf_env(suite.service_dsn("listings"))
    r = subprocess.run([sys.executable, str(DRF_DIR / "explain.py"), *EXPLAIN_PATHS], cwd=DRF_DIR, env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        return f"(explain.py failed: {r.stderr.strip()[-2000:]})"
    return r.stdout


def run_wrk(base: str, queries: Path, args, duration: str, threads: int) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{args.connections}", f"-d{duration}", f"--timeout={WRK_TIMEOUT}",
           "-s", str(HERE / "mixed.lua"), base]
    say(" ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       env=dict(os.environ, BENCH_SEARCH_QUERIES=str(queries)))
    if r.returncode != 0:
        raise SuiteError(f"wrk failed ({r.returncode}): {r.stderr or r.stdout}")
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SuiteError(f"mixed.lua printed no summary:\n{r.stdout}")
    return json.loads(lines[-1])


def measure(name: str, base: str, queries: Path, paths: list[str], categories, args) -> list[dict]:
    """One row per wrk thread count. wrk shares the two cores with the server: its second thread
    competes with the server for them, which shows in the tail; both rows are reported."""
    checked, problems = check_answers(base, paths, categories)
    say(f"{name}: {checked} answers checked, {len(problems)} problems")
    for p in problems[:20]:
        say(f"  {p}")
    run_wrk(base, queries, args, args.warmup, args.threads[0])
    rows = []
    for threads in args.threads:
        result = run_wrk(base, queries, args, args.duration, threads)
        say(f"{name}, wrk -t{threads}: {result}")
        rows.append({"name": name, "threads": threads, "checked": checked, "problems": problems, **result})
    return rows


def headline(results: list[dict], load: dict, args) -> list[dict]:
    """The figures of this run the README's table shows (deploy/bench/report.py), from the one-wrk-thread
    rows (the goals are read from those); each only when this run measured it."""
    def run(name: str) -> dict | None:
        return next((r for r in results if r["name"] == name and r["threads"] == 1), None)

    off, on = run("Swift listings service, answer cache off"), run("Swift listings service")
    drf = next((r for r in results if r["name"].startswith("DRF") and r["threads"] == 1), None)
    figures = []
    if off and drf and drf["rps"] and off["p99Ms"]:
        figures += [figure("search.cache-off.throughput-vs-drf", off["rps"] / drf["rps"], connections=args.connections),
                    figure("search.cache-off.p99-vs-drf", drf["p99Ms"] / off["p99Ms"])]
    if off:
        figures += [figure("search.cache-off.p95", off["p95Ms"], connections=args.connections),
                    figure("search.cache-off.p99", off["p99Ms"])]
    if on:
        figures.append(figure("search.deployed.throughput", on["rps"]))
    if load["listings"] == 1_000_000:  # the goal's count
        figures.append(figure("search.copy", load["loadSeconds"], listings=load["listings"]))
    return figures


def render(results: list[dict], *, load: dict, index_seconds: float, sizes: list[str], explain: str | None,
           schema_how: str, notes: list[str], m: dict, args, when: dt.datetime, n_queries: int) -> str:
    lines = [
        "# Search benchmark: Swift listings service vs. Django REST Framework",
        "",
        f"- date: {when:%Y-%m-%d %H:%M} UTC",
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['memory']} RAM, Linux {m['kernel']}",
        f"- commit: {m['commit']}",
        f"- data: {load['listings']:,} listings ({load['byStatus'].get('published', 0):,} published, "
        f"{load['byStatus'].get('hidden', 0):,} of them hidden), {load['vendors']:,} vendors, seed {load['seed']}, "
        f"anchor {load['anchor']}; schema by {schema_how}",
        f"- load: generate + COPY {load['loadSeconds']:.1f} s ({load['jobs']} generator processes), listings indexes "
        f"rebuilt in {load['indexSeconds']:.1f} s, ANALYZE {load['analyzeSeconds']:.1f} s; DRF indexes "
        f"(deploy/bench/drf/indexes.sql) {index_seconds:.1f} s",
        f"- load generator: `wrk -t<threads> -c{args.connections} -d{args.duration} --timeout={WRK_TIMEOUT}` "
        f"with deploy/bench/search/mixed.lua over {n_queries} requests (queries.py) after a {args.warmup} warm-up, "
        f"once per thread count ({', '.join(map(str, args.threads))}); wrk, the server and Postgres share the "
        f"machine's cores, so wrk's own threads compete with the server's",
        f"- Postgres: {', '.join(f'{k}={v}' for k, v in BENCH_PG_SETTINGS.items())}",
        "",
        "| implementation | wrk threads | requests/s | p50 | p90 | p95 | p99 | requests | non-2xx | socket errors | answers checked (problems) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['threads']} | {r['rps']:,.1f} | {r['p50Ms']:.1f} ms | {r['p90Ms']:.1f} ms | {r['p95Ms']:.1f} ms "
                     f"| {r['p99Ms']:.1f} ms | {r['requests']:,} | {r['non2xx']:,} | {r['socketErrors']:,} "
                     f"| {r['checked']} ({len(r['problems'])}) |")
    lines.append("")
    for swift in (r for r in results if r["name"].startswith("Swift")):
        drf = next((r for r in results if r["name"].startswith("DRF") and r["threads"] == swift["threads"]), None)
        if drf and drf["rps"] and swift["p99Ms"]:
            lines.append(f"- {swift['name']} / DRF, wrk -t{swift['threads']}: throughput {swift['rps'] / drf['rps']:.1f}x, "
                         f"p99 {drf['p99Ms'] / swift['p99Ms']:.1f}x lower")
    for r in results:
        if r["requests"] < n_queries:
            notes.append(f"{r['name']} (wrk -t{r['threads']}) answered {r['requests']} requests in {args.duration}, fewer than the "
                         f"{n_queries} of the mix: only part of the mix was measured (raise --duration)")
    lines += [""] + [f"- note: {n}" for n in notes]
    for r in results:
        for p in r["problems"][:10]:
            lines.append(f"- {r['name']} answer problem: {p}")
    lines += ["", "## Table and index sizes (schema listings)", "", *sizes]
    if explain:
        lines += ["", "## DRF query plans (EXPLAIN (ANALYZE, BUFFERS) of every query the view runs)", "", explain]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=int(os.environ.get("BENCH_SEARCH_COUNT", "1000000")))
    p.add_argument("--duration", default=os.environ.get("BENCH_SEARCH_DURATION", "30s"))
    p.add_argument("--warmup", default="10s")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--threads", type=lambda text: [int(t) for t in text.split(",")], default=[1, 2],
                   help="wrk thread counts, one measured run each (default 1,2)")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--bin-dir", type=Path, default=None, help="default .build/release")
    p.add_argument("--schema-from-sql", action="store_true",
                   help="create the schema from the migration files with psql, not `listings migrate`")
    p.add_argument("--only", choices=["drf", "swift"], default=None)
    p.add_argument("--output", type=Path, default=ROOT / "deploy" / "bench" / "search-results.md")
    p.add_argument("--keep", action="store_true", help="keep the throwaway data dir (and its database)")
    args = p.parse_args()
    if shutil.which("wrk") is None or shutil.which("psql") is None:
        say("wrk and psql are needed (apt-get install wrk postgresql)")
        return 1

    suite = Suite.throwaway(ROOT, build_config="release", bin_dir=args.bin_dir, keep=args.keep,
                            pg_settings=BENCH_PG_SETTINGS)
    results, notes, explain, drf_proc = [], [], None, None
    try:
        with suite:
            if args.only != "swift":
                ensure_tools()  # before the clock starts: pip can take a minute
            suite.start_postgres()
            schema_how = create_listings_schema(suite, schema_from_sql=args.schema_from_sql)
            dsn = suite.superuser_dsn
            gen = [sys.executable, str(HERE / "generate.py"), "--dsn", dsn, "--count", str(args.count)]
            gen += ["--seed", str(args.seed)] if args.seed else []
            r = subprocess.run(gen, stdout=subprocess.PIPE, text=True)  # progress on stderr, as it goes
            if r.returncode != 0:
                raise SuiteError("generate.py failed")
            load = json.loads(r.stdout.strip().splitlines()[-1])
            t = time.monotonic()
            psql_file(suite, DRF_DIR / "indexes.sql", user="postgres", variables={"schema": "listings"})
            index_seconds = time.monotonic() - t
            say(f"DRF indexes and ANALYZE: {index_seconds:.1f} s")
            queries = suite.data_dir / "search-queries.txt"
            qcmd = [sys.executable, str(HERE / "queries.py"), "--dsn", dsn, "--count", str(args.queries),
                    "--output", str(queries), "--anchor", load["anchor"]]
            subprocess.run(qcmd + (["--seed", str(args.seed)] if args.seed else []), check=True)
            paths = queries.read_text().split()
            categories = read_categories(Psql(dsn, "listings"))
            sizes = index_sizes(suite)

            if args.only != "drf":
                # Twice: as deployed (answers cached per replica; the mix repeats, so most are hits),
                # and with the cache off, so every request is a search of the read model.
                for label, cache in (("Swift listings service", None), ("Swift listings service, answer cache off", "0")):
                    if cache is not None:
                        SWIFT_LISTINGS_ENV["LISTINGS_ANSWER_CACHE_ENTRIES"] = cache
                    base = start_listings_service(suite, notes)
                    if not base:
                        break
                    results.extend(measure(label, base, queries, paths, categories, args))
                    suite.stop_service("listings")
                if not results:
                    notes.append("Swift listings service skipped: no `listings` executable in "
                                 f"{suite.bin_dir}")
            if args.only != "swift":
                workers = 2 * (os.cpu_count() or 1) + 1
                drf_proc, base = start_drf(suite)
                explain = explain_drf(suite)
                results.extend(measure(f"DRF (Django 5.2, gunicorn {workers} sync workers)", base, queries, paths,
                                       categories, args))
                stop_process(drf_proc)
    except SuiteError as e:
        say(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        if drf_proc is not None:
            stop_process(drf_proc)

    m, when = machine(suite.bin_dir), dt.datetime.now(dt.timezone.utc)
    report = render(results, load=load, index_seconds=index_seconds, sizes=sizes, explain=explain,
                    schema_how=schema_how, notes=notes, m=m, args=args, when=when, n_queries=len(paths))
    args.output.write_text(report)
    figures = write_results_json(args.output, "search", when=when, machine=m, figures=headline(results, load, args))
    print(report, end="")
    say(f"written to {args.output} and {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
