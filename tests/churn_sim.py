"""One churn trial: a snapshot fetched while the emulator's index changes between page requests,
judged against every state the index went through. Used by the churn property test and by
bench/churn.py, which measures how often the residual cases occur."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.constants import DEFAULT_SEARCH_TYPE, DEPTH_CAP, STATUS_COMPLETE
from serpstat_refdomains.emulator import Fault, SerpstatEmulator
from serpstat_refdomains.normalize import normalize_domain
from serpstat_refdomains.paging import SnapshotFetcher
from serpstat_refdomains.spec import SnapshotSpec
from serpstat_refdomains.targets import Target

CHURN_KINDS = ("insert_rows", "delete_rows", "swap_rows", "change_metrics")


@dataclass(frozen=True)
class Churn:
    """A churn fault to script: `kind` at the request for `page`, `where` relative to its rows."""

    kind: str
    page: int
    where: str
    pick: float
    count: int


@dataclass
class Verdict:
    status: str
    rows: int
    credits: int
    probe_credits: int  # 1-row requests: the shift guard's seams, partition probes, the cover count
    changes: int
    an_instant: bool  # the snapshot's names equal the index's at one instant of the pull
    missed: set[str]  # donors in the index throughout the pull, missing from the snapshot
    missed_moved: bool  # every missed donor changed rank during the pull (moved between partitions)
    duplicates: int


def trial(emulator: SerpstatEmulator, client: SerpstatClient, target: str, total: int, page_size: int,
          depth_cap: int | None, churn: list[Churn], pool: ThreadPoolExecutor | None,
          from_plan: bool = False) -> Verdict:
    """`from_plan`: the pull starts from the partition plan of a churn-free pull just before it, as
    next week's does (its small leaves read in groups), when that pull was partitioned."""
    api = emulator.api
    api.depth_cap = depth_cap or DEPTH_CAP
    emulator.set_profile(target, total)
    emulator.faults.clear()
    day: dt.date = emulator.today
    spec = SnapshotSpec(Target(target, DEFAULT_SEARCH_TYPE), "full", day, None, "", page_size=page_size)
    if from_plan:
        before = SnapshotFetcher(client, spec, depth_cap=depth_cap or DEPTH_CAP, executor=pool)
        for _ in before.tables():
            pass
        spec = replace(spec, previous_total=before.stats.expected_total, partition_plan=before.stats.partition_plan)
    emulator.faults.add(*(Fault(c.kind, query=target, page=c.page, where=c.where, pick=c.pick, count=c.count)
                          for c in churn))
    state = {d.name: d for d in emulator.graph.active(target, day)}
    first_change, first_entry = len(emulator.graph.changes), len(api.log)
    fetcher = SnapshotFetcher(client, spec, depth_cap=depth_cap or DEPTH_CAP, executor=pool)
    loaded: list[str] = []
    for table in fetcher.tables():
        loaded.extend(table.column("ref_domain").to_pylist())
    emulator.faults.clear()

    states = [frozenset(normalize_domain(n) for n in state)]
    moved: set[str] = set()
    changes = emulator.graph.changes[first_change:]
    for change in changes:
        if change.kind == "insert":
            state[change.donor.name] = change.donor
        elif change.kind == "remove":
            state.pop(change.donor.name, None)
        else:
            moved.add(normalize_domain(change.donor.name))
            if change.donor.name in state:
                state[change.donor.name] = change.donor
        states.append(frozenset(normalize_domain(n) for n in state))
    throughout = frozenset.intersection(*states)
    names = set(loaded)
    missed = set(throughout - names) if fetcher.stats.status == STATUS_COMPLETE else set()
    entries = api.log[first_entry:]
    return Verdict(
        status=fetcher.stats.status, rows=len(loaded), credits=sum(e.charge for e in entries),
        probe_credits=sum(e.charge for e in entries if e.size == 1 and page_size != 1),
        changes=len(changes), an_instant=names in states, missed=missed,
        missed_moved=bool(missed) and missed <= moved, duplicates=sum(n - 1 for n in Counter(loaded).values()))
