"""What a run fetches: the snapshots due for a day, from the configuration and the ledger.

`auto` runs a full snapshot when the last complete one is `full_snapshot_every_days` old, and on
the days between a `last_week` pull when `fetch_last_week` is on; a snapshot already complete for
the day is never paid for again unless forced (docs/operations.md).

Dates cannot lie: Serpstat answers with its index of today, so a snapshot is filed under today's
date and no other. A date is accepted while it is the current date somewhere on Earth (UTC-12 to
UTC+14: a run at 00:05 UTC may file yesterday, a run in Auckland tomorrow's UTC date), and never
before the latest snapshot of its series (history is not rewritten); anything else is refused
before a request is sent or a row written.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import dlt

from . import ledger
from .budget import read_cost
from .config import Settings
from .constants import KINDS, STATUS_COMPLETE
from .contract import snapshot_key
from .errors import UsageError
from .ledger import LedgerRow
from .spec import SnapshotSpec

logger = logging.getLogger(__name__)


# The earliest and latest time zones in use: a date is "today" somewhere between them.
EARLIEST_ZONE, LATEST_ZONE = dt.timedelta(hours=-12), dt.timedelta(hours=14)


def check_today(day: dt.date, now: dt.datetime | None = None) -> None:
    """Refuse a snapshot date that is not today's date in some time zone (UsageError)."""
    now = now or dt.datetime.now(dt.UTC)
    earliest, latest = (now + EARLIEST_ZONE).date(), (now + LATEST_ZONE).date()
    if day > latest:
        raise UsageError(f"--snapshot-date {day} is in the future (it is {now:%Y-%m-%d %H:%M} UTC; the latest "
                         f"date anywhere on Earth is {latest}, in UTC+14): Serpstat answers with today's index; leave "
                         "--snapshot-date out to file it under today")
    if day < earliest:
        raise UsageError(f"--snapshot-date {day} is in the past (it is {now:%Y-%m-%d %H:%M} UTC): Serpstat "
                         "answers with today's index, so it would be filed under the wrong date; snapshots "
                         "cannot be backfilled: leave --snapshot-date out to file it under today")


def check_history(ledger: dict[str, LedgerRow], settings: Settings, day: dt.date, given: bool = True) -> None:
    """Refuse a date before the latest complete snapshot of a series the run would fetch
    (UsageError): today's index filed among past snapshots would read as false new and lost.

    `given`: the date came from --snapshot-date. When it did not (today's date), the later
    snapshot was filed under a date still ahead (--snapshot-date in the UTC+14 window, or a clock
    ahead), and the line says so and how to get out (docs/operations.md#dates)."""
    targets = {(t.domain, t.search_type) for t in settings.targets}
    later = [row for row in ledger.values() if row.status == STATUS_COMPLETE and row.snapshot_date > day
             and row.filter_hash == settings.filter_hash and (row.target_domain, row.search_type) in targets]
    if later:
        latest = max(later, key=lambda row: row.snapshot_date)
        if not given:
            raise UsageError(
                f"{latest.target_domain} already has a snapshot filed under a later date, {latest.snapshot_date} "
                f"(by --snapshot-date, or on a machine whose clock was ahead), and this run files under today, "
                f"{day} (UTC): history cannot be rewritten; wait until {latest.snapshot_date} (UTC), or run with "
                f"--snapshot-date {latest.snapshot_date} (accepted while it is today somewhere on Earth), or "
                "remove the later-dated snapshot (docs/operations.md, \"Dates\")")
        raise UsageError(f"--snapshot-date {day} is before the latest snapshot of {latest.target_domain} "
                         f"({latest.snapshot_date}): history cannot be rewritten; use --snapshot-date "
                         f"{latest.snapshot_date} or later (while it is today somewhere on Earth), or leave it out "
                         "once today's date has reached it")


@dataclass(frozen=True)
class PlannedSnapshot:
    spec: SnapshotSpec
    existing: LedgerRow | None
    # credits it will likely cost: the size of its series' latest complete pull of the same kind
    estimate: int | None
    # rows of this snapshot in the destination now (they must go unless it stays complete)
    present: int = 0

    @property
    def was_complete(self) -> bool:
        """Complete in the ledger AND with the rows the ledger promises: only then is it kept
        until a complete result replaces it."""
        return (self.existing is not None and self.existing.status == STATUS_COMPLETE
                and self.existing.rows_loaded == self.present)


def due_snapshots(pipeline: dlt.Pipeline, settings: Settings, day: dt.date, kind: str, force: bool
                  ) -> tuple[list[PlannedSnapshot], list[PlannedSnapshot]]:
    """`plan_snapshots` from what the destination holds: its ledger, checked against the rows
    actually loaded for the day (rows of another pull than the ledger's are deleted first)."""
    keys = planned_keys(settings, day)
    ledger.delete_rows_of_other_pulls(pipeline, day, keys)
    return plan_snapshots(settings, ledger.read_ledger(pipeline), day, kind, force,
                          ledger.rows_present(pipeline, day, keys))


def planned_keys(settings: Settings, day: dt.date) -> list[str]:
    """Every snapshot key a run for `day` may fetch."""
    return [snapshot_key(t.domain, t.search_type, k, day) for t in settings.targets for k in KINDS]


def plan_snapshots(settings: Settings, ledger: dict[str, LedgerRow], day: dt.date, kind: str,
                   force: bool, present: dict[str, int] | None = None
                   ) -> tuple[list[PlannedSnapshot], list[PlannedSnapshot]]:
    """Snapshots to fetch, and those already complete (reported, never paid for again).

    `present` (rows per key, see ledger.rows_present) is checked against the ledger: a snapshot
    recorded complete whose rows do not match (a crash between the two tables' merges) is fetched
    again. Without it the ledger is trusted.
    """
    series_rows: dict[tuple, list[LedgerRow]] = {}
    for row in ledger.values():
        series_rows.setdefault((row.target_domain, row.search_type, row.filter_hash), []).append(row)
    todo: list[PlannedSnapshot] = []
    done: list[PlannedSnapshot] = []
    for target in settings.targets:
        complete = sorted((r for r in series_rows.get((target.domain, target.search_type, settings.filter_hash), [])
                           if r.status == STATUS_COMPLETE), key=lambda r: r.snapshot_date)
        previous_full = [r for r in complete if r.snapshot_kind == "full" and r.snapshot_date <= day]
        if kind in ("full", "last_week"):
            kinds = [kind]
        elif not previous_full or (day - previous_full[-1].snapshot_date).days >= settings.full_snapshot_every_days \
                or previous_full[-1].snapshot_date == day:
            # a full snapshot holds every donor a last_week pull of the same day would list: that
            # pull would be paid for and add nothing the models use
            kinds = ["full"]
        else:
            kinds = ["last_week"] if settings.fetch_last_week else []
        # --force refetches what was named: competitors that come along with a --domain are kept
        forced = force and (not settings.named or target in settings.named)
        for snapshot_kind in kinds:
            key = snapshot_key(target.domain, target.search_type, snapshot_kind, day)
            existing = ledger.get(key)
            rows_now = existing.rows_loaded if present is None and existing else (present or {}).get(key, 0)
            agrees = existing is not None and existing.rows_loaded == rows_now
            if existing and existing.status == STATUS_COMPLETE and not agrees:
                logger.warning("%s: the ledger says complete with %d rows, %d are loaded: fetching it again",
                               key, existing.rows_loaded, rows_now)
            same_kind = [r for r in complete if r.snapshot_kind == snapshot_kind]
            spec = SnapshotSpec(
                target=target, kind=snapshot_kind, snapshot_date=day, user_filter=settings.complex_filter,
                filter_hash=settings.filter_hash, page_size=settings.page_size,
                previous_rows=previous_full[-1].rows_loaded if previous_full and snapshot_kind == "full" else None,
                **_what_the_ledger_knows(same_kind),
            )
            estimate = read_cost(same_kind[-1].expected_total, settings.page_size) if same_kind else None
            planned = PlannedSnapshot(spec, existing, estimate, rows_now)
            if existing and existing.status == STATUS_COMPLETE and existing.filter_hash == settings.filter_hash \
                    and agrees and not forced:
                done.append(planned)
            else:
                todo.append(planned)
    return todo, done


def _what_the_ledger_knows(same_kind: list[LedgerRow]) -> dict:
    """The latest complete pull of the same kind: its total and leaf partitions (paging.py starts
    from them instead of paying for a root page that would be thrown away)."""
    if not same_kind:
        return {}
    return {"previous_total": same_kind[-1].expected_total, "partition_plan": same_kind[-1].partition_plan}

