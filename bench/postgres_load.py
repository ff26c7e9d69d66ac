"""Rows/s of `refdomains run` into PostgreSQL beside DuckDB (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import psycopg2
from common import TOKEN, measure, pipeline_env, refdomains, workdir

from serpstat_refdomains.emulator import SerpstatEmulator

DAY = dt.date(2026, 3, 2)
TARGETS = {f"pg{i}.com": 50_000 for i in range(4)}
PG_URL = os.environ.get("REFDOMAINS_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")


def run() -> dict:
    rows = sum(TARGETS.values())
    dataset = f"bench_{uuid.uuid4().hex[:8]}"
    result = {"rows": rows}
    with SerpstatEmulator(token=TOKEN, today=DAY, balance=10**9) as emu:
        for domain, size in TARGETS.items():
            emu.set_profile(domain, size)
        for name, flags in (("duckdb", []), ("postgres", ["--destination", "postgres", "--dataset-name", dataset])):
            folder = workdir(f"load-{name}")
            env = pipeline_env(folder, emu.url, list(TARGETS), DESTINATION__POSTGRES__CREDENTIALS=PG_URL)
            measured = measure(refdomains("run", "--kind", "full", "--no-models", *flags, on=DAY), env=env,
                               cwd=folder)
            result[f"{name}_s"] = measured.seconds
            result[f"{name}_rows_s"] = rows / measured.seconds
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{dataset}".ref_domains')
        result["postgres_rows_loaded"] = cur.fetchone()[0]
        cur.execute(f'DROP SCHEMA "{dataset}" CASCADE')
        cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    return result


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
