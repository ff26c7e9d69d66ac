"""`refdomains demo`: the whole product offline, in under a minute, with no Serpstat account.

Starts the emulator on a free port and replays weekly runs into a folder of its own, laid out like
a project (`serpstat_refdomains.duckdb` and dlt's working folder under `.dlt/pipelines/`), so
`refdomains report` and `status` run in it read the demo's data; builds the models and writes a
report.
acme-shop.com is tracked with two competitors: the report shows its link gap, and the demo prints
what `refdomains alerts --dry-run` would send.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path

import dlt

from . import alerts, gap_report, pipeline, report, warehouse
from .client import SerpstatClient
from .config import build_settings
from .constants import DATASET_NAME, PIPELINE_NAME
from .emulator import Fault, Profile, SerpstatEmulator
from .report_periods import describe

DEMO_TOKEN = "demo-token"
DEMO_START = dt.date(2026, 9, 7)  # a Monday
DEMO_TARGETS = {"acme-shop.com": 900, "news-portal.org": 1600, "travel-blog.net": 400}
DEMO_COMPETITORS = {"acme-shop.com": {"shopmart-rival.com": 500, "bargain-hub.net": 350}}
# Sites that link to both competitors, then to acme-shop.com too (the gap won), or that a
# competitor drops: scripted on top of the emulator's independent link graphs, which rarely share
# a donor by chance.
SHARED_DONORS = ["trade-journal.com", "www.retail-weekly.net", "bücher-markt.de", "deals-forum.org",
                 "blog.consumer-guide.co.uk", "price-watch.io"]
# a host of a site that already links to acme-shop.com through another host (site_already_links)
SISTER_HOSTS = ("blog.partner-site.com", "shop.partner-site.com")
WON_IN_WEEK = 3  # acme-shop.com gets a link from the first two shared donors
DATABASE = f"{PIPELINE_NAME}.duckdb"


def run_demo(weeks: int = 6, directory: str | Path = "demo", say: Callable[[str], None] = print) -> Path:
    """Replay `weeks` weekly runs; returns the path of the HTML report."""
    folder = Path(directory)
    for stale in (folder / DATABASE, folder / ".dlt" / "pipelines"):
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    destination = dlt.destinations.duckdb(str(folder.resolve() / DATABASE))

    with SerpstatEmulator(token=DEMO_TOKEN, seed=2026, today=DEMO_START) as emulator:
        for target, size in DEMO_TARGETS.items():
            emulator.graph.set_profile(target, Profile(base_size=size))
        domains: list = []
        for target in DEMO_TARGETS:
            rivals = DEMO_COMPETITORS.get(target, {})
            domains.append({"query": target, "competitors": list(rivals)} if rivals else target)
            for rival, size in rivals.items():
                emulator.graph.set_profile(rival, Profile(base_size=size))
                emulator.graph.add_named(rival, SHARED_DONORS + list(SISTER_HOSTS[:1]),
                                         DEMO_START - dt.timedelta(days=30), rank=100)
            if rivals:
                emulator.graph.add_named(target, list(SISTER_HOSTS[1:]), DEMO_START - dt.timedelta(days=30), rank=100)
        settings = build_settings(domains=domains, requests_per_second=1000, api_url=emulator.url)
        with SerpstatClient(DEMO_TOKEN, api_url=emulator.url, requests_per_second=None,
                            backoff_initial=0.05, backoff_max=0.2) as client:
            for week in range(weeks):
                day = DEMO_START + dt.timedelta(weeks=week)
                emulator.today = day
                if week == 2:  # a flaky API week: the client retries, nothing is lost or paid twice
                    emulator.faults.add(Fault("http_error", query="news-portal.org", page=2, status=503, times=2))
                if week == WON_IN_WEEK:  # two gap donors now link to acme-shop.com too: gaps won
                    emulator.graph.add_named("acme-shop.com", SHARED_DONORS[:2], day, rank=100)
                result = pipeline.run(settings, DEMO_TOKEN, snapshot_date=day, kind="auto",
                                      destination=destination, now=dt.datetime.combine(day, dt.time(12), dt.UTC),
                                      pipelines_dir=warehouse.working_folder(destination, DATASET_NAME, str(folder)),
                                      build_models=week == weeks - 1, progress=lambda fetcher: None,
                                      client=client)
                statuses = ", ".join(sorted({r.status for r in result.results}))
                say(f"week {week + 1}/{weeks} {day}: {len(result.results)} snapshots ({statuses}), "
                    f"{result.credits_spent} credits")
        demo_pipeline = warehouse.make_pipeline(destination, None, project=str(folder))
        data = report.collect(demo_pipeline)
        recipients, alert = alerts.previews(demo_pipeline, settings)[0]
        data.alerts = report.AlertPreview(recipients, *alert.outline())
    say("")
    for series in data.series:  # each headline adds up: net = new - lost = the change in size
        say(f"{series.target_domain} ({series.label}): {describe(series.summary.change)}")
        if series.summary.latest:
            say(f"  latest week: {describe(series.summary.latest)}")
    gap = [r for r in data.gap if r["target_domain"] == "acme-shop.com"]
    shown = gap_report.text_section(gap, gap_report.period_counts(data.gap_changes, "acme-shop.com"))
    say("\n".join(shown[:13]))
    say(f"… and {len(gap) - 10} more in {folder / 'report.html'}")
    with demo_pipeline.sql_client() as client:
        changes = client.execute_sql(
            f"SELECT change, count(*), sum(CASE WHEN won THEN 1 ELSE 0 END) FROM "
            f"{client.make_qualified_table_name('link_gap_changes')} GROUP BY change ORDER BY change") or []
    say("Link-gap changes over the weeks: " + ", ".join(
        f"{n} {change}" + (f" ({won} won: the donor now links to acme-shop.com)" if change == "gap_closed" else "")
        for change, n, won in changes))
    say("")
    # the first tracked domain's part of the message; report.html has all of it
    preview = [f"alerts (dry run, nothing sent) for {recipients}:", *alert.text().splitlines()]
    ends = [i for i, line in enumerate(preview) if line.startswith("*") and i > 2]
    say("\n".join(preview[:ends[0]] if ends else preview))
    if ends:
        say(f"… and the other tracked domains' events: the whole message is in {folder / 'report.html'}")
    out = folder / "report.html"
    out.write_text(report.render(data, "html"), encoding="utf-8")
    say(f"\nDatabase: {folder / DATABASE}  (dataset `serpstat`; try the tables new_ref_domains, lost_ref_domains, "
        "link_gap, link_gap_changes)")
    say(f"HTML report: {out}")
    return out
