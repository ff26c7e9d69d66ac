"""The report as one self-contained HTML page: inline CSS and SVG and a few lines of inline script
to sort tables; no CDN, so it opens offline and reads the same from an email archive.

What changed comes first: a card per tracked domain, then per tracked domain its headline (the
period's sizes and what the net change is made of), the latest week's lost, new and returning
donors, the history (folded), its competitors and its link gap. Long tables are folded in
<details>."""

from __future__ import annotations

import datetime as dt
import html
import re

from . import gap_report, report_charts
from .rendering import folded, html_table, html_top
from .report_data import (
    ALERT_SCOPE,
    LEDGER_COLUMNS,
    STEP_COLUMNS,
    AlertPreview,
    ReportData,
    Series,
    latest_first,
    latest_lists,
)
from .report_periods import Change, early_note, made_of, period_label, sizes_text, unconfirmed_note

TOP = 10
_COLORS = ["#2563eb", "#ea580c", "#9333ea", "#0891b2", "#4d7c0f", "#be185d"]
_LABELS = {"ref_domain": "referring domain", "domain_rank": "rank", "ref_pages": "pages", "is_returning": "returning",
           "detected_on": "detected", "detected_by": "by", "counted_on": "in full snapshot", "lost_on": "lost",
           "last_seen_on": "last seen", "period_end": "full snapshot", "size_end": "referring domains",
           "lost_confirmed": "confirmed", "snapshot_date": "snapshot date", "credits_spent": "credits"}
_NEW = ["ref_domain", "domain_rank", "ref_pages", "detected_on"]
_LOST = ["ref_domain", "domain_rank", "status", "last_seen_on", "ref_pages"]
_HISTORY_NEW = ["ref_domain", "domain_rank", "counted_on", "detected_on", "is_returning"]
_HISTORY_LOST = ["ref_domain", "domain_rank", "last_seen_on", "lost_on", "status"]
_HEADINGS = {"lost": "Lost", "new": "New, first seen", "returning": "Returning", "early": "Detected early by last_week"}
_NOTES = {"returning": "lost before, back now; counted as new",
          "early": "not yet in a full snapshot, not counted"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:1rem;color:#1f2933;
max-width:1100px;line-height:1.4}
h1{font-size:1.45rem;margin:.2rem 0 .4rem}h2{font-size:1.3rem;margin:0 0 .4rem}
h3{font-size:1.05rem;margin:1.5rem 0 .4rem}
h4{font-size:.95rem;margin:1rem 0 .2rem}h1,h2,h3,h4,p,li,summary{overflow-wrap:anywhere}
small,.note{color:#52606d;font-weight:normal;font-size:.85rem}
.lede{color:#3e4c59;font-size:.9rem;margin:.2rem 0}
nav{font-size:.9rem;margin:.6rem 0 1.2rem;display:flex;flex-wrap:wrap;gap:.2rem 1rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:.8rem}
.card{border:1px solid #e4e7eb;border-radius:8px;padding:.6rem .9rem;min-width:0}
.card h3{margin:0 0 .2rem}.card p{margin:.15rem 0}.card ul{margin:.2rem 0 0;padding-left:1rem;font-size:.85rem}
.big{font-size:1.5rem;font-weight:650}
.nets{display:grid;grid-template-columns:auto 1fr;gap:.3rem .8rem;margin:.4rem 0;align-items:baseline}
.nets dt small{display:block;color:#52606d;font-size:.75rem}.nets dd{margin:0}
section#alerts,section#snapshots{border-top:3px solid #1f2933;margin-top:2.2rem;padding-top:.9rem}
.up{color:#15803d}.down{color:#b91c1c}.flat{color:#52606d}
section.group{border-top:3px solid #1f2933;margin-top:2.2rem;padding-top:.9rem}
section.competitor{border-left:3px solid #f59e0b;padding-left:.7rem;margin:1rem 0}
.role{font-size:.72rem;font-weight:600;border-radius:999px;padding:.1rem .5rem;vertical-align:middle;white-space:nowrap}
.role.tracked{background:#dbeafe;color:#1e3a8a}.role.competitor{background:#fef3c7;color:#78350f}
.role.unconfigured{background:#e4e7eb;color:#3e4c59}
.headline{background:#f5f7fa;border-radius:8px;padding:.5rem .9rem;margin:.4rem 0}.headline p{margin:.2rem 0}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:1rem;margin:.5rem 0}
figure{margin:0;min-width:0}figcaption{font-size:.85rem;color:#52606d;margin-bottom:.2rem}
svg.chart{width:100%;height:auto;display:block}svg text{font-size:14px;fill:#52606d}
.kpis{display:flex;flex-wrap:wrap;gap:.2rem 1.2rem;font-size:.9rem;margin:.2rem 0 .4rem}
.legend{font-size:.8rem;color:#52606d;display:flex;flex-wrap:wrap;gap:0 1rem}
.scroll{overflow-x:auto}.stale{background:#fef3c7;border-left:4px solid #d97706;padding:.5rem .75rem}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0;width:100%}
td,th{border-bottom:1px solid #e4e7eb;padding:.25rem .5rem;text-align:left;white-space:nowrap}
th{background:#f5f7fa;cursor:pointer;user-select:none}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}.num{text-align:right}
a{color:#1d4ed8;text-decoration:none}a:hover{text-decoration:underline}
details{margin:.4rem 0}summary{cursor:pointer;color:#1d4ed8;font-size:.9rem;padding:.15rem 0}
ul.alert{margin:.2rem 0 .6rem;padding-left:1.2rem;font-size:.88rem}ul.alert li.more{color:#52606d;list-style:none}
.d{white-space:nowrap}
@media (max-width:480px){body{padding:.7rem}td,th{padding:.2rem .3rem}table{font-size:.8rem}}
"""
# Click a column header to sort its table; numbers and dates sort by their data-v value.
_SORT_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], col = th.cellIndex;
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


def _text(words: str) -> str:
    """Escaped, with each date kept on one line: a phone would break 2026-10-12 at its hyphens."""
    return re.sub(r"\d{4}-\d{2}-\d{2}", lambda m: f'<span class="d">{m.group(0)}</span>', html.escape(words))


def _anchor(series: Series) -> str:
    return "g-" + re.sub(r"[^a-z0-9]+", "-", f"{series.target_domain}-{series.search_type}".lower())


def _role(series: Series) -> str:
    return f'<span class="role {series.role}">{html.escape(series.label)}</span>'


def _signed(value: int) -> str:
    tone = "up" if value > 0 else "down" if value < 0 else "flat"
    return f'<b class="{tone}">{value:+,}</b>'


def _measured(change: Change | None) -> bool:
    return change is not None and change.start is not None and change.start != change.end


def _card_line(name: str, change: Change | None) -> str:
    if change is None or not _measured(change):
        return f'<dt>{name}</dt><dd class="note">no change measured yet</dd>'
    return (f"<dt>{name}<small>{change.start:%b %d} → {change.end:%b %d}</small></dt><dd>{_signed(change.net)} "
            f"<small>= {change.new:,} new − {change.lost:,} lost</small></dd>")


def _card(own: Series, rivals: list[Series]) -> str:
    """A tracked domain at a glance: its size, the latest week's and the period's net change, and
    its competitors' sizes and net changes."""
    change = own.summary.change
    size = (f'<span class="big">{change.size_end:,}</span> referring domains on {_text(str(change.end))}' if change.end
            else "no complete full snapshot yet")
    rows = _card_line("Latest week", own.summary.latest) + _card_line("Period", change)
    items = "".join(f"<li>{html.escape(r.target_domain)}: {r.summary.change.size_end or 0:,}"
                    + (f" ({_signed(r.summary.change.net)})" if _measured(r.summary.change) else "") + "</li>"
                    for r in rivals)
    rivals_part = f"<p class=note>competitors:</p><ul>{items}</ul>" if items else ""
    return (f'<div class="card"><h3><a href="#{_anchor(own)}">{html.escape(own.target_domain)}</a> {_role(own)}</h3>'
            f'<p>{size}</p><dl class="nets">{rows}</dl>{rivals_part}</div>')


def _headline(series: Series) -> str:
    change = series.summary.change
    early = early_note(change)
    if _measured(change):
        body = (f'<p><span class="big">{_signed(change.net)}</span> {_text(sizes_text(change))}</p>'
                f"<p>= {_text(made_of(change))}</p>")
    else:
        body = f"<p>{_text(sizes_text(change))}</p>"
    return f'<div class="headline">{body}{f"<p class=note>{html.escape(early)}</p>" if early else ""}</div>'


def _latest(series: Series, confirm_after: int) -> str:
    latest = series.summary.latest
    if latest is None and not series.summary.early():
        return ""
    title = (f"Latest week: {_text(f'{latest.start} → {latest.end}')} <small>net {latest.net:+,} = "
             f"{_text(made_of(latest))}</small>" if latest
             else "Latest week")
    parts = [f"<h3>{title}</h3>"]
    for name, rows in latest_lists(series):
        if not rows and name in ("returning", "early"):
            continue
        note = unconfirmed_note(confirm_after) if name == "lost" else _NOTES.get(name, "")
        columns = _LOST if name == "lost" else _NEW
        parts.append(f"<h4>{_HEADINGS[name]} ({len(rows):,}) <small>{html.escape(note)}</small></h4>"
                     f"{html_top(rows, columns, _LABELS, TOP, f'{_HEADINGS[name].lower()} this week')}")
    return "".join(parts)


def _history(series: Series, lines: list[tuple[str, str, list[tuple[dt.date, int]]]]) -> str:
    summary = series.summary
    bars, scale = report_charts.change_bars(series.target_domain, summary.steps)
    legend = "".join(f'<span style="color:{color}">&#9632; {html.escape(name)}</span>' for name, color, _ in lines)
    charts = (f'<div class="charts"><figure><figcaption>Referring domains, axis from zero</figcaption>'
              f'{report_charts.sizes(f"Referring domains of {series.target_domain} over time", lines)}'
              f'<div class="legend">{legend}</div></figure>'
              f"<figure><figcaption>Change per full snapshot{f', scale ±{scale:,} referring domains' if scale else ''}"
              f"</figcaption>{bars}<div class=\"legend\"><span class=\"up\">&#9632; new</span>"
              f'<span class="down">&#9632; lost</span><span>&#9679; net</span></div></figure></div>')
    if not summary.steps:
        return f"<h3>History</h3>{charts}"
    steps = [s.as_row() for s in reversed(summary.steps)]
    return (f"<h3>History <small>{summary.change.start} → {summary.change.end}</small></h3>{charts}"
            + folded(f"Per full snapshot ({len(steps)})", html_table(steps, STEP_COLUMNS, _LABELS))
            + folded(f"All {len(summary.new):,} new in the period, latest first",
                     html_table(latest_first(summary.new), _HISTORY_NEW, _LABELS))
            + folded(f"All {len(summary.lost):,} lost in the period, latest first",
                     html_table(latest_first(summary.lost), _HISTORY_LOST, _LABELS)))


def _competitor(series: Series, confirm_after: int, color: str) -> str:
    name = html.escape(series.target_domain)
    details = _latest(series, confirm_after) + _history(series, [(series.target_domain, color, series.sizes)])
    return (f'<section class="target competitor" data-target="{name}" data-role="{series.role}">'
            f"<h4>{name} {_role(series)}</h4>{_headline(series)}"
            f"{folded(f'Latest week and history of {name}', details)}</section>")


def _group(own: Series, rivals: list[Series], data: ReportData) -> str:
    name = html.escape(own.target_domain)
    search = "" if own.search_type == "domain_with_subdomains" else f" <small>{html.escape(own.search_type)}</small>"
    colors = {s.key: _COLORS[i % len(_COLORS)] for i, s in enumerate([own, *rivals])}
    lines = [(s.target_domain, colors[s.key], s.sizes) for s in [own, *rivals] if s.sizes]
    parts = [f'<section class="group target" id="{_anchor(own)}" data-target="{name}" data-role="{own.role}">'
             f"<h2>{name}{search} {_role(own)}</h2>{_headline(own)}",
             _latest(own, data.confirm_after), _history(own, lines)]
    if rivals:
        parts.append(f"<h3>Competitors of {name} <small>their sizes are on the chart above</small></h3>")
        parts += [_competitor(r, data.confirm_after, colors[r.key]) for r in rivals]
    parts.append(gap_report.html_section(own.target_domain, [r for r in data.gap if r["target_domain"] ==
                                                              own.target_domain],
                                         gap_report.period_counts(data.gap_changes, own.target_domain)))
    parts.append("</section>")
    return "".join(parts)


def _alerts(preview: AlertPreview | None) -> str:
    """The demo's alert preview (`refdomains alerts --dry-run`): a list per tracked domain and kind."""
    if preview is None:
        return ""
    parts = [f'<section id="alerts"><h2>Alerts <small>dry run: what the next alert would send to '
             f"{html.escape(preview.recipients)}</small></h2><p>{html.escape(preview.title)}</p>"
             f'<p class="note">{html.escape(ALERT_SCOPE)}</p>']
    for shown, kinds in preview.domains:
        counts = ", ".join(f"{total:,} {heading.lower()}" for heading, total, _ in kinds)
        lists = "".join(
            f"<h4>{html.escape(heading)}: {total:,}</h4><ul class=\"alert\">"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            + (f'<li class="more">… and {total - len(lines):,} more</li>' if total > len(lines) else "") + "</ul>"
            for heading, total, lines in kinds)
        parts.append(folded(f"<b>{html.escape(shown)}</b>: {html.escape(counts)}", lists))
    parts.append(f'<p class="note">{html.escape(preview.credits)}</p></section>')
    return "".join(parts)


STALE_AFTER_DAYS = 8  # a weekly full snapshot, and a day's grace for a late schedule


def _stale(data: ReportData) -> str:
    """A warning when the latest full snapshot is older than a weekly schedule leaves it: the
    "latest week" would otherwise read as this week's news. Not for a period chosen with --until."""
    fulls = [r["snapshot_date"] for r in data.ledger
             if r.get("snapshot_kind") == "full" and r.get("status") == "complete"]
    if data.until is not None or not fulls:
        return ""
    latest = max(d if isinstance(d, dt.date) else dt.date.fromisoformat(str(d)) for d in fulls)
    age = (dt.datetime.now(dt.UTC).date() - latest).days
    if age <= STALE_AFTER_DAYS:
        return ""
    return (f'<p class="stale"><b>The latest full snapshot is from {latest:%Y-%m-%d}, {age} days before this '
            "report</b>: runs are expected every week, so the latest week below is not this week. Check the "
            "schedule (<code>refdomains status</code>).</p>")


def render_html(data: ReportData) -> str:
    groups = data.groups()
    scope = html.escape(data.domain or "all tracked domains")
    spent = sum(int(r["credits_spent"] or 0) for r in data.ledger)
    nav = "".join(f'<a href="#{_anchor(own)}">{html.escape(own.target_domain)}</a>' for own, _ in groups)
    nav += '<a href="#alerts">Alerts</a>' if data.alerts else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Referring domains: {scope}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body>
<header><h1>Referring domains of {scope}</h1>
<p class="lede"><b>Period:</b> {html.escape(period_label(data.since, data.until))}. Counted between full snapshots,
so net = new − lost = the change in size; returning domains count as new. Lost includes unconfirmed losses
({html.escape(unconfirmed_note(data.confirm_after))}).</p>
<p class="lede">Generated {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC. <b>rank</b> is Serpstat's domain rank of the
referring domain (empty when Serpstat sent none). Hover a point or bar for its values; click a column header to
sort.</p>{_stale(data)}
<nav>{nav}<a href="#snapshots">Snapshots and credits</a></nav></header>
<section class="overview"><div class="cards">{"".join(_card(own, rivals) for own, rivals in groups)}</div></section>
{"".join(_group(own, rivals, data) for own, rivals in groups) or "<p>Nothing loaded yet.</p>"}
{_alerts(data.alerts)}
<section id="snapshots"><h2>Snapshots and credits</h2>
<p>{len(data.ledger):,} snapshots in this period cost {spent:,} credits.</p>
{folded("Credits per snapshot date", html_table(data.credits(), ["snapshot_date", "credits_spent"], _LABELS))}
{folded("Every snapshot", html_table(data.ledger, LEDGER_COLUMNS, _LABELS))}
</section>
<script>{_SORT_SCRIPT}</script>
</body></html>
"""
