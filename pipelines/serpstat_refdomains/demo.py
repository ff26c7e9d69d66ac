"""`refdomains demo`: the whole product offline, in under a minute, with no Serpstat account.

Starts the emulator on a free port, replays weekly runs into its own folder (its own DuckDB file
and dlt working folder, never the user's pipeline), builds the models and writes a report.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Callable

import dlt

from . import pipeline, report
from .client import SerpstatClient
from .config import build_settings
from .emulator import Fault, Profile, SerpstatEmulator

DEMO_TOKEN = "demo-token"
DEMO_START = dt.date(2026, 9, 7)  # a Monday
DEMO_TARGETS = {"acme-shop.com": 900, "news-portal.org": 1600, "travel-blog.net": 400}
DATABASE = "refdomains_demo.duckdb"


def run_demo(weeks: int = 6, directory: str | Path = "demo", say: Callable[[str], None] = print) -> Path:
    """Replay `weeks` weekly runs; returns the path of the HTML report."""
    folder = Path(directory)
    for stale in (folder / DATABASE, folder / "pipelines"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    destination = dlt.destinations.duckdb(str(folder / DATABASE))

    with SerpstatEmulator(token=DEMO_TOKEN, seed=2026, today=DEMO_START) as emulator:
        for target, size in DEMO_TARGETS.items():
            emulator.graph.set_profile(target, Profile(base_size=size))
        settings = build_settings(domains=list(DEMO_TARGETS), requests_per_second=1000, api_url=emulator.url)
        with SerpstatClient(DEMO_TOKEN, api_url=emulator.url, requests_per_second=None,
                            backoff_initial=0.05, backoff_max=0.2) as client:
            for week in range(weeks):
                day = DEMO_START + dt.timedelta(weeks=week)
                emulator.today = day
                if week == 2:  # a flaky API week: the client retries, nothing is lost or paid twice
                    emulator.faults.add(Fault("http_error", query="news-portal.org", page=2, status=503, times=2))
                result = pipeline.run(settings, DEMO_TOKEN, snapshot_date=day, kind="auto",
                                      destination=destination, pipelines_dir=str(folder / "pipelines"),
                                      build_models=week == weeks - 1, progress=lambda fetcher: None,
                                      client=client)
                statuses = ", ".join(sorted({r.status for r in result.results}))
                say(f"week {week + 1}/{weeks} {day}: {len(result.results)} snapshots ({statuses}), "
                    f"{result.credits_spent} credits")
        demo_pipeline = pipeline.make_pipeline(destination, None, str(folder / "pipelines"))
        data = report.collect(demo_pipeline)
    text = report.render_text(data)
    say("")
    say("\n".join(text.splitlines()[:40]))
    out = folder / "report.html"
    out.write_text(report.render_html(data), encoding="utf-8")
    say(f"\nDatabase: {folder / DATABASE}  (dataset `serpstat`; try the tables new_ref_domains, lost_ref_domains)")
    say(f"HTML report: {out}")
    return out
