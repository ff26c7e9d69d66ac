"""`refdomains report`: what it reads from the models, and `status`'s table.

The report covers a period (README: Dashboards). Each tracked domain comes with its competitors
and its link gap; every series carries its role, read from `target_competitors` (the latest run's
configuration). The counts are report_periods.py's, so new - lost is the change in size. The
formats are report_flat.py (text, CSV, JSON) and report_html.py (one self-contained page).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import dlt

from . import gap_report
from .constants import (
    ATTEMPTS_TABLE,
    COMPETITORS_TABLE,
    DEFAULT_LOST_CONFIRMATION_SNAPSHOTS,
    SNAPSHOTS_TABLE,
    STATUS_COMPLETE,
    STATUS_SUSPECT_EMPTY,
)
from .errors import ConfigError, UsageError
from .rendering import text_table
from .report_periods import Row, Summary, summarize
from .warehouse import table_exists

# The ledger's columns in the report, and in `refdomains status`.
LEDGER_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "requests", "credits_spent", "credits_left", "error"]
STATUS_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "credits_spent"]

FORMATS = ("text", "csv", "json", "html")

NEW_COLUMNS = ["target_domain", "search_type", "ref_domain", "ref_domain_unicode", "registrable_domain", "detected_on",
               "previous_snapshot_date", "detected_by", "is_returning", "domain_rank", "ref_pages"]
LOST_COLUMNS = ["target_domain", "search_type", "ref_domain", "ref_domain_unicode", "registrable_domain", "lost_on",
                "last_seen_on", "domain_rank", "ref_pages", "returned_on", "consecutive_absences", "confirmed"]
GAP_CHANGE_COLUMNS = ["target_domain", "search_type", "change", "won", "event_date"]

TRACKED, COMPETITOR, UNCONFIGURED = "tracked", "competitor", "unconfigured"


@dataclass
class Series:
    """One target and search type the report covers, with its role and its summary."""

    target_domain: str
    search_type: str
    role: str  # TRACKED, COMPETITOR, or UNCONFIGURED: loaded, but not in the latest run's configuration
    competitor_of: list[str] = field(default_factory=list)  # tracked domains that name it
    competitors: list[tuple[str, str]] = field(default_factory=list)  # a tracked domain's, as series keys
    sizes: list[tuple[dt.date, int]] = field(default_factory=list)  # readable full snapshots
    summary: Summary = field(default_factory=lambda: summarize([], [], []))

    @property
    def key(self) -> tuple[str, str]:
        return self.target_domain, self.search_type

    @property
    def label(self) -> str:
        """The role as a reader sees it, on every line that names the series."""
        rival = f"competitor of {', '.join(self.competitor_of)}" if self.competitor_of else ""
        if self.role == TRACKED:
            return f"tracked; {rival}" if rival else "tracked"
        return rival or "not in the latest run's configuration"


# an alert and the headlines count different things; said wherever both show
ALERT_SCOPE = ("An alert carries the events its channel has not received (for a first alert, all of them), "
               "each new detection once, last_week's included: its counts are not the period's.")


@dataclass
class AlertPreview:
    """What the next alert would send (the demo's `alerts --dry-run`), as parts every format shows:
    per tracked domain, each kind's heading, its count and the lines listed."""

    recipients: str
    title: str
    domains: list[tuple[str, list[tuple[str, int, list[str]]]]]
    credits: str


@dataclass
class ReportData:
    domain: str | None
    since: dt.date | None
    until: dt.date | None = None
    confirm_after: int = DEFAULT_LOST_CONFIRMATION_SNAPSHOTS  # lost_confirmation_snapshots
    series: list[Series] = field(default_factory=list)  # each tracked domain, then its competitors
    gap: list[Row] = field(default_factory=list)  # link_gap
    gap_changes: list[Row] = field(default_factory=list)  # link_gap_changes in the period
    ledger: list[Row] = field(default_factory=list)
    alerts: AlertPreview | None = None

    def groups(self) -> list[tuple[Series, list[Series]]]:
        """Each tracked (or unconfigured) series with its competitors' series; a competitor of two
        tracked domains is in both groups, and one reported without them (--domain) stands alone."""
        by_key = {s.key: s for s in self.series}
        covered = {k for s in self.series if s.role != COMPETITOR for k in s.competitors}
        return [(s, [by_key[k] for k in s.competitors if k in by_key]) for s in self.series
                if s.role != COMPETITOR or s.key not in covered]

    def rows(self, part: str) -> list[Row]:
        """Every series' rows of one part (new, lost, last_week_only), each with its role."""
        return [{**row, "role": s.label} for s in self.series for row in getattr(s.summary, part)]

    @property
    def new(self) -> list[Row]:
        return self.rows("new")

    @property
    def lost(self) -> list[Row]:
        return self.rows("lost")

    def credits(self) -> list[Row]:
        spent: dict[dt.date, int] = {}
        for row in self.ledger:
            spent[row["snapshot_date"]] = spent.get(row["snapshot_date"], 0) + int(row["credits_spent"] or 0)
        return [{"snapshot_date": day, "credits_spent": n} for day, n in sorted(spent.items())]


def select_rows(client: Any, table: str, columns: list[str], order: str, domains: list[str] | None = None,
                dates: tuple[str, dt.date | None, dt.date | None] | None = None) -> list[Row]:
    """One table's rows as dicts, of some targets and within dates (column, from, to; inclusive)
    when given; every user value goes in as a query parameter."""
    conditions: list[str] = []
    params: list[Any] = []
    if domains is not None:
        conditions.append(f"target_domain IN ({', '.join(['%s'] * len(domains))})" if domains else "1 = 0")
        params += domains
    column, start, end = dates or ("", None, None)
    for bound, operator in ((start, ">="), (end, "<=")):
        if bound is not None:
            conditions.append(f"{column} {operator} %s")
            params.append(bound)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {', '.join(columns)} FROM {client.make_qualified_table_name(table)}{where} ORDER BY {order}"
    return [dict(zip(columns, row, strict=False)) for row in client.execute_sql(sql, *params) or []]


def collect(pipeline: dlt.Pipeline, domain: str | None = None, since: dt.date | None = None,
            until: dt.date | None = None, *, confirm_after: int = DEFAULT_LOST_CONFIRMATION_SNAPSHOTS) -> ReportData:
    """Read the models for the period since..until (inclusive) and one domain's group, or all.
    UsageError when `domain` is neither loaded nor configured; ConfigError before a models build."""
    data = ReportData(domain=domain, since=since, until=until, confirm_after=confirm_after)
    with pipeline.sql_client() as client:
        if not table_exists(client, "new_ref_domains"):
            raise ConfigError("the models are not built yet: run `refdomains models` (or `refdomains run`)")
        sizes = _full_sizes(client)
        series = _series(client, sizes)
        chosen = _chosen(series, domain)
        names = sorted({s.target_domain for s in chosen})
        new = select_rows(client, "new_ref_domains", NEW_COLUMNS, "domain_rank DESC NULLS LAST, ref_domain", names)
        lost = select_rows(client, "lost_ref_domains", LOST_COLUMNS, "domain_rank DESC NULLS LAST, ref_domain", names)
        for s in chosen:
            mine = [r for r in new if (r["target_domain"], r["search_type"]) == s.key]
            gone = [r for r in lost if (r["target_domain"], r["search_type"]) == s.key]
            s.summary = summarize(s.sizes, mine, gone, since, until)
        data.series = chosen
        tracked = sorted({s.target_domain for s in chosen if s.role != COMPETITOR})
        data.ledger = select_rows(client, SNAPSHOTS_TABLE, LEDGER_COLUMNS,
                                  "snapshot_date, target_domain, search_type, snapshot_kind", names,
                                  ("snapshot_date", since, until))
        if table_exists(client, "link_gap"):  # not in models built before the link gap existed
            data.gap = select_rows(client, "link_gap", gap_report.COLUMNS, gap_report.ORDER, tracked,
                                   ("in_gap_since", since, until))
            data.gap_changes = select_rows(client, "link_gap_changes", GAP_CHANGE_COLUMNS,
                                           "target_domain, event_date", tracked, ("event_date", since, until))
    return data


def _full_sizes(client: Any) -> dict[tuple[str, str], list[tuple[dt.date, int]]]:
    """The readable full snapshots of every series, from stg_snapshots: the ones the models compare.
    The ledger's `complete` ones are not enough: a full snapshot with a rejected row, or whose load
    was cut, is complete there and compared around by the models, and its size would not add up."""
    sizes: dict[tuple[str, str], list[tuple[dt.date, int]]] = {}
    for row in client.execute_sql(
            f"SELECT target_domain, search_type, snapshot_date, rows_loaded FROM "
            f"{client.make_qualified_table_name('stg_snapshots')} WHERE snapshot_kind = 'full' "
            f"ORDER BY snapshot_date") or []:
        sizes.setdefault((row[0], row[1]), []).append((row[2], int(row[3])))
    return sizes


def _series(client: Any, sizes: dict[tuple[str, str], list[tuple[dt.date, int]]]) -> list[Series]:
    """Every series loaded or configured, in report order, with its role."""
    pairs = []  # a dataset no run of this version wrote: every series is taken as tracked
    if table_exists(client, COMPETITORS_TABLE):
        pairs = select_rows(client, COMPETITORS_TABLE, ["target_domain", "search_type", "competitor_domain",
                                                        "competitor_search_type"],
                            "target_domain, search_type, competitor_domain")
    loaded = {(r[0], r[1]) for r in client.execute_sql(
        f"SELECT DISTINCT target_domain, search_type FROM {client.make_qualified_table_name(SNAPSHOTS_TABLE)}") or []}
    tracked = {(p["target_domain"], p["search_type"]) for p in pairs}
    rivals = {(p["competitor_domain"], p["competitor_search_type"]) for p in pairs if p["competitor_domain"]}
    everything: dict[tuple[str, str], Series] = {}
    for key in sorted(loaded | set(sizes) | tracked | rivals):
        role = TRACKED if key in tracked or not pairs else COMPETITOR if key in rivals else UNCONFIGURED
        everything[key] = Series(key[0], key[1], role, sizes=sizes.get(key, []))
    for p in pairs:
        if p["competitor_domain"]:
            rival = (p["competitor_domain"], p["competitor_search_type"])
            everything[(p["target_domain"], p["search_type"])].competitors.append(rival)
            everything[rival].competitor_of.append(p["target_domain"])
    ordered: list[Series] = []
    for s in everything.values():
        if s.role != COMPETITOR:
            ordered += [s, *(everything[k] for k in s.competitors if everything[k].role == COMPETITOR)]
    return list({s.key: s for s in ordered}.values())


def _chosen(series: list[Series], domain: str | None) -> list[Series]:
    """All series, or one domain's: a tracked domain's group (it and its competitors), or the
    domain alone."""
    if domain is None:
        return series
    mine = [s for s in series if s.target_domain == domain]
    if not mine:
        named = list({s.target_domain: f"{s.target_domain} ({s.label})" for s in series}.values())
        have = ", ".join(named[:12]) or "nothing yet"
        more = f" and {len(named) - 12} more" if len(named) > 12 else ""
        raise UsageError(f"--domain {domain} is not loaded or configured here: this dataset has {have}{more}")
    keys = {k for s in mine if s.role != COMPETITOR for k in s.competitors} | {s.key for s in mine}
    return [s for s in series if s.key in keys]


def render(data: ReportData, fmt: str) -> str:
    from . import report_flat, report_html

    renderers = {"text": report_flat.render_text, "csv": report_flat.render_csv, "json": report_flat.render_json,
                 "html": report_html.render_html}
    return renderers[fmt](data)


# --- status --------------------------------------------------------------------------------
def latest_snapshots(pipeline: dlt.Pipeline) -> tuple[list[dict[str, Any]], int]:
    """The latest snapshot of each (target, search type, kind), and credits spent this month (UTC).

    Credits are summed over `snapshot_attempts`, every fetch attempt whatever became of it: the
    ledger keeps only each snapshot's latest attempt. A dataset loaded before that table existed
    falls back to the ledger."""
    month_start = dt.datetime(*dt.datetime.now(dt.UTC).date().replace(day=1).timetuple()[:3],
                              tzinfo=dt.UTC)
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(SNAPSHOTS_TABLE)
        rows = client.execute_sql(
            f"SELECT {', '.join(STATUS_COLUMNS)} FROM (SELECT *, row_number() OVER (PARTITION BY target_domain, "
            f"search_type, snapshot_kind ORDER BY snapshot_date DESC) AS recency FROM {table}) latest "
            f"WHERE recency = 1 ORDER BY target_domain, search_type, snapshot_kind")
        if table_exists(client, ATTEMPTS_TABLE):
            table = client.make_qualified_table_name(ATTEMPTS_TABLE)
        spent = client.execute_sql(f"SELECT coalesce(sum(credits_spent), 0) FROM {table} WHERE started_at >= %s",
                                   month_start)
    return [dict(zip(STATUS_COLUMNS, row, strict=False)) for row in rows or []], int(spent[0][0] if spent else 0)


def render_status(rows: list[dict[str, Any]], spent_this_month: int, balance: str) -> str:
    if not rows:
        return "No snapshots loaded yet: run `refdomains run`.\n" + f"Serpstat balance: {balance}\n"
    out = text_table(rows, STATUS_COLUMNS)
    out += ["", f"Credits spent this month: {spent_this_month}", f"Serpstat balance: {balance}"]
    failing = [r for r in rows if r["status"] not in (STATUS_COMPLETE, STATUS_SUSPECT_EMPTY)]
    if failing:
        out.append(f"{len(failing)} latest snapshot(s) not complete: `refdomains run` fetches them again "
                   "(completed ones cost nothing)")
    return "\n".join(out) + "\n"
