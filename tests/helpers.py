"""What tests share: the emulator's token and day, a client without waits, the real pipeline run
into a throwaway DuckDB file, `refdomains` as a process, and the PostgreSQL test server.

Fixtures are in conftest.py; everything a test imports is here, so no test module imports
another.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dlt
import duckdb
import psycopg2
import pytest
import time_machine

from serpstat_refdomains import pipeline
from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.config import build_settings
from serpstat_refdomains.normalize import normalize_domain
from serpstat_refdomains.results import RunReport
from serpstat_refdomains.windows import MIN_WINDOW, plan_cost, plan_windows

TOKEN = "tok-SECRET-7f3a9c"  # distinctive, so a leak is found by a plain substring scan
DAY = dt.date(2026, 3, 2)
# A `refdomains run` process files its snapshot under today's date (nothing else is accepted):
# tests that run the command itself point it at an emulator serving this day.
TODAY = dt.datetime.now(dt.UTC).date()


def noon(day: dt.date) -> dt.datetime:
    """The moment a test's in-process run happens: midday UTC of the day the emulator serves."""
    return dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)


def on(day: dt.date | dt.datetime) -> Any:
    """The clock of this process at midday UTC of `day` (or at that moment), ticking: for
    `refdomains` run in-process (cli.main) against an emulator serving that day."""
    return time_machine.travel(day if isinstance(day, dt.datetime) else noon(day), tick=True)
RD = "SerpstatBacklinksProcedure.getRefDomains"


# --- the client ------------------------------------------------------------------------------
def fast_client(emulator, **options: Any) -> SerpstatClient:
    """A client of the emulator that neither paces nor waits long between retries."""
    options = {"requests_per_second": None, "timeout": 5, "backoff_initial": 0.01, "backoff_max": 0.05,
               "max_attempts": 4, "max_retry_wait": 20, **options}
    return SerpstatClient(TOKEN, api_url=emulator.url, **options)


# --- the pipeline, in this process -----------------------------------------------------------
def run_pipeline(workdir: Path, emulator, domains: list, day: dt.date | None = None, *, client=None,
                 settings_options: dict | None = None, build_models: bool = False, destination: Any = None,
                 **options: Any) -> RunReport:
    settings = build_settings(domains=domains, api_url=emulator.url, requests_per_second=1000,
                              **(settings_options or {}))
    own = client is None
    client = client or fast_client(emulator)
    options.setdefault("progress", lambda fetcher: None)
    day = day or emulator.today
    options.setdefault("now", noon(day))  # the run happens on the day the emulator serves
    try:
        return pipeline.run(
            settings, TOKEN, snapshot_date=day,
            destination=destination or dlt.destinations.duckdb(str(workdir / "refdomains.duckdb")),
            pipelines_dir=str(workdir / "pipelines"), build_models=build_models,
            client=client, **options)
    finally:
        if own:
            client.close()


def weekly_full_runs(workdir: Path, emulator, target: str, base_size: int, weeks: int,
                     **options: Any) -> list[RunReport]:
    """A churning target's full snapshots, one a week from DAY, each in a run of its own."""
    from serpstat_refdomains.emulator import Profile

    emulator.graph.set_profile(target, Profile(base_size=base_size))
    reports = []
    with fast_client(emulator) as client:
        for week in range(weeks):
            emulator.today = DAY + dt.timedelta(weeks=week)
            reports.append(run_pipeline(workdir, emulator, [target], emulator.today, client=client, kind="full",
                                        **options))
    return reports


def query(workdir: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(workdir / "refdomains.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def query_file(workdir: Path, sql: str, params: list | None = None) -> list[tuple]:
    """A query on the database `refdomains` itself writes in a project folder."""
    with duckdb.connect(str(workdir / "serpstat_refdomains.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def loaded_domains(workdir: Path, target: str, kind: str = "full", day: dt.date | None = None) -> list[str]:
    sql = "SELECT ref_domain FROM serpstat.ref_domains WHERE target_domain = ? AND snapshot_kind = ?"
    params: list = [target, kind]
    if day is not None:
        sql += " AND snapshot_date = ?"
        params.append(day)
    return [r[0] for r in query(workdir, sql, params)]


def ledger(workdir: Path, target: str, kind: str = "full") -> dict:
    rows = query(workdir, "SELECT * FROM serpstat.snapshots WHERE target_domain = ? AND snapshot_kind = ? "
                          "ORDER BY snapshot_date DESC LIMIT 1", [target, kind])
    columns = [r[0] for r in query(workdir, "SELECT column_name FROM information_schema.columns WHERE "
                                            "table_schema = 'serpstat' AND table_name = 'snapshots' "
                                            "ORDER BY ordinal_position")]
    return dict(zip(columns, rows[0], strict=False)) if rows else {}


def truth(emulator, target: str, day: dt.date | None = None, last_week: bool = False) -> set[str]:
    return {normalize_domain(n) for n in emulator.graph.truth(target, day or emulator.today, last_week=last_week)}


def ref_requests(emulator, target: str | None = None) -> list:
    return [e for e in emulator.log if e.method == RD and (target is None or e.query == target)]


def snapshot_cost(total: int, size: int = 1000, *, first_pull: bool = True) -> int:
    """Credits of one unpartitioned snapshot: its rows (an empty answer costs 1) plus the rows its
    overlapping windows share (windows.py: what proves each seam), plus, on the series' first pull
    (its size unknown), the 1-row count sent before page 1 (which is all an empty result costs)."""
    count = 1 if first_pull and total > 0 else 0
    if total == 0:
        return 1
    window = max(size, MIN_WINDOW)
    return count + plan_cost(plan_windows(total, window, first=(1, window)), total)[1]


def model_rows(pipeline) -> dict[str, list[tuple]]:
    """Every model's rows, sorted, through the pipeline's own sql client (any destination)."""
    from serpstat_refdomains.models import model_names

    with pipeline.sql_client() as client:
        return {name: sorted((tuple(row) for row in client.execute_sql(
                    f"SELECT * FROM {client.make_qualified_table_name(name)}") or []), key=repr)
                for name in model_names()}


# --- `refdomains` as a process -----------------------------------------------------------------
REFDOMAINS = [sys.executable, "-m", "serpstat_refdomains.cli"]


def cli_env(workdir: Path, emulator, domains: str, **extra: str) -> dict[str, str]:
    """The environment of a `refdomains` process pointed at the emulator, with none of the caller's
    own sources or destinations."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "SOURCES__SERPSTAT__API_TOKEN": TOKEN,
        "SOURCES__SERPSTAT__API_URL": emulator.url,
        "SOURCES__SERPSTAT__DOMAINS": domains,
        "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "1000",
        **extra,
    })
    return env


def refdomains_on(day: dt.date) -> list[str]:
    """`refdomains` as a process whose clock reads midday UTC of `day` (time-machine), for runs
    against an emulator serving a past day: the command itself is unchanged."""
    start = noon(day).isoformat()
    return [sys.executable, "-c", "import sys, datetime, time_machine; "
            f"time_machine.travel(datetime.datetime.fromisoformat({start!r}), tick=True).start(); "
            "from serpstat_refdomains.cli import main; sys.exit(main(sys.argv[1:]))"]


def run_cli(workdir: Path, env: dict[str, str], *args: str, timeout: float = 120,
            day: dt.date | None = None) -> subprocess.CompletedProcess:
    """`refdomains ARGS` as a process in `workdir` with exactly `env`; on `day`'s clock when given."""
    command = refdomains_on(day) if day is not None else REFDOMAINS
    return subprocess.run(command + list(args), cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)


def run_main(workdir: Path, env: dict[str, str], *args: str,
             day: dt.date | dt.datetime | None = None) -> subprocess.CompletedProcess:
    """`refdomains ARGS` in this process (cli.main), in `workdir` with exactly `env`, on `day`'s
    clock when given: a command that must run at an emulator's past day. Its printed output is
    captured; log lines are not (pytest's own handlers take them)."""
    from serpstat_refdomains.cli import main

    saved, cwd = dict(os.environ), os.getcwd()
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(workdir)
    try:
        with contextlib.ExitStack() as stack:
            if day is not None:
                stack.enter_context(on(day))
            stack.enter_context(contextlib.redirect_stdout(stdout))
            stack.enter_context(contextlib.redirect_stderr(stderr))
            try:
                code = main(list(args))
            except SystemExit as done:  # argparse's own refusals exit as a process would
                code = done.code if isinstance(done.code, int) else 1
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["refdomains", *args], code, stdout.getvalue(), stderr.getvalue())


# --- PostgreSQL ----------------------------------------------------------------------------------
# Its tests skip (with the reason) when no server is reachable, except under
# REFDOMAINS_REQUIRE_POSTGRES=1 (set by .ci/run), where an unreachable server is a failure.
# Trust auth ignores the password, but dlt's postgres credentials require one.
PG_SERVER_URL = os.environ.get("REFDOMAINS_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")
# Every session the tests open (dlt's included: it passes the URL's `options` on) runs without
# PostgreSQL's JIT. The planner has no statistics for tables a build has just made, so it guesses
# costs above jit_above_cost for tables of a few hundred rows and compiles each such statement:
# about 1.3 s of server CPU for stg_snapshots alone, 50 s of the 55 s the golden timeline's 16
# builds cost the server. JIT changes how a plan runs, never what it returns.
PG_OPTIONS = "options=-c%20jit%3Doff"


def pg_url_of(database: str | None = None, server_url: str = PG_SERVER_URL) -> str:
    """The test server's URL (another database of it when given), with the tests' session options."""
    base, _, query = server_url.partition("?")
    if database is not None:
        base = base.rsplit("/", 1)[0] + "/" + database
    if "jit" not in query:
        query = f"{query}&{PG_OPTIONS}" if query else PG_OPTIONS
    return f"{base}?{query}"


PG_URL = pg_url_of()


def _postgres_error() -> str | None:
    try:
        psycopg2.connect(PG_URL, connect_timeout=3).close()
        return None
    except psycopg2.Error as error:
        return str(error).strip().splitlines()[0]


_PG_ERROR = _postgres_error()
if _PG_ERROR and os.environ.get("REFDOMAINS_REQUIRE_POSTGRES") == "1":
    raise RuntimeError(f"PostgreSQL is required here (REFDOMAINS_REQUIRE_POSTGRES=1) but unreachable: {_PG_ERROR}")
needs_postgres = pytest.mark.skipif(_PG_ERROR is not None,
                                    reason=f"no PostgreSQL at {PG_URL.split('@')[-1]}: {_PG_ERROR}")


def pg_rows(dataset: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows of `sql` on the test server, `{ds}` standing for the quoted dataset."""
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        cur.execute(sql.replace("{ds}", f'"{dataset}"'), params)
        return cur.fetchall()


def drop_dataset(dataset: str, url: str = PG_URL) -> None:
    """A dataset of the test server and dlt's staging dataset beside it, dropped if there."""
    con = psycopg2.connect(url)
    try:
        with con, con.cursor() as cur:
            for schema in (dataset, f"{dataset}_staging"):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        con.close()


def postgres():
    return dlt.destinations.postgres(PG_URL)


def warehouse_of(warehouse: str, workdir: Path, request) -> tuple[str, Any]:
    """The dataset and destination of a test run on `warehouse` ("duckdb" or "postgres", whose
    dataset is the test's pg_dataset fixture)."""
    if warehouse == "postgres":
        return request.getfixturevalue("pg_dataset"), postgres()
    return "serpstat", dlt.destinations.duckdb(str(workdir / "refdomains.duckdb"))
