"""One snapshot's fetch: what it is asked (SnapshotSpec) and what it did (FetchStats, which becomes
its row in the `snapshots` ledger and its attempt's row)."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from dataclasses import dataclass, field

from .constants import DEFAULT_PAGE_SIZE, STATUS_INCOMPLETE
from .contract import snapshot_key
from .targets import Target


@dataclass(frozen=True)
class SnapshotSpec:
    """What to fetch: one (target, kind, date) under the user's filter."""

    target: Target
    kind: str
    snapshot_date: dt.date
    user_filter: list | None
    filter_hash: str
    page_size: int = DEFAULT_PAGE_SIZE
    previous_rows: int | None = None  # rows of the latest complete snapshot of the series, if any
    # what the ledger knows of the latest complete snapshot of this kind: its total and, when it
    # was partitioned, its leaf partitions (`partition_plan` JSON), so no root page is paid for
    previous_total: int | None = None
    partition_plan: str | None = None

    @property
    def key(self) -> str:
        return snapshot_key(self.target.domain, self.target.search_type, self.kind, self.snapshot_date)


@dataclass
class FetchStats:
    """What fetching one snapshot did; becomes its row in the `snapshots` ledger."""

    status: str = STATUS_INCOMPLETE
    expected_total: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    reject_reasons: Counter = field(default_factory=Counter)
    metrics_nulled: int = 0  # unusable metric values of loaded rows, loaded as NULL (rows.py)
    nulled_values: Counter = field(default_factory=Counter)  # "domainRank 'n/a'" -> count
    requests: int = 0
    credits_spent: int = 0
    credits_left: int | None = None
    partitions: int = 0
    partition_plan: str | None = None  # the leaves as JSON, when the result was partitioned
    error: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None
    # the fetch's threads update these figures under it
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
