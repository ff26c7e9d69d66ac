"""5. Model build time over 1,000,000 ref_domains rows (10 targets x 10 weekly snapshots x 10,000),
on DuckDB and on PostgreSQL. The rows churn from one snapshot to the next (new, lost, returning)."""

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
    'target' || t || '.com|domain_with_subdomains|full|' || CAST(CAST('{start}' AS DATE) + CAST(7 * s AS INTEGER) AS VARCHAR) AS snapshot_key,
    'target' || t || '.com' AS target_domain,
    'domain_with_subdomains' AS search_type,
    CAST(CAST('{start}' AS DATE) + CAST(7 * s AS INTEGER) AS DATE) AS snapshot_date,
    'full' AS snapshot_kind,
    'donor' || ((n + 700 * s) % 13000) || '.example' AS ref_domain,
    'donor' || ((n + 700 * s) % 13000) || '.example' AS domain_from,
    'donor' || ((n + 700 * s) % 13000) || '.example' AS registrable_domain,
    CAST(1 + n % 7 AS BIGINT) AS ref_pages,
    CAST(n % 100 AS BIGINT) AS domain_rank
FROM {series_t} AS targets(t), {series_s} AS snaps(s), {series_n} AS donors(n);
CREATE TABLE {ds}.snapshots AS
SELECT snapshot_key, target_domain, search_type, snapshot_kind, snapshot_date,
       'none' AS filter_hash, 'complete' AS status, CAST(count(*) AS BIGINT) AS rows_loaded,
       CAST(count(*) AS BIGINT) AS expected_total
FROM {ds}.ref_domains GROUP BY 1, 2, 3, 4, 5;
"""


def _sql(dialect: str, dataset: str) -> list[str]:
    if dialect == "duckdb":
        series = lambda n: f"range({n})"  # noqa: E731
    else:
        series = lambda n: f"generate_series(0, {n} - 1)"  # noqa: E731
    text = DATA_SQL.format(ds=dataset, start=START, series_t=series(TARGETS), series_s=series(SNAPSHOTS),
                           series_n=series(ROWS))
    if dialect == "postgres":
        text = text.replace("AS VARCHAR", "AS TEXT").replace("CAST('{start}' AS DATE) + CAST(7 * s AS INTEGER)", "")
    return [s.strip() for s in text.split(";") if s.strip()]


def build(destination, dataset: str, dialect: str) -> dict:
    pipeline = dlt.pipeline("models_bench", destination=destination, dataset_name=dataset,
                            pipelines_dir=str(workdir("models") / "p"))
    with pipeline.sql_client() as client:
        for statement in _sql(dialect, dataset):
            client.execute_sql(statement)
    started = time.perf_counter()
    models.build(pipeline)
    seconds = time.perf_counter() - started
    with pipeline.sql_client() as client:
        counts = {name: client.execute_sql(f"SELECT count(*) FROM {client.make_qualified_table_name(name)}")[0][0]
                  for name in ("new_ref_domains", "lost_ref_domains", "ref_domains_weekly", "ref_domains_current")}
    return {"seconds": seconds, **counts}


def run(postgres: bool = True) -> dict:
    folder = workdir("models-duckdb")
    result = {"rows": TARGETS * SNAPSHOTS * ROWS,
              "duckdb": build(dlt.destinations.duckdb(str(folder / "m.duckdb")), "serpstat", "duckdb")}
    if postgres:
        try:
            result["postgres"] = build(dlt.destinations.postgres(PG_URL), "bench_models", "postgres")
        except Exception as error:  # noqa: BLE001 - reported, not fatal for the other numbers
            result["postgres"] = {"error": str(error).splitlines()[0]}
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, default=str))
