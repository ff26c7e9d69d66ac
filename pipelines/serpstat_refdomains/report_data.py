"""What the report holds, whatever it is rendered as: each series (a target and search type) with
its role and its summary over the period, the link gap, the snapshots, and in the demo the alert
preview; and the orders its lists are shown in. Filled by report.collect, read by report_flat.py
and report_html.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from .constants import DEFAULT_LOST_CONFIRMATION_SNAPSHOTS
from .report_periods import Row, Summary, summarize

# The ledger's columns in the report.
LEDGER_COLUMNS = ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status", "rows_loaded",
                  "requests", "credits_spent", "credits_left", "error"]
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


STEP_COLUMNS = ["period_end", "size_end", "new", "returning", "lost", "lost_confirmed", "net"]


def latest_first(rows: list[Row]) -> list[Row]:
    """History order: the latest full snapshot's changes first, highest domain rank first within it."""
    return sorted(rows, key=lambda r: (-r["counted_on"].toordinal(), -(r["domain_rank"] or -1), r["ref_domain"]))


def latest_lists(series: Series) -> list[tuple[str, list[Row]]]:
    """The latest week's lists, highest rank first (rows arrive so): lost, new, returning; and the
    last_week detections no full snapshot has counted yet."""
    latest = series.summary.latest
    new, lost = series.summary.at(latest) if latest else ([], [])
    return [("lost", lost), ("new", [r for r in new if not r["is_returning"]]),
            ("returning", [r for r in new if r["is_returning"]]), ("early", series.summary.early())]
