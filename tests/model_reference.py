"""The models' meaning written in Python: docs/data.md's Models rules applied to the truth (the donors
of each day, or the rows of each loaded snapshot), never computed by the models themselves. The
one oracle every test of the models' rows compares against: the golden and chaos replays through
the emulator, and the random histories of tests/test_model_rewrite.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from serpstat_refdomains.normalize import registrable_domain

CONFIRM = 2  # the lost_confirmation_snapshots the golden, chaos and random histories use


class Row(NamedTuple):
    """A donor as a snapshot holds it."""
    rank: int | None
    pages: int | None


class NewRow(NamedTuple):
    """A row of new_ref_domains (without its display column)."""
    target_domain: str
    search_type: str
    ref_domain: str
    registrable_domain: str
    detected_on: dt.date
    previous_snapshot_date: dt.date | None
    detected_by: str
    is_returning: bool
    domain_rank: int | None
    ref_pages: int | None


class LostRow(NamedTuple):
    """A row of lost_ref_domains (without its display column)."""
    target_domain: str
    search_type: str
    ref_domain: str
    registrable_domain: str
    lost_on: dt.date
    last_seen_on: dt.date
    domain_rank: int | None
    ref_pages: int | None
    returned_on: dt.date | None
    consecutive_absences: int
    confirmed: bool


class ChangeRow(NamedTuple):
    """A row of ref_domain_changes (without its display column)."""
    event_date: dt.date
    target_domain: str
    search_type: str
    ref_domain: str
    registrable_domain: str
    change: str
    detected_by: str
    confirmed: bool | None
    domain_rank: int | None
    ref_pages: int | None


class WeekRow(NamedTuple):
    target_domain: str
    search_type: str
    week_start: dt.date
    ref_domains: int | None
    new_ref_domains: int
    lost_ref_domains: int
    net_change: int


class CurrentRow(NamedTuple):
    """A row of ref_domains_current (without its display column)."""
    target_domain: str
    search_type: str
    snapshot_date: dt.date
    ref_domain: str
    registrable_domain: str
    domain_rank: int | None
    ref_pages: int | None
    first_seen_on: dt.date


class Candidate(NamedTuple):
    day: dt.date
    order: int  # on one day the snapshot diff comes first
    detector: str
    row: Any  # the donor as the detecting snapshot holds it: rank, pages


# A series' readable snapshots: its full snapshots and its last_week pulls, each (date, {domain: Row}).
Snapshots = list[tuple[dt.date, dict[str, Any]]]


def reference(fulls: Snapshots, pulls: Snapshots, target: str, search_type: str = "domain_with_subdomains",
              registrable: Callable[[str], str] = registrable_domain) -> tuple[set[NewRow], set[LostRow]]:
    """docs/data.md's Models rules over the truth sets of the readable snapshots of one series."""
    fulls = sorted(fulls, key=lambda f: f[0])
    candidates: dict[tuple[str, int | None], list[Candidate]] = {}
    for i in range(1, len(fulls)):
        day, current = fulls[i]
        for name in current.keys() - fulls[i - 1][1].keys():
            candidates.setdefault((name, i - 1), []).append(Candidate(day, 0, "snapshot_diff", current[name]))
    for day, pull in pulls:
        prior = [i for i, (d, _) in enumerate(fulls) if d < day]
        prev = prior[-1] if prior else None
        for name, row in pull.items():
            if prev is None or name not in fulls[prev][1]:
                candidates.setdefault((name, prev), []).append(Candidate(day, 1, "last_week", row))
    new = set()
    for (name, prev), found in candidates.items():
        first = min(found, key=lambda c: (c.day, c.order))
        detectors = {c.detector for c in found}
        returning = prev is not None and any(name in fulls[j][1] for j in range(prev))
        new.add(NewRow(target, search_type, name, registrable(name), first.day,
                       fulls[prev][0] if prev is not None else None,
                       "both" if len(detectors) == 2 else detectors.pop(), returning, first.row.rank,
                       first.row.pages))
    lost = set()
    for i in range(len(fulls) - 1):
        for name in fulls[i][1].keys() - fulls[i + 1][1].keys():
            later = [j for j in range(i + 2, len(fulls)) if name in fulls[j][1]]
            returned = later[0] if later else None
            absences = (returned if returned is not None else len(fulls)) - (i + 1)
            row = fulls[i][1][name]
            lost.add(LostRow(target, search_type, name, registrable(name), fulls[i + 1][0],
                             fulls[i][0], row.rank, row.pages, fulls[returned][0] if returned is not None else None,
                             absences, returned is None and absences >= CONFIRM))
    return new, lost


def changes(new: Iterable[NewRow], lost: Iterable[LostRow]) -> set[ChangeRow]:
    """ref_domain_changes: the rows of new (new or returned) and of lost, one date column."""
    rows = {ChangeRow(r.detected_on, r.target_domain, r.search_type, r.ref_domain, r.registrable_domain,
                      "returned" if r.is_returning else "new", r.detected_by, None, r.domain_rank, r.ref_pages)
            for r in new}
    return rows | {ChangeRow(r.lost_on, r.target_domain, r.search_type, r.ref_domain, r.registrable_domain, "lost",
                             "snapshot_diff", r.confirmed, r.domain_rank, r.ref_pages) for r in lost}


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def weekly(target: str, search_type: str, fulls: Snapshots, pulls: Snapshots, new: Iterable[NewRow],
           lost: Iterable[LostRow]) -> set[WeekRow]:
    """ref_domains_weekly of one target: each ISO week with a readable snapshot, the size of its
    latest full snapshot, and the new and lost rows dated in it (all of the target's series)."""
    new, lost = list(new), list(lost)
    rows = set()
    for week in {monday(d) for d, _ in fulls + pulls}:
        in_week = sorted(((d, f) for d, f in fulls if monday(d) == week), key=lambda f: f[0])
        n_new = sum(1 for r in new if monday(r.detected_on) == week)
        n_lost = sum(1 for r in lost if monday(r.lost_on) == week)
        rows.add(WeekRow(target, search_type, week, len(in_week[-1][1]) if in_week else None, n_new, n_lost,
                         n_new - n_lost))
    return rows


def current(target: str, search_type: str, fulls: Snapshots, pulls: Snapshots,
            registrable: Callable[[str], str] = registrable_domain) -> set[CurrentRow]:
    """ref_domains_current of one series: its latest full snapshot, each donor first seen in the
    first of its readable snapshots (full or last_week) that listed it."""
    if not fulls:
        return set()
    last_day, last = max(fulls, key=lambda f: f[0])
    first_seen: dict[str, dt.date] = {}
    for day, snapshot in sorted(fulls + pulls, key=lambda s: s[0]):
        for name in snapshot:
            first_seen.setdefault(name, day)
    return {CurrentRow(target, search_type, last_day, name, registrable(name), row.rank, row.pages, first_seen[name])
            for name, row in last.items()}


class Loaded(NamedTuple):
    """A snapshot as the loaded tables hold it: its ledger row and its rows."""
    snapshot_key: str
    target_domain: str
    search_type: str
    filter_hash: str
    snapshot_kind: str
    snapshot_date: dt.date
    status: str
    rows_loaded: int | None
    rows_rejected: int | None
    started_at: dt.datetime | None
    rows: list[tuple[str, str, int | None, int | None, dt.datetime | None]]  # name, registrable, rank, pages, pulled_at


def readable(snapshot: Loaded) -> bool:
    """docs/data.md: only complete snapshots whose rows agree with the ledger are read (as many as
    rows_loaded, all of the pull it describes); a full snapshot that rejected a row is not."""
    stamps = [pulled for *_, pulled in snapshot.rows if pulled is not None]
    return (snapshot.status == "complete" and not (snapshot.snapshot_kind == "full" and snapshot.rows_rejected)
            and len(snapshot.rows) == snapshot.rows_loaded
            and (not stamps or min(stamps) == max(stamps) == snapshot.started_at))


def expected_models(loaded: Iterable[Loaded]) -> dict[str, set]:
    """Every public model's rows (without display columns) over the loaded snapshots: the
    readable ones grouped into series, each series' rules applied, and the weeks and current
    donors of each target."""
    series: dict[tuple[str, str, str], tuple[Snapshots, Snapshots]] = {}
    registrable: dict[str, str] = {}
    for snapshot in loaded:
        if not readable(snapshot):
            continue
        fulls, pulls = series.setdefault((snapshot.target_domain, snapshot.search_type, snapshot.filter_hash), ([], []))
        (fulls if snapshot.snapshot_kind == "full" else pulls).append(
            (snapshot.snapshot_date, {name: Row(rank, pages) for name, _, rank, pages, _ in snapshot.rows}))
        registrable.update({name: domain for name, domain, *_ in snapshot.rows})
    new: set[NewRow] = set()
    lost: set[LostRow] = set()
    weeks: set[WeekRow] = set()
    latest: dict[tuple[str, str], tuple[dt.date, set[CurrentRow]]] = {}
    targets: dict[tuple[str, str], tuple[Snapshots, Snapshots]] = {}
    for (target, search_type, _), (fulls, pulls) in series.items():
        n, lo = reference(fulls, pulls, target, search_type, registrable.__getitem__)
        new |= n
        lost |= lo
        everything = targets.setdefault((target, search_type), ([], []))
        everything[0].extend(fulls)
        everything[1].extend(pulls)
        last_day = max((day for day, _ in fulls), default=None)
        if last_day is not None and last_day > latest.get((target, search_type), (dt.date.min, set()))[0]:
            latest[(target, search_type)] = (last_day, current(target, search_type, fulls, pulls,
                                                               registrable.__getitem__))
    for (target, search_type), (fulls, pulls) in targets.items():
        weeks |= weekly(target, search_type, fulls, pulls, [r for r in new if r[:2] == (target, search_type)],
                        [r for r in lost if r[:2] == (target, search_type)])
    return {"new_ref_domains": new, "lost_ref_domains": lost, "ref_domain_changes": changes(new, lost),
            "ref_domains_weekly": weeks, "ref_domains_current": set().union(*(rows for _, rows in latest.values()))}


# the columns of each public model the reference computes, in its order
COLUMNS = {"new_ref_domains": NewRow._fields, "lost_ref_domains": LostRow._fields,
           "ref_domain_changes": ChangeRow._fields, "ref_domains_weekly": WeekRow._fields,
           "ref_domains_current": CurrentRow._fields}
NEW_COLUMNS = ", ".join(NewRow._fields)
LOST_COLUMNS = ", ".join(LostRow._fields)
