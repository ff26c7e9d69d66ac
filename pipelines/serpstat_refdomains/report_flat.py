"""The report as text (a terminal), CSV and JSON (other tools): the same content as the HTML page,
in the same order: per tracked domain its headline, the latest week, the history, its competitors
and its link gap; then the snapshots' credits and, in the demo, the alert preview."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from . import gap_report
from .rendering import text_table, text_top
from .report_data import (
    ALERT_SCOPE,
    COMPETITOR,
    LEDGER_COLUMNS,
    LOST_COLUMNS,
    NEW_COLUMNS,
    STEP_COLUMNS,
    ReportData,
    Series,
    latest_first,
    latest_lists,
)
from .report_periods import Change, Row, describe, early_note, period_label, unconfirmed_note

TOP = 25
ROLE_COLUMNS = ["target_domain", "search_type", "role"]
CHANGE_COLUMNS = list(Change(None, None, None, None).as_row())
LATEST_NEW = ["ref_domain_unicode", "domain_rank", "ref_pages", "detected_on", "detected_by"]
LATEST_LOST = ["ref_domain_unicode", "domain_rank", "status", "last_seen_on", "ref_pages"]
HISTORY_NEW = ["ref_domain_unicode", "domain_rank", "counted_on", "detected_on", "detected_by", "is_returning"]
HISTORY_LOST = ["ref_domain_unicode", "domain_rank", "last_seen_on", "lost_on", "status"]
LATEST_COLUMNS = {"lost": LATEST_LOST, "new": LATEST_NEW, "returning": LATEST_NEW, "early": LATEST_NEW[:-1]}
LIST_TITLES = {"lost": ("LOST in the latest week", "unconfirmed included, highest domain rank first"),
               "new": ("NEW in the latest week, first seen", "highest domain rank first"),
               "returning": ("RETURNING in the latest week", "lost before, back now; counted as new"),
               "early": ("DETECTED EARLY by last_week", "not yet in a full snapshot, not counted")}


# --- text ----------------------------------------------------------------------------------
def render_text(data: ReportData) -> str:
    tracked = sum(1 for s in data.series if s.role != COMPETITOR)
    out = [f"Referring domains of {data.domain or 'all tracked domains'}: {tracked} tracked, "
           f"{len(data.series) - tracked} competitor(s)",
           f"Period: {period_label(data.since, data.until)}",
           "Counted between full snapshots: net = new − lost = the change in size; returning domains count as new.",
           unconfirmed_note(data.confirm_after)]
    for own, rivals in data.groups():
        out += ["", f"=== {own.target_domain} ({own.label}) ===", *_series_text(own)]
        for rival in rivals:
            out += ["", f"--- {rival.target_domain} ({rival.label}) ---", *_series_text(rival)]
        out += gap_report.text_section([r for r in data.gap if r["target_domain"] == own.target_domain],
                                       gap_report.period_counts(data.gap_changes, own.target_domain))
    spent = sum(int(r["credits_spent"] or 0) for r in data.ledger)
    out += ["", f"Credits spent on the snapshots of this period: {spent:,} ({len(data.ledger)} snapshots; "
                "per snapshot in --format csv or json)"]
    if data.alerts:
        out += ["", f"ALERTS (dry run: what the next alert would send to {data.alerts.recipients})",
                ALERT_SCOPE, data.alerts.title]
        for shown, kinds in data.alerts.domains:
            out.append(shown)
            for heading, total, lines in kinds:
                out += [f"  {heading}: {total}"] + [f"    {line}" for line in lines]
                out += [f"    … and {total - len(lines)} more"] if total > len(lines) else []
        out.append(data.alerts.credits)
    return "\n".join(out) + "\n"


def _series_text(series: Series) -> list[str]:
    summary = series.summary
    out = [f"Period: {describe(summary.change)}"]
    if summary.latest:
        out.append(f"Latest week: {describe(summary.latest)}")
    out += [note.capitalize() for note in [early_note(summary.change)] if note]
    if not summary.latest and not summary.early():
        return out
    for name, rows in latest_lists(series):
        if rows or name in ("lost", "new"):
            title, note = LIST_TITLES[name]
            out += ["", f"{title} ({len(rows):,}), {note}:", *text_top(rows, LATEST_COLUMNS[name], TOP)]
    if summary.steps:
        out += ["", "HISTORY, per full snapshot (net = new − lost):"]
        out += text_table([{**s.as_row()} for s in reversed(summary.steps)], STEP_COLUMNS)
        out += ["", f"NEW in the period ({len(summary.new):,}), latest first:"]
        out += text_top(latest_first(summary.new), HISTORY_NEW, TOP)
        out += ["", f"LOST in the period ({len(summary.lost):,}), latest first:"]
        out += text_top(latest_first(summary.lost), HISTORY_LOST, TOP)
    return out


# --- csv / json ----------------------------------------------------------------------------
def _sections(data: ReportData) -> list[tuple[str, Row]]:
    """Every row of the report, tagged with its section, in the report's order."""
    rows: list[tuple[str, Row]] = []
    for s in data.series:
        role = {"target_domain": s.target_domain, "search_type": s.search_type, "role": s.label}
        rows.append(("period", {**role, **s.summary.change.as_row()}))
        rows += [("step", {**role, **step.as_row()}) for step in s.summary.steps]
        rows += [("new", {**row, "role": s.label}) for row in latest_first(s.summary.new)]
        rows += [("lost", {**row, "role": s.label}) for row in latest_first(s.summary.lost)]
        rows += [("last_week_only", {**row, "role": s.label}) for row in s.summary.last_week_only]
    rows += [("link_gap", row) for row in data.gap]
    rows += [("link_gap_change", row) for row in data.gap_changes]
    rows += [("snapshot", row) for row in data.ledger]
    for shown, kinds in data.alerts.domains if data.alerts else []:
        rows += [("alert", {"target_domain": shown, "alert_kind": heading, "alert_line": line})
                 for heading, _, lines in kinds for line in lines]
    return rows


def render_csv(data: ReportData) -> str:
    """One long table: a `section` column (period, step, new, lost, last_week_only, link_gap,
    link_gap_change, snapshot, alert) and the union of their columns."""
    columns = ["section", *dict.fromkeys(ROLE_COLUMNS + CHANGE_COLUMNS + NEW_COLUMNS + ["counted_on"] + LOST_COLUMNS
                                         + ["status"] + gap_report.COLUMNS + ["change", "won", "event_date"]
                                         + LEDGER_COLUMNS + ["alert_kind", "alert_line"])]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for section, row in _sections(data):
        writer.writerow({"section": section, **{k: _plain(v) for k, v in row.items()}})
    return buffer.getvalue()


def render_json(data: ReportData) -> str:
    def targets(s: Series) -> dict[str, Any]:
        return {"target_domain": s.target_domain, "search_type": s.search_type, "role": s.role, "label": s.label,
                "competitor_of": s.competitor_of, "competitors": [c for c, _ in s.competitors],
                "period": s.summary.change.as_row(),
                "latest_week": s.summary.latest.as_row() if s.summary.latest else None,
                "history": [step.as_row() for step in s.summary.steps]}

    alerts = data.alerts
    tagged = _sections(data)
    payload = {
        "domain": data.domain,
        "since": data.since,
        "until": data.until,
        "period": period_label(data.since, data.until),
        "lost_confirmation_snapshots": data.confirm_after,
        "targets": [targets(s) for s in data.series],
        "new_ref_domains": [row for section, row in tagged if section == "new"],
        "lost_ref_domains": [row for section, row in tagged if section == "lost"],
        "last_week_only": data.rows("last_week_only"),
        "link_gap": data.gap,
        "link_gap_changes": data.gap_changes,
        "snapshots": data.ledger,
        "credits": data.credits(),
        "alerts": None if alerts is None else {
            "recipients": alerts.recipients, "title": alerts.title, "credits": alerts.credits,
            "targets": [{"target": shown,
                         "kinds": [{"heading": h, "total": n, "lines": lines} for h, n, lines in kinds]}
                        for shown, kinds in alerts.domains]},
    }
    return json.dumps(payload, default=_plain, indent=2, ensure_ascii=False) + "\n"


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value
