"""`refdomains report`: what it reads from the models, and `status`'s table.

The report covers a period (docs/reporting.md). Each tracked domain comes with its competitors
and its link gap; every series carries its role, read from `target_competitors` (the latest run's
configuration). The counts are report_periods.py's, so new - lost is the change in size. The
formats are report_flat.py (text, CSV, JSON) and report_html.py (one self-contained page).
"""

from __future__ import annotations

import datetime as dt
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
from .report_data import (
    COMPETITOR,
    GAP_CHANGE_COLUMNS,
    LEDGER_COLUMNS,
    LOST_COLUMNS,
    NEW_COLUMNS,
    TRACKED,
    UNCONFIGURED,
    AlertPreview,
    ReportData,
    Series,
)
from .report_periods import Row, summarize
from .warehouse import table_exists

__all__ = ["FORMATS", "AlertPreview", "ReportData", "Series", "collect", "latest_snapshots", "render",
           "render_status"]

# The ledger's columns in `refdomains status`.
STATUS_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "credits_spent"]

FORMATS = ("text", "csv", "json", "html")


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


def render_status(rows: list[dict[str, Any]], spent_this_month: int, balance: str,
                  today: dt.date | None = None) -> str:
    """The latest snapshots' table; one dated after `today` (UTC; filed by --snapshot-date in the
    UTC+14 window or by a clock ahead) is marked as such, not shown as the plain latest state."""
    if not rows:
        return "No snapshots loaded yet: run `refdomains run`.\n" + f"Serpstat balance: {balance}\n"
    today = today or dt.datetime.now(dt.UTC).date()
    ahead = [r for r in rows if _as_date(r["snapshot_date"]) > today]
    shown = [{**r, "snapshot_date": f"{r['snapshot_date']} (future)"} if r in ahead else r for r in rows]
    out = text_table(shown, STATUS_COLUMNS)
    out += ["", f"Credits spent this month: {spent_this_month}", f"Serpstat balance: {balance}"]
    failing = [r for r in rows if r["status"] not in (STATUS_COMPLETE, STATUS_SUSPECT_EMPTY)]
    if failing:
        out.append(f"{len(failing)} latest snapshot(s) not complete: `refdomains run` fetches them again "
                   "(completed ones cost nothing)")
    if ahead:
        out.append(f"{len(ahead)} latest snapshot(s) dated after today ({today}, UTC), filed by --snapshot-date or "
                   "a clock ahead: a run without --snapshot-date is refused for their series until that date; "
                   "see docs/operations.md, \"Dates\", to remove them")
    return "\n".join(out) + "\n"


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
