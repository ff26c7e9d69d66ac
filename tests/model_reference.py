"""The models' meaning written in Python: README's Models section applied to the truth of each
day, never computed by the models themselves. The golden and chaos tests compare against it."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from serpstat_refdomains.normalize import registrable_domain

CONFIRM = 2  # the lost_confirmation_snapshots the golden and chaos runs use


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
    row: Any  # the emulator's truth row: rank, pages


def reference(fulls: list[tuple[dt.date, dict]], pulls: list[tuple[dt.date, dict]],
              target: str) -> tuple[set[NewRow], set[LostRow]]:
    """README's Models rules over the truth sets of the readable snapshots of one series."""
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
        new.add(NewRow(target, "domain_with_subdomains", name, registrable_domain(name), first.day,
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
            lost.add(LostRow(target, "domain_with_subdomains", name, registrable_domain(name), fulls[i + 1][0],
                             fulls[i][0], row.rank, row.pages, fulls[returned][0] if returned is not None else None,
                             absences, returned is None and absences >= CONFIRM))
    return new, lost


NEW_COLUMNS = ", ".join(NewRow._fields)
LOST_COLUMNS = ", ".join(LostRow._fields)
