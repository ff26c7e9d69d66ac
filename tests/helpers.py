"""Helpers to run the real pipeline against the emulator into a throwaway DuckDB file."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import dlt
import duckdb

from serpstat_refdomains import pipeline
from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.config import build_settings
from serpstat_refdomains.normalize import normalize_domain
from tests.conftest import TOKEN

RD = "SerpstatBacklinksProcedure.getRefDomains"


def fast_client(emulator, **options: Any) -> SerpstatClient:
    options = {"requests_per_second": None, "timeout": 5, "backoff_initial": 0.01, "backoff_max": 0.05,
               "max_attempts": 4, "max_retry_wait": 20, **options}
    return SerpstatClient(TOKEN, api_url=emulator.url, **options)


def run_pipeline(workdir: Path, emulator, domains: list, day: dt.date | None = None, *, client=None,
                 settings_options: dict | None = None, build_models: bool = False, destination: Any = None,
                 **options: Any) -> pipeline.RunReport:
    settings = build_settings(domains=domains, api_url=emulator.url, requests_per_second=1000,
                              **(settings_options or {}))
    own = client is None
    client = client or fast_client(emulator)
    try:
        return pipeline.run(
            settings, TOKEN, snapshot_date=day or emulator.today,
            destination=destination or dlt.destinations.duckdb(str(workdir / "refdomains.duckdb")),
            pipelines_dir=str(workdir / "pipelines"), build_models=build_models,
            progress=lambda fetcher: None, client=client, **options)
    finally:
        if own:
            client.close()


def query(workdir: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(workdir / "refdomains.duckdb"), read_only=True) as con:
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
    return dict(zip(columns, rows[0])) if rows else {}


def truth(emulator, target: str, day: dt.date | None = None, last_week: bool = False) -> set[str]:
    return {normalize_domain(n) for n in emulator.graph.truth(target, day or emulator.today, last_week=last_week)}


def ref_requests(emulator, target: str | None = None) -> list:
    return [e for e in emulator.log if e.method == RD and (target is None or e.query == target)]


def snapshot_cost(total: int, size: int = 1000) -> int:
    """Credits of one unpartitioned snapshot: its rows (an empty answer costs 1) plus the shift
    guard's two 1-row probes at each seam between pages."""
    return max(total, 1) + 2 * max(math.ceil(total / size) - 1, 0)
