"""Reports over the models: new and lost lists, the weekly summary, the ledger's credit use.

Text for a terminal, CSV and JSON for other tools, and one self-contained HTML page (inline SVG
charts, a few lines of inline script to sort tables, no CDN) that works offline and can be mailed or
archived as it is.
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from . import gap_report
from .constants import ATTEMPTS_TABLE, SNAPSHOTS_TABLE, STATUS_COMPLETE, STATUS_SUSPECT_EMPTY
from .rendering import html_table, number, text_table
from .warehouse import table_exists

# The ledger's columns in the report, and in `refdomains status`.
LEDGER_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "requests", "credits_spent", "credits_left", "error"]
STATUS_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "credits_spent"]


FORMATS = ("text", "csv", "json", "html")
TOP = 25

NEW_COLUMNS = ["target_domain", "search_type", "ref_domain", "ref_domain_unicode", "registrable_domain", "detected_on",
               "previous_snapshot_date", "detected_by", "is_returning", "domain_rank", "ref_pages"]
LOST_COLUMNS = ["target_domain", "search_type", "ref_domain", "ref_domain_unicode", "registrable_domain", "lost_on",
                "last_seen_on", "domain_rank", "ref_pages", "returned_on", "consecutive_absences", "confirmed"]
WEEKLY_COLUMNS = ["target_domain", "search_type", "week_start", "ref_domains", "new_ref_domains",
                  "lost_ref_domains", "net_change"]


@dataclass
class ReportData:
    domain: str | None
    since: dt.date | None
    new: list[dict[str, Any]] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)
    weekly: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    gap: list[dict[str, Any]] = field(default_factory=list)  # link_gap
    alerts_preview: str | None = None  # the demo's `alerts --dry-run`


def select_rows(client: Any, table: str, columns: list[str], date_column: str, order: str,
                domain: str | None = None, since: dt.date | None = None) -> list[dict[str, Any]]:
    """One model's rows as dicts, for one tracked domain and from a date when given; every user
    value goes in as a query parameter."""
    conditions: list[str] = []
    params: list[Any] = []
    if domain:
        conditions.append("target_domain = %s")
        params.append(domain)
    if since:
        conditions.append(f"{date_column} >= %s")
        params.append(since)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {', '.join(columns)} FROM {client.make_qualified_table_name(table)}{where} ORDER BY {order}"
    return [dict(zip(columns, row, strict=False)) for row in client.execute_sql(sql, *params) or []]


def collect(pipeline: dlt.Pipeline, domain: str | None = None, since: dt.date | None = None) -> ReportData:
    """Read the models and the ledger."""
    data = ReportData(domain=domain, since=since)
    with pipeline.sql_client() as client:
        def rows(table: str, columns: list[str], date_column: str, order: str) -> list[dict[str, Any]]:
            return select_rows(client, table, columns, date_column, order, domain, since)

        data.new = rows("new_ref_domains", NEW_COLUMNS, "detected_on",
                        "domain_rank DESC NULLS LAST, detected_on DESC, ref_domain")
        data.lost = rows("lost_ref_domains", LOST_COLUMNS, "lost_on",
                         "confirmed DESC, domain_rank DESC NULLS LAST, lost_on DESC, ref_domain")
        data.weekly = rows("ref_domains_weekly", WEEKLY_COLUMNS, "week_start",
                           "target_domain, search_type, week_start")
        data.ledger = rows(SNAPSHOTS_TABLE, LEDGER_COLUMNS, "snapshot_date",
                           "snapshot_date, target_domain, search_type, snapshot_kind")
        try:
            data.gap = rows("link_gap", gap_report.COLUMNS, "in_gap_since", gap_report.ORDER)
        except DatabaseUndefinedRelation:
            data.gap = []  # models built before link_gap existed
    return data


def render(data: ReportData, fmt: str) -> str:
    return {"text": render_text, "csv": render_csv, "json": render_json, "html": render_html}[fmt](data)


# --- text ----------------------------------------------------------------------------------
def render_text(data: ReportData) -> str:
    scope = data.domain or "all tracked domains"
    since = f" since {data.since}" if data.since else ""
    out = [f"Referring domains of {scope}{since}", ""]
    out.append(f"NEW referring domains ({len(data.new)}), highest domain rank first:")
    out += text_table(data.new[:TOP],
                      ["target_domain", "ref_domain_unicode", "domain_rank", "detected_on", "detected_by"])
    if len(data.new) > TOP:
        out.append(f"... {len(data.new) - TOP} more")
    out += ["", f"LOST referring domains ({len(data.lost)}), confirmed first, then highest domain rank:"]
    out += text_table(data.lost[:TOP], ["target_domain", "ref_domain_unicode", "domain_rank", "lost_on", "confirmed",
                                    "returned_on"])
    if len(data.lost) > TOP:
        out.append(f"... {len(data.lost) - TOP} more")
    out += gap_report.text_section(data.gap)
    out += ["", "Weekly summary:"]
    out += text_table(data.weekly, ["target_domain", "week_start", "ref_domains", "new_ref_domains",
                                "lost_ref_domains", "net_change"])
    out += ["", f"Credits spent in these snapshots: {sum(r['credits_spent'] or 0 for r in data.ledger)}"]
    return "\n".join(out) + "\n"


# --- csv / json ----------------------------------------------------------------------------
def render_csv(data: ReportData) -> str:
    """One long table: a `section` column (new, lost, weekly) and the union of their columns."""
    columns = ["section", *list(dict.fromkeys(NEW_COLUMNS + LOST_COLUMNS + WEEKLY_COLUMNS))]
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
        "link_gap": data.gap,
    }
    return json.dumps(payload, default=_plain, indent=2, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


# --- html ----------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem auto;padding:0 1rem;color:#1f2933;
max-width:1100px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin:2.2rem 0 .3rem}h3{font-size:1rem;margin:1.2rem 0 .3rem}
h2 small{font-weight:normal;color:#616e7c;font-size:.8rem}
.kpis{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;margin:.3rem 0 .8rem;color:#3e4c59}.kpis b{color:#1f2933}
.up{color:#15803d}.down{color:#b91c1c}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1rem}
figure{margin:0;min-width:0}figcaption{font-size:.85rem;color:#52606d;margin-bottom:.2rem}
svg.chart{width:100%;height:auto;display:block}
svg text{font-size:11px;fill:#52606d}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0;width:100%}
td,th{border-bottom:1px solid #e4e7eb;padding:.25rem .5rem;text-align:left;white-space:nowrap}
th{background:#f5f7fa;cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \25B2"}
th[aria-sort=descending]::after{content:" \25BC"}.num{text-align:right}
a{color:#1d4ed8;text-decoration:none}a:hover{text-decoration:underline}
.legend{font-size:.8rem;color:#52606d}.legend span{margin-right:1rem}
pre.alerts{background:#f5f7fa;padding:.6rem;font-size:.8rem;white-space:pre-wrap}
"""
# Click a column header to sort its table; numbers and dates sort by their data-v value.
_SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0];
  const down = th.getAttribute('aria-sort') === 'ascending';
  th.closest('tr').querySelectorAll('th').forEach(h => h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort', down ? 'descending' : 'ascending');
  const key = r => { const c = r.cells[col]; return c.dataset.v !== undefined ? c.dataset.v : c.textContent; };
  const num = [...body.rows].every(r => key(r) === '' || !isNaN(Number(key(r))));
  const rows = [...body.rows].sort((a, b) => {
    const x = key(a), y = key(b);
    const order = num ? (x === '' ? -Infinity : Number(x)) - (y === '' ? -Infinity : Number(y)) : x.localeCompare(y);
    return down ? -order : order;
  });
  rows.forEach(r => body.appendChild(r));
}));
"""
_COLORS = ["#2563eb", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d", "#16a34a", "#dc2626"]
_WIDTH, _HEIGHT, _LEFT, _RIGHT, _TOP, _BOTTOM = 520, 230, 56, 16, 14, 30


def _nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) from at or below lo to at or
    above hi, so the axis always covers every value."""
    span = max(hi - lo, 1e-9)
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _svg_open(title: str) -> list[str]:
    return [f'<svg role="img" aria-label="{html.escape(title)}" class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
            f'preserveAspectRatio="xMidYMid meet"><title>{html.escape(title)}</title>']


def _svg_line(name: str, values: list[tuple[dt.date, int]], color: str) -> str:
    """Referring domains over time for one target, on a scale fitted to its own values: a change of
    20 on 3,100 shows as a slope, not as a flat line at the top of a chart that starts at 0."""
    if not values:
        return "<p>No complete full snapshot yet.</p>"
    values = sorted(values)
    lo, hi = min(v for _, v in values), max(v for _, v in values)
    margin = max((hi - lo) * 0.15, 1.0, hi * 0.002)
    ticks = _nice_ticks(lo - margin, hi + margin)
    y_lo, y_hi = ticks[0], ticks[-1]
    days = [d.toordinal() for d, _ in values]
    d_lo, d_hi = min(days), max(days)
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM

    def x(day: dt.date) -> float:
        return _LEFT + (plot_w / 2 if d_hi == d_lo else (day.toordinal() - d_lo) / (d_hi - d_lo) * plot_w)

    def y(value: float) -> float:
        return _TOP + plot_h - (value - y_lo) / max(y_hi - y_lo, 1e-9) * plot_h

    parts = _svg_open(f"Referring domains of {name} over time")
    for tick in ticks:
        parts.append(f'<line x1="{_LEFT}" y1="{y(tick):.1f}" x2="{_WIDTH - _RIGHT}" y2="{y(tick):.1f}" '
                     f'stroke="#e4e7eb"/><text x="{_LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                     f'{number(tick)}</text>')
    parts.append(f'<text x="{_LEFT}" y="{_HEIGHT - 8}">{values[0][0]}</text>')
    if d_hi != d_lo:
        parts.append(f'<text x="{_WIDTH - _RIGHT}" y="{_HEIGHT - 8}" text-anchor="end">{values[-1][0]}</text>')
    coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in values)
    parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
    previous = None
    for d, v in values:
        change = "" if previous is None else f" ({v - previous:+,})"
        parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3.5" fill="{color}"><title>{d}: {v:,} referring '
                     f'domains{change}</title></circle>')
        previous = v
    parts.append("</svg>")
    return "".join(parts)


def _svg_bars(name: str, weeks: list[dict[str, Any]]) -> str:
    """New (up, green) and lost (down, red) referring domains per week, and the net change (dot)."""
    if not weeks:
        return "<p>No weeks yet.</p>"
    peak = max(max(int(w["new_ref_domains"]), int(w["lost_ref_domains"])) for w in weeks) or 1
    ticks = _nice_ticks(0, max(peak, 2), 2)  # whole domains: never a half-domain tick
    top = ticks[-1]
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    middle = _TOP + plot_h / 2
    scale = (plot_h / 2) / top
    slot = plot_w / len(weeks)
    bar = max(1.5, min(slot * 0.38, 28))
    parts = _svg_open(f"New and lost referring domains of {name} per week")
    for tick in ticks:
        for sign in ((1, -1) if tick else (1,)):
            at = middle - sign * tick * scale
            label = "0" if not tick else f"{'+' if sign > 0 else '−'}{number(tick)}"
            parts.append(f'<line x1="{_LEFT}" y1="{at:.1f}" x2="{_WIDTH - _RIGHT}" y2="{at:.1f}" '
                         f'stroke="{"#9aa5b1" if not tick else "#e4e7eb"}"/>'
                         f'<text x="{_LEFT - 6}" y="{at + 4:.1f}" text-anchor="end">{label}</text>')
    every = max(1, math.ceil(len(weeks) / 8))
    for i, week in enumerate(weeks):
        new, lost, net = int(week["new_ref_domains"]), int(week["lost_ref_domains"]), int(week["net_change"])
        center = _LEFT + i * slot + slot / 2
        label = f"week of {week['week_start']}: {new} new, {lost} lost, net {net:+}"
        parts.append(f'<rect class="bar new" x="{center - bar:.1f}" y="{middle - new * scale:.1f}" width="{bar:.1f}" '
                     f'height="{new * scale:.1f}" fill="#16a34a"><title>{label}</title></rect>')
        parts.append(f'<rect class="bar lost" x="{center:.1f}" y="{middle:.1f}" width="{bar:.1f}" '
                     f'height="{lost * scale:.1f}" fill="#dc2626"><title>{label}</title></rect>')
        parts.append(f'<circle class="net" cx="{center:.1f}" cy="{middle - net * scale:.1f}" r="3" fill="#1f2933">'
                     f'<title>{label}</title></circle>')
        if i % every == 0:
            parts.append(f'<text x="{center:.1f}" y="{_HEIGHT - 8}" text-anchor="middle">'
                         f'{week["week_start"].strftime("%m-%d")}</text>')
    parts.append("</svg>")
    return "".join(parts)


_NEW_SHOWN = ["ref_domain", "domain_rank", "ref_pages", "detected_on", "detected_by", "is_returning"]
_LOST_SHOWN = ["ref_domain", "domain_rank", "ref_pages", "lost_on", "confirmed", "returned_on", "consecutive_absences"]
_LABELS = {"ref_domain": "referring domain", "domain_rank": "rank", "ref_pages": "pages", "is_returning": "returning",
           "consecutive_absences": "absences", "ref_domains": "referring domains", "new_ref_domains": "new",
           "lost_ref_domains": "lost", "net_change": "net", "week_start": "week"}


def _target_section(index: int, key: tuple[str, str], weeks: list[dict[str, Any]], new: list[dict[str, Any]],
                    lost: list[dict[str, Any]]) -> str:
    target, search_type = key
    color = _COLORS[index % len(_COLORS)]
    sizes = [(w["week_start"], int(w["ref_domains"])) for w in weeks if w["ref_domains"] is not None]
    net = sum(int(w["net_change"]) for w in weeks)
    confirmed = sum(1 for r in lost if r["confirmed"])
    # confirmed losses first: those are the links worth chasing
    lost = sorted(lost, key=lambda r: (not r["confirmed"], -(r["domain_rank"] or 0)))
    latest = f"<span>referring domains: <b>{sizes[-1][1]:,}</b> (week of {sizes[-1][0]})</span>" if sizes else ""
    kpis = (f'{latest}<span>new: <b class="up">{len(new):,}</b></span>'
            f'<span>lost: <b class="down">{len(lost):,}</b> ({confirmed:,} confirmed)</span>'
            f'<span>net change: <b class="{"up" if net >= 0 else "down"}">{net:+,}</b></span>')
    return f"""<section class="target" data-target="{html.escape(target)}">
<h2>{html.escape(target)} <small>{html.escape(search_type)}</small></h2>
<div class="kpis">{kpis}</div>
<div class="charts">
<figure><figcaption>Referring domains over time</figcaption>{_svg_line(target, sizes, color)}</figure>
<figure><figcaption>New and lost per week (dot: net change)</figcaption>{_svg_bars(target, weeks)}
<div class="legend"><span style="color:#16a34a">&#9632; new</span><span style="color:#dc2626">&#9632; lost</span>
<span>&#9679; net</span></div></figure>
</div>
<h3>Top new by domain rank</h3>
{html_table(new[:TOP], _NEW_SHOWN, _LABELS)}
<h3>Top lost, confirmed first</h3>
{html_table(lost[:TOP], _LOST_SHOWN, _LABELS)}
</section>"""


def render_html(data: ReportData) -> str:
    weekly: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in data.weekly:
        weekly.setdefault((row["target_domain"], row["search_type"]), []).append(row)
    keys = sorted(set(weekly) | {(r["target_domain"], r["search_type"]) for r in data.new + data.lost})
    sections = [_target_section(i, key, sorted(weekly.get(key, []), key=lambda w: w["week_start"]),
                                [r for r in data.new if (r["target_domain"], r["search_type"]) == key],
                                [r for r in data.lost if (r["target_domain"], r["search_type"]) == key])
                for i, key in enumerate(keys)]
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
<p>{len(data.new):,} new and {len(data.lost):,} lost referring domains in {len(keys)} target(s); credits spent:
{sum(credits.values()):,}. Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. Hover a point or bar
for its exact values; click a column header to sort.</p>
{"".join(sections) or "<p>Nothing loaded yet.</p>"}
{gap_report.html_section(data.gap)}
{gap_report.alerts_html(data.alerts_preview)}
<h2>Weekly summary</h2>
{html_table(data.weekly, WEEKLY_COLUMNS, _LABELS)}
<h2>Credits per snapshot date</h2>
{html_table(credit_rows, ["snapshot_date", "credits_spent"])}
<script>{_SORT_SCRIPT}</script>
</body></html>
"""


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
