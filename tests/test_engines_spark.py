"""Every model, transpiled by the runner's own transpile() for Spark SQL (the engine of Databricks
and EMR), executed on a local Spark over the tables a DuckDB run loaded, gives DuckDB's rows: every
row of every model, keys included.

The history: the golden timeline (eight weeks of full and last_week runs of one churning target,
with an incomplete and a suspect_empty snapshot and a failed pull) and six weeks of a tracked site
with two competitors (the link gap's models), both loaded and built by the real pipeline on DuckDB.
The loaded tables go to parquet; Spark reads them as tables of a `serpstat` database and builds
the models in their build order, each as its file says (a view, or a table: an incremental model
is its whole SELECT at once, which is what its steps add up to).

`make engines` installs pyspark and runs this (Java 17 must be on the machine); `make test` leaves
it out (marker `engines`). REFDOMAINS_REQUIRE_SPARK=1 (set by `make engines`) turns a missing
pyspark or Java into a failure instead of a skip.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import shutil
import time
from pathlib import Path

import duckdb
import pytest

from serpstat_refdomains.constants import ATTEMPTS_TABLE, COMPETITORS_TABLE
from serpstat_refdomains.emulator import Profile, SerpstatEmulator
from serpstat_refdomains.models import SOURCE_TABLES, load_models, model_params, render, transpile
from tests.helpers import TOKEN, fast_client, run_pipeline
from tests.scenarios import replay_golden

# the history loads in about a minute and a half, Spark starts in about 20 s and builds the models
# in about a minute on two cores; pytest's default timeout (300 s) is for the whole test
pytestmark = [pytest.mark.engines, pytest.mark.timeout(1800)]

DATASET = "serpstat"
EXPORTED = sorted(SOURCE_TABLES | {ATTEMPTS_TABLE, COMPETITORS_TABLE})
GAP_START = dt.date(2026, 4, 6)  # a Monday, after the golden timeline
GAP_WEEKS = 6
SITE, RIVALS = "gap-site.com", ["rival-a.com", "rival-b.net"]


def _spark_or_skip():
    required = os.environ.get("REFDOMAINS_REQUIRE_SPARK") == "1"
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if required:
            raise
        pytest.skip("pyspark is not installed: `make engines` installs it")
    if shutil.which("java") is None:
        if required:
            pytest.fail("REFDOMAINS_REQUIRE_SPARK=1 but no `java` on PATH (Debian: openjdk-17-jre-headless)")
        pytest.skip("no Java on PATH: Spark needs a JRE (Debian: openjdk-17-jre-headless)")


def _replay_gap(workdir: Path) -> None:
    """Six weeks of a site and two churning competitors: a full run, then a last_week run, each week;
    a few donors shared by design (one the site already has, one it gains, one a rival drops)."""
    with SerpstatEmulator(token=TOKEN, seed=31, today=GAP_START) as emulator:
        graph = emulator.graph
        for domain, size in ((SITE, 120), (RIVALS[0], 100), (RIVALS[1], 140)):
            graph.set_profile(domain, Profile(base_size=size))
        graph.add_named(RIVALS[0], ["shared-old.org", "gained-later.com", "www.dropped-by-rival.io"], GAP_START, 50)
        graph.add_named(RIVALS[1], ["gained-later.com", "пример-гап.рф"], GAP_START, 30)
        graph.add_named(SITE, ["shared-old.org"], GAP_START, 20)
        domains = [{"query": SITE, "competitors": RIVALS}]
        with fast_client(emulator) as client:
            for week in range(GAP_WEEKS):
                day = GAP_START + dt.timedelta(weeks=week)
                emulator.today = day
                if week == 2:
                    graph.add_named(SITE, ["gained-later.com"], day, 40)
                if week == 3:
                    graph.remove_donors(RIVALS[0], [d for d in graph.donors(RIVALS[0])
                                                    if d.name == "www.dropped-by-rival.io"])
                for kind in ("full", "last_week"):
                    report = run_pipeline(workdir, emulator, domains, day, client=client, build_models=True,
                                          settings_options={"page_size": 100}, kind=kind)
                    assert report.models_error is None


@pytest.fixture(scope="module")
def duckdb_build(tmp_path_factory) -> tuple[Path, Path]:
    """The history loaded and built on DuckDB; the loaded tables exported to parquet."""
    workdir = tmp_path_factory.mktemp("engines")
    replay_golden(workdir)
    _replay_gap(workdir)
    exported = workdir / "parquet"
    exported.mkdir()
    with duckdb.connect(str(workdir / "refdomains.duckdb"), read_only=True) as con:
        for table in EXPORTED:
            con.execute(f"COPY {DATASET}.{table} TO '{exported / table}.parquet' (FORMAT parquet)")
    return workdir, exported


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    _spark_or_skip()
    from pyspark.sql import SparkSession

    started = time.monotonic()
    session = (SparkSession.builder.master("local[2]").appName("refdomains-engines")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.host", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.warehouse.dir", str(tmp_path_factory.mktemp("spark-warehouse")))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    print(f"\nSpark {session.version} started in {time.monotonic() - started:.1f} s")
    yield session
    session.stop()


def _normalized(value):
    """A value both engines' Python rows agree on when the SQL values are equal: numbers as
    Decimal (DuckDB's sums are HUGEINT, Spark's BIGINT or DECIMAL), times as UTC microseconds."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | decimal.Decimal):
        return decimal.Decimal(value).normalize()
    if isinstance(value, float):
        return decimal.Decimal(repr(round(value, 9))).normalize()
    if isinstance(value, dt.datetime):
        # DuckDB gives a zone, PySpark the session's (UTC) wall clock without one
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return (aware - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return value


def _rows(rows) -> list[tuple]:
    return sorted((tuple(_normalized(v) for v in row) for row in rows), key=repr)


def test_every_model_gives_duckdbs_rows_on_spark(duckdb_build, spark):
    workdir, exported = duckdb_build
    models = load_models()
    tables = set(SOURCE_TABLES) | {m.name for m in models}
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {DATASET}")
    for table in EXPORTED:
        spark.sql(f"CREATE TABLE {DATASET}.{table} USING parquet LOCATION '{exported / table}.parquet'")

    started = time.monotonic()
    timings = {}
    for model in models:
        sql = transpile(render(model, model_params(2)), "spark", DATASET, tables)
        # Databricks' SQL is Spark's: what runs here is what a Databricks destination runs
        assert transpile(render(model, model_params(2)), "databricks", DATASET, tables) == sql, model.name
        kind = "VIEW" if model.materialized == "view" else "TABLE"
        using = "" if kind == "VIEW" else " USING parquet"
        one = time.monotonic()
        spark.sql(f"CREATE {kind} {DATASET}.{model.name}{using} AS {sql}")
        timings[model.name] = time.monotonic() - one
    print(f"{len(models)} models built on Spark in {time.monotonic() - started:.1f} s")

    compared, differing = {}, {}
    with duckdb.connect(str(workdir / "refdomains.duckdb"), read_only=True) as con:
        for model in models:
            duck = con.execute(f"SELECT * FROM {DATASET}.{model.name}")
            duck_columns = [d[0] for d in duck.description]
            duck_rows = _rows(duck.fetchall())
            frame = spark.sql(f"SELECT * FROM {DATASET}.{model.name}")
            assert frame.columns == duck_columns, model.name
            spark_rows = _rows(frame.collect())
            compared[model.name] = len(duck_rows)
            if spark_rows != duck_rows:
                differing[model.name] = (sorted(set(duck_rows) - set(spark_rows), key=repr)[:3],
                                         sorted(set(spark_rows) - set(duck_rows), key=repr)[:3])
        # the comparison sees a difference where there is one: the key as stg_snapshots built it
        # before (epoch(): fractions of a second on DuckDB, whole seconds on Spark) differs
        stg = next(m for m in models if m.name == "stg_snapshots")
        old = render(stg, {}).replace("epoch_us(finished_at)", "epoch(finished_at)")
        old_duck = _rows(con.execute(transpile(old, "duckdb", DATASET, tables)).fetchall())
        old_spark = _rows(spark.sql(transpile(old, "spark", DATASET, tables)).collect())
        assert len(old_duck) == len(old_spark) == compared["stg_snapshots"] and old_duck != old_spark
    print(f"rows compared: {sum(compared.values())} in {len(compared)} models: {compared}")
    assert differing == {}
    # the comparison compared something: every model the history can fill has rows
    empty = {name for name, count in compared.items() if count == 0}
    assert empty == set(), f"models without rows in the history: {sorted(empty)}"
