"""Reports over the models: new and lost lists, the weekly summary, the ledger's credit use.

Text for a terminal, CSV and JSON for other tools, and one self-contained HTML page (inline SVG
charts, no script, no CDN) that works offline and can be mailed or archived as it is.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any

import dlt

from . import settings as S

FORMATS = ("text", "csv", "json", "html")
TOP = 25

NEW_COLUMNS = ["target_domain", "search_type", "ref_domain", "registrable_domain", "detected_on",
               "previous_snapshot_date", "detected_by", "is_returning", "domain_rank", "ref_pages"]
LOST_COLUMNS = ["target_domain", "search_type", "ref_domain", "registrable_domain", "lost_on", "last_seen_on",
                "domain_rank", "ref_pages", "returned_on", "consecutive_absences", "confirmed"]
WEEKLY_COLUMNS = ["target_domain", "search_type", "week_start", "ref_domains", "new_ref_domains",
                  "lost_ref_domains", "net_change"]
LEDGER_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "requests", "credits_spent", "credits_left", "error"]


@dataclass
class ReportData:
    domain: str | None
    since: dt.date | None
    new: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    weekly: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)


def collect(pipeline: dlt.Pipeline, domain: str | None = None, since: dt.date | None = None) -> ReportData:
    """Read the models and the ledger; every user value goes in as a query parameter."""
    data = ReportData(domain=domain, since=since)
    with pipeline.sql_client() as client:
        def rows(table: str, columns: list[str], date_column: str, order: str) -> list[dict[str, Any]]:
            conditions, params = [], []
            if domain:
                conditions.append("target_domain = %s")
                params.append(domain)
            if since:
                conditions.append(f"{date_column} >= %s")
                params.append(since)
            where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
            sql = (f"SELECT {', '.join(columns)} FROM {client.make_qualified_table_name(table)}{where} "
                   f"ORDER BY {order}")
            return [dict(zip(columns, row)) for row in client.execute_sql(sql, *params) or []]

        data.new = rows("new_ref_domains", NEW_COLUMNS, "detected_on",
                        "domain_rank DESC NULLS LAST, detected_on DESC, ref_domain")
        data.lost = rows("lost_ref_domains", LOST_COLUMNS, "lost_on",
                         "domain_rank DESC NULLS LAST, lost_on DESC, ref_domain")
        data.weekly = rows("ref_domains_weekly", WEEKLY_COLUMNS, "week_start",
                           "target_domain, search_type, week_start")
        data.ledger = rows(S.SNAPSHOTS_TABLE, LEDGER_COLUMNS, "snapshot_date",
                           "snapshot_date, target_domain, search_type, snapshot_kind")
    return data


def render(data: ReportData, fmt: str) -> str:
    return {"text": render_text, "csv": render_csv, "json": render_json, "html": render_html}[fmt](data)


# --- text ----------------------------------------------------------------------------------
def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    cells = [columns] + [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]


def render_text(data: ReportData) -> str:
    scope = data.domain or "all tracked domains"
    since = f" since {data.since}" if data.since else ""
    out = [f"Referring domains of {scope}{since}", ""]
    out.append(f"NEW referring domains ({len(data.new)}), highest domain rank first:")
    out += _table(data.new[:TOP], ["target_domain", "ref_domain", "domain_rank", "detected_on", "detected_by"])
    if len(data.new) > TOP:
        out.append(f"... {len(data.new) - TOP} more")
    out += ["", f"LOST referring domains ({len(data.lost)}), highest domain rank first:"]
    out += _table(data.lost[:TOP], ["target_domain", "ref_domain", "domain_rank", "lost_on", "confirmed",
                                    "returned_on"])
    if len(data.lost) > TOP:
        out.append(f"... {len(data.lost) - TOP} more")
    out += ["", "Weekly summary:"]
    out += _table(data.weekly, ["target_domain", "week_start", "ref_domains", "new_ref_domains",
                                "lost_ref_domains", "net_change"])
    out += ["", f"Credits spent in these snapshots: {sum(r['credits_spent'] or 0 for r in data.ledger)}"]
    return "\n".join(out) + "\n"


# --- csv / json ----------------------------------------------------------------------------
def render_csv(data: ReportData) -> str:
    """One long table: a `section` column (new, lost, weekly) and the union of their columns."""
    columns = ["section"] + list(dict.fromkeys(NEW_COLUMNS + LOST_COLUMNS + WEEKLY_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for section, rows in (("new", data.new), ("lost", data.lost), ("weekly", data.weekly)):
        for row in rows:
            writer.writerow({"section": section, **{k: _plain(v) for k, v in row.items()}})
    return buffer.getvalue()


def render_json(data: ReportData) -> str:
    payload = {
        "domain": data.domain,
        "since": data.since.isoformat() if data.since else None,
        "new_ref_domains": data.new,
        "lost_ref_domains": data.lost,
        "ref_domains_weekly": data.weekly,
        "snapshots": data.ledger,
    }
    return json.dumps(payload, default=_plain, indent=2, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


# --- html ----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1f2933;max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border-bottom:1px solid #e4e7eb;padding:.25rem .6rem;text-align:left}
th{background:#f5f7fa}.num{text-align:right}
svg text{font-size:11px;fill:#52606d}.legend span{margin-right:1rem}
"""
_COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"]


def _svg_lines(series: dict[str, list[tuple[dt.date, int]]], title: str) -> str:
    """Referring domains over time, one line per target."""
    width, height, pad = 900, 260, 45
    points = [(d, v) for values in series.values() for d, v in values]
    if not points:
        return "<p>No complete full snapshots yet.</p>"
    days = [d.toordinal() for d, _ in points]
    lo_d, hi_d = min(days), max(days) or 1
    hi_v = max(v for _, v in points) or 1
    x = lambda d: pad + (d.toordinal() - lo_d) / max(hi_d - lo_d, 1) * (width - 2 * pad)  # noqa: E731
    y = lambda v: height - pad - v / hi_v * (height - 2 * pad)  # noqa: E731
    parts = [f'<svg role="img" aria-label="{html.escape(title)}" class="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#9aa5b1"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#9aa5b1"/>',
             f'<text x="{pad - 5}" y="{pad}" text-anchor="end">{hi_v}</text>',
             f'<text x="{pad - 5}" y="{height - pad}" text-anchor="end">0</text>',
             f'<text x="{pad}" y="{height - pad + 16}">{dt.date.fromordinal(lo_d)}</text>',
             f'<text x="{width - pad}" y="{height - pad + 16}" text-anchor="end">{dt.date.fromordinal(hi_d)}</text>']
    legend = []
    for i, (name, values) in enumerate(sorted(series.items())):
        color = _COLORS[i % len(_COLORS)]
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in sorted(values))
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        parts += [f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"><title>{html.escape(name)} '
                  f'{d}: {v}</title></circle>' for d, v in values]
        legend.append(f'<span style="color:{color}">&#9632; {html.escape(name)}</span>')
    parts.append("</svg>")
    return "".join(parts) + f'<div class="legend">{"".join(legend)}</div>'


def _svg_bars(weeks: list[tuple[dt.date, int, int]], title: str) -> str:
    """New (up, green) and lost (down, red) referring domains per week, all targets together."""
    width, height, pad = 900, 260, 45
    if not weeks:
        return "<p>No weeks yet.</p>"
    peak = max(max(n, l) for _, n, l in weeks) or 1
    middle = height / 2
    slot = (width - 2 * pad) / len(weeks)
    bar = max(2.0, slot * 0.35)
    scale = (middle - pad) / peak
    parts = [f'<svg role="img" aria-label="{html.escape(title)}" class="chart" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}">',
             f'<line x1="{pad}" y1="{middle}" x2="{width - pad}" y2="{middle}" stroke="#9aa5b1"/>',
             f'<text x="{pad - 5}" y="{pad}" text-anchor="end">+{peak}</text>',
             f'<text x="{pad - 5}" y="{height - pad}" text-anchor="end">-{peak}</text>']
    for i, (week, new, lost) in enumerate(weeks):
        left = pad + i * slot + slot / 2 - bar
        parts.append(f'<rect class="bar new" x="{left:.1f}" y="{middle - new * scale:.1f}" width="{bar:.1f}" '
                     f'height="{new * scale:.1f}" fill="#16a34a"><title>{week}: {new} new</title></rect>')
        parts.append(f'<rect class="bar lost" x="{left + bar:.1f}" y="{middle:.1f}" width="{bar:.1f}" '
                     f'height="{lost * scale:.1f}" fill="#dc2626"><title>{week}: {lost} lost</title></rect>')
        if len(weeks) <= 20 or i % max(1, len(weeks) // 10) == 0:
            parts.append(f'<text x="{left + bar:.1f}" y="{height - pad + 16}" text-anchor="middle">'
                         f'{week.strftime("%m-%d")}</text>')
    parts.append("</svg>")
    return "".join(parts) + ('<div class="legend"><span style="color:#16a34a">&#9632; new</span>'
                             '<span style="color:#dc2626">&#9632; lost</span></div>')


def _html_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            css = ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
            cells.append(f"<td{css}>{html.escape('' if value is None else str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(data: ReportData) -> str:
    series: dict[str, list[tuple[dt.date, int]]] = {}
    per_week: dict[dt.date, list[int]] = {}
    for row in data.weekly:
        if row["ref_domains"] is not None:
            series.setdefault(row["target_domain"], []).append((row["week_start"], int(row["ref_domains"])))
        totals = per_week.setdefault(row["week_start"], [0, 0])
        totals[0] += int(row["new_ref_domains"])
        totals[1] += int(row["lost_ref_domains"])
    weeks = [(week, n, lost) for week, (n, lost) in sorted(per_week.items())]
    credits: dict[str, int] = {}
    for row in data.ledger:
        key = str(row["snapshot_date"])
        credits[key] = credits.get(key, 0) + int(row["credits_spent"] or 0)
    credit_rows = [{"snapshot_date": k, "credits_spent": v} for k, v in sorted(credits.items())]
    scope = html.escape(data.domain or "all tracked domains")
    since = f" since {data.since}" if data.since else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Referring domains: {scope}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<h1>Referring domains of {scope}{html.escape(since)}</h1>
<p>{len(data.new)} new and {len(data.lost)} lost referring domains; credits spent:
{sum(credits.values())}. Generated {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC.</p>
<h2>Referring domains over time</h2>
{_svg_lines(series, "Referring domains over time")}
<h2>New vs lost per week</h2>
{_svg_bars(weeks, "New and lost referring domains per week")}
<h2>Top gained by domain rank</h2>
{_html_table(data.new[:TOP], ["target_domain", "ref_domain", "domain_rank", "ref_pages", "detected_on", "detected_by", "is_returning"])}
<h2>Top lost by domain rank</h2>
{_html_table(data.lost[:TOP], ["target_domain", "ref_domain", "domain_rank", "ref_pages", "lost_on", "confirmed", "returned_on"])}
<h2>Weekly summary</h2>
{_html_table(data.weekly, WEEKLY_COLUMNS)}
<h2>Credits per snapshot date</h2>
{_html_table(credit_rows, ["snapshot_date", "credits_spent"])}
</body></html>
"""


# --- status --------------------------------------------------------------------------------
STATUS_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "credits_spent"]


def latest_snapshots(pipeline: dlt.Pipeline) -> tuple[list[dict[str, Any]], int]:
    """The latest snapshot of each (target, search type, kind), and credits spent this month (UTC).

    Credits are summed over `snapshot_attempts`, every fetch attempt whatever became of it: the
    ledger keeps only each snapshot's latest attempt. A dataset loaded before that table existed
    falls back to the ledger."""
    month_start = dt.datetime(*dt.datetime.now(dt.timezone.utc).date().replace(day=1).timetuple()[:3],
                              tzinfo=dt.timezone.utc)
    with pipeline.sql_client() as client:
        table = client.make_qualified_table_name(S.SNAPSHOTS_TABLE)
        rows = client.execute_sql(
            f"SELECT {', '.join(STATUS_COLUMNS)} FROM (SELECT *, row_number() OVER (PARTITION BY target_domain, "
            f"search_type, snapshot_kind ORDER BY snapshot_date DESC) AS recency FROM {table}) latest "
            f"WHERE recency = 1 ORDER BY target_domain, search_type, snapshot_kind")
        found = client.execute_sql(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
            client.dataset_name, S.ATTEMPTS_TABLE)
        if found and found[0][0]:
            table = client.make_qualified_table_name(S.ATTEMPTS_TABLE)
        spent = client.execute_sql(f"SELECT coalesce(sum(credits_spent), 0) FROM {table} WHERE started_at >= %s",
                                   month_start)
    return [dict(zip(STATUS_COLUMNS, row)) for row in rows or []], int(spent[0][0] if spent else 0)


def render_status(rows: list[dict[str, Any]], spent_this_month: int, balance: str) -> str:
    if not rows:
        return "No snapshots loaded yet: run `refdomains run`.\n" + f"Serpstat balance: {balance}\n"
    out = _table(rows, STATUS_COLUMNS)
    out += ["", f"Credits spent this month: {spent_this_month}", f"Serpstat balance: {balance}"]
    failing = [r for r in rows if r["status"] not in (S.STATUS_COMPLETE, S.STATUS_SUSPECT_EMPTY)]
    if failing:
        out.append(f"{len(failing)} latest snapshot(s) not complete: `refdomains run` fetches them again "
                   "(completed ones cost nothing)")
    return "\n".join(out) + "\n"
