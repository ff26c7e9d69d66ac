"""5. Model build time over 1,000,000 ref_domains rows (10 targets x 10 weekly snapshots x 10,000),
on DuckDB and on PostgreSQL. The rows churn from one snapshot to the next (new, lost, returning).
On a shared machine compare `cpu_seconds` (DuckDB), or run two versions back to back."""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import dlt
from common import workdir

from serpstat_refdomains import models

TARGETS, SNAPSHOTS, ROWS = 10, 10, 10_000
START = dt.date(2026, 1, 5)
PG_URL = os.environ.get("REFDOMAINS_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")

# Donor n of target t is present in snapshot s when (n + 700*s) mod 13000 < 10000: a sliding window
# that loses and gains 700 donors a week, and brings some back later.
DATA_SQL = """
CREATE SCHEMA IF NOT EXISTS {ds};
DROP TABLE IF EXISTS {ds}.ref_domains CASCADE;
DROP TABLE IF EXISTS {ds}.snapshots CASCADE;
CREATE TABLE {ds}.ref_domains AS
SELECT
    'target' || t || '.com|domain_with_subdomains|full|'
        || CAST(CAST('{start}' AS DATE) + CAST(7 * s AS INTEGER) AS VARCHAR) AS snapshot_key,
    'target' || t || '.com' AS target_domain,
    'domain_with_subdomains' AS search_type,
    CAST(CAST('{start}' AS DATE) + CAST(7 * s AS INTEGER) AS DATE) AS snapshot_date,
    'full' AS snapshot_kind,
    'donor' || ((n + 700 * s) % 13000) || '.example' AS ref_domain,
    'donor' || ((n + 700 * s) % 13000) || '.example' AS domain_from,
    'donor' || ((n + 700 * s) % 13000) || '.example' AS registrable_domain,
    CAST(1 + n % 7 AS BIGINT) AS ref_pages,
    CAST(n % 100 AS BIGINT) AS domain_rank,
    CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS pulled_at
FROM {series_t} AS targets(t), {series_s} AS snaps(s), {series_n} AS donors(n);
CREATE TABLE {ds}.snapshots AS
SELECT snapshot_key, target_domain, search_type, snapshot_kind, snapshot_date,
       'none' AS filter_hash, 'complete' AS status, CAST(count(*) AS BIGINT) AS rows_loaded,
       CAST(count(*) AS BIGINT) AS expected_total, CAST(0 AS BIGINT) AS rows_rejected,
       CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS started_at, CAST(NULL AS TIMESTAMP WITH TIME ZONE) AS finished_at
FROM {ds}.ref_domains GROUP BY 1, 2, 3, 4, 5;
"""


def _series(dialect: str, n: int) -> str:
    """0 .. n-1 as a table function of the dialect."""
    return f"range({n})" if dialect == "duckdb" else f"generate_series(0, {n} - 1)"


def _sql(dialect: str, dataset: str) -> list[str]:
    text = DATA_SQL.format(ds=dataset, start=START, series_t=_series(dialect, TARGETS),
                           series_s=_series(dialect, SNAPSHOTS), series_n=_series(dialect, ROWS))
    if dialect == "postgres":
        text = text.replace("AS VARCHAR", "AS TEXT")
    return [s.strip() for s in text.split(";") if s.strip()]


def build(destination, dataset: str, dialect: str) -> dict:
    pipeline = dlt.pipeline("models_bench", destination=destination, dataset_name=dataset,
                            pipelines_dir=str(workdir("models") / "p"))
    with pipeline.sql_client() as client:
        for statement in _sql(dialect, dataset):
            client.execute_sql(statement)
    started, cpu = time.perf_counter(), time.process_time()
    models.build(pipeline)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    with pipeline.sql_client() as client:
        counts = {name: client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name(name)}")[0][0]
                  for name in ("new_ref_domains", "lost_ref_domains", "ref_domains_weekly", "ref_domains_current")}
    # CPU of this process: the whole build on DuckDB (in process), next to nothing on PostgreSQL
    return {"seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2), **counts}


def run(postgres: bool = True) -> dict:
    folder = workdir("models-duckdb")
    result = {"rows": TARGETS * SNAPSHOTS * ROWS,
              "duckdb": build(dlt.destinations.duckdb(str(folder / "m.duckdb")), "serpstat", "duckdb")}
    if postgres:
        try:
            result["postgres"] = build(dlt.destinations.postgres(PG_URL), "bench_models", "postgres")
        except Exception as error:  # reported, not fatal for the other numbers
            result["postgres"] = {"error": str(error).splitlines()[0]}
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, default=str))
