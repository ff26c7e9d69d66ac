"""The database's own share of a load: DuckDB alone copying and merging snapshots (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json
import time

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from common import workdir

from serpstat_refdomains.rows import REF_DOMAINS_SCHEMA

SNAPSHOTS, ROWS = 6, 55_000


def snapshot_file(path: str) -> None:
    n = ROWS
    names = [f"donor{i}.example{i % 7}.com" for i in range(n)]
    table = pa.Table.from_arrays([
        pa.array(["key"] * n), pa.array(["target.com"] * n), pa.array(["domain_with_subdomains"] * n),
        pa.array([dt.date(2026, 3, 2)] * n, pa.date32()), pa.array(["full"] * n), pa.array(names),
        pa.array([name.upper() for name in names]), pa.array([name.split(".", 1)[1] for name in names]),
        pa.array([i % 97 for i in range(n)], pa.int64()), pa.array([i % 100 for i in range(n)], pa.int64()),
        pa.array([dt.datetime(2026, 3, 2, 6, tzinfo=dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
    ], schema=REF_DOMAINS_SCHEMA)
    pq.write_table(table, path, compression="snappy")  # what dlt's extract writes


def run() -> dict:
    folder = workdir("duckdb-share")
    source = str(folder / "snapshot.parquet")
    snapshot_file(source)
    con = duckdb.connect(str(folder / "share.duckdb"))
    con.execute("SET threads = 1")
    con.execute("SET memory_limit = '64MB'")
    con.execute(f"CREATE TABLE staging AS SELECT * FROM read_parquet('{source}') LIMIT 0")
    con.execute(f"CREATE TABLE ref_domains AS SELECT * FROM read_parquet('{source}') LIMIT 0")
    copy = merge = 0.0
    for i in range(SNAPSHOTS):
        con.execute("BEGIN")
        con.execute("DELETE FROM staging WHERE 1=1")
        start = time.perf_counter()
        con.execute(f"INSERT INTO staging BY NAME SELECT * REPLACE ('k{i}' AS snapshot_key) "
                    f"FROM read_parquet('{source}')")
        copied = time.perf_counter()
        con.execute("DELETE FROM ref_domains AS d WHERE EXISTS "
                    "(SELECT 1 FROM staging AS s WHERE d.snapshot_key = s.snapshot_key)")
        con.execute("INSERT INTO ref_domains SELECT * FROM staging")
        con.execute("COMMIT")
        copy += copied - start
        merge += time.perf_counter() - copied
    start = time.perf_counter()
    con.close()  # the final checkpoint
    close = time.perf_counter() - start
    rows = SNAPSHOTS * ROWS
    return {"rows": rows, "copy_s": copy, "merge_s": merge, "close_s": close,
            "us_per_row": (copy + merge + close) / rows * 1e6, "copy_us_per_row": copy / rows * 1e6}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
