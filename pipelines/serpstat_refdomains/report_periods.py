"""What changed over a period, counted so that it adds up (docs/reporting.md, "The report").

A target's size is the row count of a readable full snapshot. Its changes are counted between
full snapshots only: between the period's first full snapshot S and its last E, every domain
that is in F(i+1) and not in F(i) is new (a returning domain too) and every domain in F(i) and
not in F(i+1) is lost, for each consecutive pair S <= F(i) < F(i+1) <= E. The sum of
|F(i+1)| - |F(i)| over those pairs telescopes, so

    new - lost = |E| - |S|

exactly, per target, whatever the period. A last_week pull sees a new donor before the next full
snapshot does; until one lists it, it is shown apart ("detected early"), never counted: counting
it would break the sum (it is not in |E|), and a baseline week's pull would count donors the
first full snapshot already holds.

A period is the dates since..until, inclusive. Its changes are those a full snapshot dated in it
found, so it compares E, the latest full snapshot on or before `until`, with S, the latest dated
before `since` (the size the period started from); without `since`, or when no full snapshot
precedes it, S is the first full snapshot, the baseline.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from typing import Any

Row = dict[str, Any]

# what became of a donor a last_week pull listed and no full snapshot has counted
EARLY = "early"  # no full snapshot after the pull yet (in the period): it may still be counted
NOT_IN_FULL = "not_in_next_full"  # the next full snapshot did not list it
BEFORE_BASELINE = "before_first_full"  # pulled on or before the first full snapshot: part of the baseline


@dataclass(frozen=True)
class Change:
    """The changes between two full snapshots of one target (the same one: nothing changed)."""

    start: dt.date | None
    end: dt.date | None
    size_start: int | None
    size_end: int | None
    new: int = 0
    returning: int = 0  # of `new`: seen in an earlier full snapshot, lost, and back
    lost: int = 0
    lost_confirmed: int = 0
    early: int = 0  # last_week detections after `end`, not counted in `new`

    @property
    def net(self) -> int:
        return self.new - self.lost

    def as_row(self) -> Row:
        return {"period_start": self.start, "period_end": self.end, "size_start": self.size_start,
                "size_end": self.size_end, "new": self.new, "returning": self.returning, "lost": self.lost,
                "lost_confirmed": self.lost_confirmed, "net": self.net, "early_last_week": self.early}


@dataclass
class Summary:
    """One target over the report's period: the counts, each step between consecutive full
    snapshots, and the rows behind them."""

    change: Change
    steps: list[Change] = field(default_factory=list)
    new: list[Row] = field(default_factory=list)  # counted: `counted_on` is the full snapshot that found it
    lost: list[Row] = field(default_factory=list)
    last_week_only: list[Row] = field(default_factory=list)  # `status`: EARLY, NOT_IN_FULL, BEFORE_BASELINE

    @property
    def latest(self) -> Change | None:
        """The period's last step: the latest week, with weekly full snapshots."""
        return self.steps[-1] if self.steps else None

    def early(self) -> list[Row]:
        return [r for r in self.last_week_only if r["status"] == EARLY]

    def at(self, change: Change) -> tuple[list[Row], list[Row]]:
        """The new and the lost rows a step or the period counts."""
        def inside(day: dt.date) -> bool:
            return change.start is not None and change.end is not None and change.start < day <= change.end
        return [r for r in self.new if inside(r["counted_on"])], [r for r in self.lost if inside(r["counted_on"])]


def lost_status(row: Row) -> str:
    if row.get("returned_on") is not None:
        return f"returned {row['returned_on']}"
    return "confirmed" if row["confirmed"] else "unconfirmed"


def summarize(sizes: list[tuple[dt.date, int]], new: list[Row], lost: list[Row],
              since: dt.date | None = None, until: dt.date | None = None) -> Summary:
    """`sizes`: the target's readable full snapshots (date, rows); `new`, `lost`: its rows of
    new_ref_domains and lost_ref_domains. Rows come back as new dicts with `counted_on` (and
    `status` for lost and last_week-only rows)."""
    sizes = sorted(sizes)
    dates = [d for d, _ in sizes]
    size = dict(sizes)
    following = dict(itertools.pairwise(dates))
    ends = [d for d in dates if until is None or d <= until]
    before = [d for d in dates if since is not None and d < since]
    start = (before[-1] if before else dates[0]) if ends else None
    end = ends[-1] if ends else None

    def inside(day: dt.date | None) -> bool:
        return day is not None and start is not None and end is not None and start < day <= end

    counted, pulled = [], []
    for row in new:
        if row["detected_by"] == "last_week":
            if (since is None or row["detected_on"] >= since) and (until is None or row["detected_on"] <= until):
                pulled.append({**row, "counted_on": None, "status": _pull_status(row, dates, until)})
            continue
        found = following.get(row["previous_snapshot_date"])  # F(i+1), the snapshot that found it
        if inside(found):
            counted.append({**row, "counted_on": found})
    gone = [{**row, "counted_on": row["lost_on"], "status": lost_status(row)} for row in lost
            if inside(row["lost_on"])]
    summary = Summary(Change(start, end, size.get(start) if start else None, size.get(end) if end else None),
                      new=counted, lost=gone, last_week_only=pulled)
    if start is not None and end is not None:
        steps = [(a, b) for a, b in following.items() if start <= a and b <= end]
        summary.steps = [_count(summary, a, b, size[a], size[b], early=0) for a, b in steps]
        summary.change = _count(summary, start, end, size[start], size[end], early=len(summary.early()))
    else:
        summary.change = Change(None, None, None, None, early=len(summary.early()))
    return summary


def _count(summary: Summary, start: dt.date, end: dt.date, size_start: int, size_end: int, early: int) -> Change:
    new, lost = summary.at(Change(start, end, None, None))
    return Change(start, end, size_start, size_end, new=len(new), returning=sum(1 for r in new if r["is_returning"]),
                  lost=len(lost), lost_confirmed=sum(1 for r in lost if r["confirmed"]), early=early)


def _pull_status(row: Row, dates: list[dt.date], until: dt.date | None) -> str:
    """A last_week pull compares with the latest full snapshot before it, F(i); the next, F(i+1),
    is the first dated on or after the pull. Had F(i+1) listed the donor, the snapshot diff would
    have found it too and the row would say `both`."""
    following = next((d for d in dates if d >= row["detected_on"]), None)
    if following is None or (until is not None and following > until):
        return EARLY
    return BEFORE_BASELINE if row["previous_snapshot_date"] is None else NOT_IN_FULL


def describe(change: Change) -> str:
    """One line that adds up: the sizes, the net change and what it is made of."""
    if change.start is None or change.end is None or change.start == change.end:
        return sizes_text(change)
    return f"{sizes_text(change)}, net {change.net:+,} = {made_of(change)}"


def sizes_text(change: Change) -> str:
    if change.start is None or change.end is None:
        return "no complete full snapshot yet"
    if change.start == change.end:
        return f"{change.size_end:,} referring domains on {change.end}; no later full snapshot to compare with"
    return f"{change.size_start:,} → {change.size_end:,} referring domains from {change.start} to {change.end}"


def made_of(change: Change) -> str:
    returning = f" (incl. {change.returning:,} returning)" if change.returning else ""
    if not change.lost:
        confirmed = ""
    elif change.lost_confirmed == change.lost:
        confirmed = ", all confirmed"
    else:
        confirmed = f", {change.lost_confirmed:,} confirmed" if change.lost_confirmed else ", none confirmed yet"
    return f"{change.new:,} new{returning} − {change.lost:,} lost{confirmed}"


def early_note(change: Change) -> str:
    if not change.early:
        return ""
    return f"detected early by last_week: {change.early:,}, not yet in a full snapshot (not counted above)"


def unconfirmed_note(confirm_after: int) -> str:
    if confirm_after <= 1:
        return "every loss is confirmed at once (lost_confirmation_snapshots = 1)"
    seen = "once" if confirm_after == 2 else f"fewer than {confirm_after} times in a row"
    return f"unconfirmed: seen missing {seen}; confirmed after {confirm_after} consecutive absences"


def period_label(since: dt.date | None, until: dt.date | None) -> str:
    if since is None and until is None:
        return "all loaded history (first to latest full snapshot)"
    return (f"{since or 'the first full snapshot'} to {until or 'the latest full snapshot'}, inclusive: the "
            "changes the full snapshots of these dates found, against the latest full snapshot before them; the "
            "latest week is the period's last")
