"""PostgreSQL at size: one experiment of many candidates and metric points, bulk-loaded inside
PostgreSQL, then searched and written to through `modelyard server` over HTTP.

    .venv/bin/python bench/postgres_scale.py                     # 100,000 runs, 5,000,000 points
    .venv/bin/python bench/postgres_scale.py --runs 1000000 --points 100000000   # full size

See bench/README.md ("PostgreSQL at size").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
from harness import (
    BATCH_SIZE,
    Rest,
    Server,
    batch_body,
    executable,
    log,
    percentile,
    start_server,
    stop_server,
    tail,
)
from results import host_info
from servers import cpu_ticks, cpu_used, postgres_pids

BASE_TS = 1_700_000_000_000
SEARCHES = {
    "no filter": (None, []),
    "metric+param": ("metrics.acc > 0.5 and params.alpha = '0.1'", ["metrics.loss ASC"]),
    "tag LIKE": ("tags.team LIKE 'vis%'", []),
}
LOADED = ("runs", "params", "run_tags", "metrics", "latest_metrics")
STALE_LIMIT_S = 1.0  # no search may take longer before ANALYZE
TARGET_MS = 100.0  # search p50 after ANALYZE


# --------------------------------------------------------------------------------------------
# Bulk load
# --------------------------------------------------------------------------------------------

# Each statement fills one table for the runs numbered %(first)s..%(last)s, generated inside
# PostgreSQL (the rows never cross the connection). Values are a fixed function of the run and
# step numbers (acc and loss independent of each other), so every load of a size holds the
# same data. The products are bigint: at a million runs they pass 2^31.
_LOAD = {
    "runs": """
        INSERT INTO runs (pk, id, project_id, experiment_id, name, user_id, status, start_time,
                          end_time, artifact_uri, lifecycle_stage)
        SELECT g, md5('run' || g), %(project)s::int, %(experiment)s::int, 'run-' || g, 'bench',
               'FINISHED', %(base)s::bigint + g * 1000, %(base)s::bigint + g * 1000 + 500,
               'mlflow-artifacts:/' || %(experiment)s::int || '/' || md5('run' || g)
               || '/artifacts',
               'active'
        FROM generate_series(%(first)s::int, %(last)s::int) AS g""",
    "params": """
        INSERT INTO params (run_pk, experiment_id, key, value)
        SELECT g, %(experiment)s::int, k, CASE k WHEN 'alpha'
                   THEN (ARRAY['0.1', '0.01', '0.001', '1.0'])[g %% 4 + 1]
                   ELSE (g %% 7)::text END
        FROM generate_series(%(first)s::int, %(last)s::int) AS g,
             unnest(ARRAY['alpha', 'depth']) AS k""",
    "run_tags": """
        INSERT INTO run_tags (run_pk, experiment_id, key, value)
        SELECT g, %(experiment)s::int, k, CASE k WHEN 'team'
                   THEN (ARRAY['vision', 'nlp', 'speech', 'tabular'])[g %% 4 + 1]
                   ELSE 'run-' || g END
        FROM generate_series(%(first)s::int, %(last)s::int) AS g,
             unnest(ARRAY['team', 'mlflow.runName']) AS k""",
    "metrics": """
        INSERT INTO metrics (run_pk, key, step, timestamp, value, is_nan)
        SELECT g, k, s, %(base)s::bigint + g * 1000 + s,
               ((g::bigint * CASE k WHEN 'acc' THEN 7919 ELSE 15401 END + s * 104729) %% 10007)
               / 10007.0, false
        FROM generate_series(%(first)s::int, %(last)s::int) AS g, unnest(ARRAY['acc', 'loss']) AS k,
             generate_series(0, %(steps)s::int - 1) AS s""",
    "latest_metrics": """
        INSERT INTO latest_metrics (run_pk, experiment_id, key, step, timestamp, value, is_nan)
        SELECT g, %(experiment)s::int, k, %(steps)s::int - 1,
               %(base)s::bigint + g * 1000 + %(steps)s::int - 1,
               ((g::bigint * CASE k WHEN 'acc' THEN 7919 ELSE 15401 END
                 + (%(steps)s::int - 1) * 104729) %% 10007) / 10007.0, false
        FROM generate_series(%(first)s::int, %(last)s::int) AS g,
             unnest(ARRAY['acc', 'loss']) AS k""",
}


def expected_matches(runs: int, steps: int) -> dict[str, int]:
    """How many runs each search matches, computed here from the generating formulas."""
    last = steps - 1

    def latest(g: int, key: str) -> float:
        return ((g * (7919 if key == "acc" else 15401) + last * 104729) % 10007) / 10007.0

    metric_param = sum(1 for g in range(1, runs + 1) if g % 4 == 0 and latest(g, "acc") > 0.5)
    return {
        "no filter": runs,
        "metric+param": metric_param,
        "tag LIKE": sum(1 for g in range(1, runs + 1) if g % 4 == 0),
    }


def create_database(url: str) -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    given = make_url(url)
    name = f"bench_pgscale_{uuid.uuid4().hex[:8]}"
    admin = given.set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    made = given.set(drivername="postgresql+psycopg", database=name)
    return name, str(made.render_as_string(hide_password=False))


def drop_database(url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(url).set(drivername="postgresql", database="postgres")
    try:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:
        log(f"could not drop {name}: {exc}")


def plain_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False))


def prepare(database_url: str) -> str:
    """The schema and one experiment, through modelyard."""
    from modelyard.db.engine import Database
    from modelyard.db.migrate import ensure_schema
    from modelyard.db.schema import DEFAULT_PROJECT_ID
    from modelyard.services import experiments

    db = Database(database_url)
    try:
        ensure_schema(db)
        return str(experiments.create(db, DEFAULT_PROJECT_ID, "pg-scale"))
    finally:
        db.dispose()


def find_experiment(database_url: str) -> str:
    """The experiment an earlier run loaded (``--reuse``)."""
    import psycopg

    with psycopg.connect(plain_url(database_url)) as conn:
        found = conn.execute("SELECT id FROM experiments WHERE name = 'pg-scale'").fetchone()
    if found is None:
        raise SystemExit(f"{database_url} holds no experiment pg-scale: not a kept load")
    return str(found[0])


def bulk_load(
    database_url: str, experiment: str, runs: int, steps: int, chunk: int
) -> dict[str, Any]:
    """The rows, chunk by chunk, with autovacuum off on the loaded tables (so no statistics
    exist until an ANALYZE)."""
    import psycopg

    from modelyard.db.schema import DEFAULT_PROJECT_ID

    timings: dict[str, float] = {}
    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        for table in LOADED:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
        conn.execute("SET synchronous_commit = off")
        started = time.perf_counter()
        for first in range(1, runs + 1, chunk):
            last = min(first + chunk - 1, runs)
            values = {
                "first": first,
                "last": last,
                "experiment": int(experiment),
                "project": DEFAULT_PROJECT_ID,
                "base": BASE_TS,
                "steps": steps,
            }
            for table, statement in _LOAD.items():
                t0 = time.perf_counter()
                with conn.transaction():
                    conn.execute(statement, values)  # type: ignore[arg-type]
                timings[table] = timings.get(table, 0.0) + time.perf_counter() - t0
            done = time.perf_counter() - started
            log(
                f"  loaded runs 1..{last:,} ({last * steps * 2:,} points) in {done:,.0f} s, "
                f"{last * steps * 2 / done:,.0f} points/s"
            )
        conn.execute(f"SELECT setval('runs_pk_seq', {runs})")
        sizes = {
            t: conn.execute(f"SELECT pg_total_relation_size('{t}')").fetchone()[0]  # type: ignore[index]
            for t in LOADED
        }
    return {"seconds": timings, "bytes": sizes}


def forget_statistics(database_url: str) -> None:
    """The state right after a bulk load on a kept database (``--reuse``): the loaded tables'
    planner statistics deleted and their row counts unknown (superuser), autovacuum off."""
    import psycopg

    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        for table in LOADED:
            conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
            conn.execute("DELETE FROM pg_statistic WHERE starelid = %s::regclass", (table,))
            conn.execute("UPDATE pg_class SET reltuples = -1 WHERE oid = %s::regclass", (table,))


def analyze(database_url: str) -> float:
    import psycopg

    with psycopg.connect(plain_url(database_url), autocommit=True) as conn:
        started = time.perf_counter()
        for table in LOADED:
            conn.execute(f"ANALYZE {table}")
            conn.execute(f"ALTER TABLE {table} RESET (autovacuum_enabled)")
        return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclass
class Results:
    load: dict[str, Any] = field(default_factory=dict)
    stale: dict[str, float] = field(default_factory=dict)  # first call of each search, seconds
    search: dict[str, dict[str, float]] = field(default_factory=dict)
    paging: dict[str, dict[str, float]] = field(default_factory=dict)
    ingest: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def search_body(experiment: str, name: str, size: int, token: str | None = None) -> dict[str, Any]:
    text, order = SEARCHES[name]
    body: dict[str, Any] = {"experiment_ids": [experiment], "max_results": size}
    if text:
        body["filter"] = text
    if order:
        body["order_by"] = order
    if token:
        body["page_token"] = token
    return body


def timed_search(rest: Rest, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    got = rest.post("/runs/search", body)
    return time.perf_counter() - started, got


def stale_searches(server: Server, experiment: str, out: Results) -> None:
    """Right after the load, before any ANALYZE: one call of each search."""
    rest = Rest(server.base_url, timeout_s=900)
    for name in SEARCHES:
        seconds, got = timed_search(rest, search_body(experiment, name, 100))
        out.stale[name] = seconds
        log(f"  {name}: {seconds * 1000:,.0f} ms without statistics ({len(got['runs'])} runs)")
    rest.close()


def searches(server: Server, experiment: str, calls: int, out: Results) -> None:
    rest = Rest(server.base_url, timeout_s=900)
    for name in SEARCHES:
        body = search_body(experiment, name, 100)
        timed_search(rest, body)  # warm-up
        times = [timed_search(rest, body)[0] for _ in range(calls)]
        out.search[name] = {
            "p50_ms": percentile(times, 50) * 1000,
            "p95_ms": percentile(times, 95) * 1000,
            "calls": calls,
        }
        log(f"  {name}: p50 {out.search[name]['p50_ms']:,.1f} ms")
    rest.close()


def where_time_goes(database_url: str, experiment: str, calls: int, out: Results) -> None:
    """Each search in this process, through modelyard's service (no HTTP): its whole time, and
    the page query's own execution time inside PostgreSQL (EXPLAIN ANALYZE of the statement
    the service sent, captured on its way out). The rest of the service time is loading the
    page's params, tags and metrics and building the answer; the rest of the HTTP time is the
    server's routing and JSON."""
    from sqlalchemy import event

    from modelyard.db.engine import Database
    from modelyard.db.schema import DEFAULT_PROJECT_ID
    from modelyard.services import runs

    db = Database(database_url)
    sent: list[tuple[str, Any]] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def capture(_c: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    try:
        for name, (text, order) in SEARCHES.items():
            times, plans, python_cpu, postgres_cpu = [], [], [], []
            for _ in range(calls + 1):
                sent.clear()
                backends = postgres_pids(database_url)
                ticks = cpu_ticks(backends)
                before = time.process_time()
                started = time.perf_counter()
                runs.search(
                    db,
                    DEFAULT_PROJECT_ID,
                    experiment_ids=[experiment],
                    filter_string=text,
                    run_view_type=None,
                    max_results=100,
                    order_by=order,
                    page_token=None,
                )
                times.append(time.perf_counter() - started)
                python_cpu.append(time.process_time() - before)
                postgres_cpu.append(cpu_used(ticks, cpu_ticks(backends)))
                page_query = next((q for q in sent if "FROM runs" in q[0]), None)
                if page_query is not None:
                    with db.engine.connect() as conn:
                        explained = conn.exec_driver_sql(
                            "EXPLAIN (ANALYZE, FORMAT JSON) " + page_query[0], page_query[1]
                        ).scalar()
                    plan = explained if isinstance(explained, list) else json.loads(explained)
                    plans.append(float(plan[0]["Execution Time"]))
            found = out.search.setdefault(name, {})
            found["service_p50_ms"] = percentile(times[1:], 50) * 1000
            found["page_query_p50_ms"] = percentile(plans[1:], 50) if plans else float("nan")
            found["service_python_cpu_ms"] = percentile(python_cpu[1:], 50) * 1000
            found["service_postgres_cpu_ms"] = percentile(postgres_cpu[1:], 50) * 1000
            log(
                f"  {name}: service {found['service_p50_ms']:,.1f} ms, of which the page query "
                f"{found['page_query_p50_ms']:,.1f} ms; CPU: Python "
                f"{found['service_python_cpu_ms']:,.1f} ms, PostgreSQL "
                f"{found['service_postgres_cpu_ms']:,.1f} ms"
            )
    finally:
        db.dispose()


def paging(server: Server, experiment: str, expected: dict[str, int], out: Results) -> None:
    """Every page of each search, 1,000 runs a page, to the end; each run must come once."""
    rest = Rest(server.base_url, timeout_s=900)
    for name in SEARCHES:
        token: str | None = None
        times: list[float] = []
        seen: set[str] = set()
        while True:
            seconds, got = timed_search(rest, search_body(experiment, name, 1000, token))
            times.append(seconds)
            seen.update(r["info"]["run_id"] for r in got.get("runs", []))
            token = got.get("next_page_token")
            if not token:
                break
        if len(seen) != expected[name]:
            out.errors.append(f"paging {name}: {len(seen)} runs, expected {expected[name]}")
        tenth = max(1, len(times) // 10)
        out.paging[name] = {
            "pages": len(times),
            "first_ms": times[0] * 1000,
            "median_ms": percentile(times, 50) * 1000,
            "last_tenth_median_ms": percentile(times[-tenth:], 50) * 1000,
            "max_ms": max(times) * 1000,
        }
        log(
            f"  {name}: {len(times)} pages, first {times[0] * 1000:,.0f} ms, median "
            f"{out.paging[name]['median_ms']:,.0f} ms, last tenth "
            f"{out.paging[name]['last_tenth_median_ms']:,.0f} ms"
        )
    rest.close()


def ingest(
    server: Server, database_url: str, experiment: str, clients: int, batches: int, out: Results
) -> None:
    rest = Rest(server.base_url)
    runs = [rest.create_run(experiment) for _ in range(clients)]
    rest.close()
    bodies = [
        [batch_body(runs[c], "loss", b * BATCH_SIZE, BATCH_SIZE) for b in range(batches + 1)]
        for c in range(clients)
    ]
    links = [Rest(server.base_url) for _ in range(clients)]
    for c in range(clients):
        links[c].post_body("/runs/log-batch", bodies[c][0])
    barrier = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def work(c: int) -> None:
        barrier.wait()
        try:
            for body in bodies[c][1:]:
                links[c].post_body("/runs/log-batch", body)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for thread in threads:
        thread.start()
    backends = postgres_pids(database_url)
    before = (cpu_ticks([server.proc.pid]), cpu_ticks(backends), time.process_time())
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    client_cpu = time.process_time()
    after = (cpu_ticks([server.proc.pid]), cpu_ticks(backends), client_cpu)
    for link in links:
        link.close()
    if errors:
        raise errors[0]
    calls = clients * batches
    out.ingest = {
        "points_per_s": calls * BATCH_SIZE / wall,
        "wall_s": wall,
        "server_cpu_ms_per_batch": cpu_used(before[0], after[0]) * 1000 / calls,
        "postgres_cpu_ms_per_batch": cpu_used(before[1], after[1]) * 1000 / calls,
        "client_cpu_ms_per_batch": (after[2] - before[2]) * 1000 / calls,
        "load_average": os.getloadavg()[0],
    }
    log(f"  {clients} clients: {json.dumps({k: round(v, 1) for k, v in out.ingest.items()})}")


# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=5_000_000, help="metric points in all")
    parser.add_argument("--chunk", type=int, default=50_000, help="runs per load transaction")
    parser.add_argument("--workers", type=int, default=4, help="the server's --workers")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=20, help="log-batch calls per client")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per search")
    parser.add_argument("--no-paging", action="store_true", help="skip paging to the end")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("MODELYARD_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/bench"),
        help="a PostgreSQL server; a fresh database is made on it and dropped at the end",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database (its URL is logged)")
    parser.add_argument(
        "--reuse",
        metavar="URL",
        help="measure on a database an earlier --keep run loaded (same --runs and --points) "
        "instead of loading one: its statistics are deleted first, as after a load; it is kept",
    )
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args(argv)


def print_table(out: Results, args: argparse.Namespace) -> None:
    print(
        f"\nPostgreSQL at size: {args.runs:,} runs, {args.points:,} metric points, one "
        f"experiment; modelyard server --workers {args.workers}"
    )
    print(f"{'search (100 runs)':<20}{'no stats':>12}{'p50':>10}{'p95':>10}  target")
    for name in SEARCHES:
        stale = out.stale.get(name)
        found = out.search.get(name, {})
        p50, p95 = found.get("p50_ms"), found.get("p95_ms")
        marks = []
        if stale is not None:
            marks.append("stale ok" if stale <= STALE_LIMIT_S else "stale MISS")
        if p50 is not None:
            marks.append("ok" if p50 <= TARGET_MS else "MISS")
        print(
            f"{name:<20}{'-' if stale is None else f'{stale * 1000:,.0f} ms':>12}"
            f"{'-' if p50 is None else f'{p50:,.1f} ms':>10}"
            f"{'-' if p95 is None else f'{p95:,.1f} ms':>10}  {', '.join(marks)}"
        )
    for name in SEARCHES:
        found = out.search.get(name, {})
        if "service_p50_ms" in found:
            print(
                f"  {name}: HTTP p50 {found['p50_ms']:,.1f} ms = service "
                f"{found['service_p50_ms']:,.1f} ms (page query {found['page_query_p50_ms']:,.1f}"
                " ms in PostgreSQL, the rest loading the page's data) + routing and JSON; "
                f"the service's CPU: Python {found['service_python_cpu_ms']:,.1f} ms, "
                f"PostgreSQL {found['service_postgres_cpu_ms']:,.1f} ms"
            )
    for name, page in out.paging.items():
        print(
            f"paging {name:<13} {page['pages']:>5} pages of 1,000: first "
            f"{page['first_ms']:,.0f} ms, median {page['median_ms']:,.0f} ms, last tenth "
            f"{page['last_tenth_median_ms']:,.0f} ms, max {page['max_ms']:,.0f} ms"
        )
    if out.ingest:
        mark = "ok" if out.ingest["points_per_s"] >= 150_000 else "MISS"
        print(
            f"ingest, {args.clients} clients, 1,000-point batches: "
            f"{out.ingest['points_per_s']:,.0f} points/s (target 150,000: {mark}); per batch: "
            f"server CPU {out.ingest['server_cpu_ms_per_batch']:.1f} ms, PostgreSQL CPU "
            f"{out.ingest['postgres_cpu_ms_per_batch']:.1f} ms, client CPU "
            f"{out.ingest['client_cpu_ms_per_batch']:.1f} ms; load average "
            f"{out.ingest['load_average']:.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.stop_on_sigterm()
    os.environ.update(harness.CLIENT_ENV)
    steps = max(1, args.points // (2 * args.runs))
    out = Results()
    name, url = (None, args.reuse) if args.reuse else create_database(args.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="bench-pgscale-"))
    server: Server | None = None
    try:
        experiment = find_experiment(url) if args.reuse else prepare(url)

        def command(_kind: str, wd: Path, port: int) -> list[str]:
            return [
                executable("modelyard"), "server", "--port", str(port), "--workers",
                str(args.workers), "--data-dir", str(wd / "data"), "--database-url", url,
            ]  # fmt: skip

        # the server runs before the load, as it would while an import fills its database
        server = start_server("modelyard", workdir, command)
        expected = expected_matches(args.runs, steps)
        if name is not None:
            log(f"loading {args.runs:,} runs x 2 metrics x {steps} steps into {name}")
            out.load = bulk_load(url, experiment, args.runs, steps, args.chunk)
        else:
            forget_statistics(url)
        time.sleep(2.5)  # the table counters reach the statistics views; the server looks again
        log("searches right after the load (no statistics)")
        stale_searches(server, experiment, out)
        out.load["analyze_s"] = analyze(url)
        log(f"ANALYZE: {out.load['analyze_s']:,.1f} s")
        log("searches")
        searches(server, experiment, args.calls, out)
        log("where the time goes (in this process, without HTTP)")
        where_time_goes(url, experiment, min(args.calls, 10), out)
        if not args.no_paging:
            log("paging to the end")
            paging(server, experiment, expected, out)
        log("ingest")
        ingest(server, url, experiment, args.clients, args.batches, out)
    except Exception as exc:
        out.errors.append(f"{type(exc).__name__}: {exc}")
        log(f"FAILED: {exc}")
        if server is not None:
            log(tail(server.log_path, 20))
    finally:
        if server is not None:
            stop_server(server)
        if args.keep or name is None:
            log(f"kept {url}")
        else:
            drop_database(args.database_url, name)
    print_table(out, args)
    for error in out.errors:
        print(f"ERROR: {error}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.output or harness.RESULTS_DIR / f"postgres-scale-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "host": host_info(),
                "args": vars(args) | {"output": str(output)},
                "results": out.__dict__,
            },
            indent=2,
            default=str,
        )
    )
    log(f"results: {output}")
    return 1 if out.errors else 0


if __name__ == "__main__":
    sys.exit(main())
