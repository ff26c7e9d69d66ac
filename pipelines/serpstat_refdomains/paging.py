"""Fetching one snapshot: exact paging, depth-cap partitions, completeness, rows to arrow.

This is where the pipeline earns or wastes the user's money. The rules (DESIGN.md §4, §6):
- page 1 gives `total`; then exactly pages 2..ceil(total/size), never a page past the end;
- a result deeper than Serpstat's sortable window (page x size <= 60,000) is split into
  complexFilter partitions (`domain_rank between`, halved; then `domain_from startsWith`), each
  probed for its size with a 1-row page, and their union is the snapshot;
- a snapshot is complete only if every page of every partition was fetched and the reported
  total stayed put; if it moved, the partition is fetched once more, then given up as incomplete.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import queue
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pyarrow as pa

from . import settings as S
from .client import DepthCapError, RefDomainsPage, SerpstatClient
from .config import Target
from .rows import SnapshotRows

logger = logging.getLogger(__name__)

# A stable sort, so the partition of the list into pages does not depend on ties.
SORT, ORDER = "domain_from", "asc"
# Pages are converted to Arrow ten at a time: per call, the columnar conversion and dlt's
# extract have fixed costs, and each hands the GIL to the page threads (a convoy that cost
# more than the conversion itself at one page per call).
CONVERT_BATCH_ROWS = 10_000
PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_."


class BudgetExhausted(Exception):
    """The run's credit budget (max_credits_per_run or the account balance) cannot cover this."""


class Budget:
    """Credits a run may still spend, shared by all its snapshots and threads.

    Each request reserves the most it can cost (its page size) and settles to what it was billed.
    A request is admitted while spent + reserved is below the limit, so however many pages are in
    flight at once, the limit is exceeded by less than one page. `fits` refuses a whole
    partition up front once its size is known.
    """

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.spent = 0
        self.reserved = 0
        self._lock = threading.Lock()

    def reserve(self, most: int) -> None:
        with self._lock:
            if self.limit is not None and self.spent + self.reserved >= self.limit:
                raise BudgetExhausted(f"credit budget of {self.limit} reached")
            self.reserved += most

    def settle(self, reserved: int, charged: int) -> None:
        with self._lock:
            self.reserved -= reserved
            self.spent += charged

    def fits(self, credits: int) -> bool:
        with self._lock:
            return self.limit is None or self.spent + self.reserved + credits <= self.limit

    @property
    def left(self) -> int | None:
        with self._lock:
            return None if self.limit is None else max(0, self.limit - self.spent)


@dataclass(frozen=True)
class SnapshotSpec:
    """What to fetch: one (target, kind, date) under the user's filter."""

    target: Target
    kind: str
    snapshot_date: dt.date
    user_filter: list | None
    filter_hash: str
    page_size: int = S.DEFAULT_PAGE_SIZE
    previous_rows: int | None = None  # rows of the latest complete snapshot of the series, if any

    @property
    def key(self) -> str:
        return snapshot_key(self.target.domain, self.target.search_type, self.kind, self.snapshot_date)


def snapshot_key(target_domain: str, search_type: str, kind: str, snapshot_date: dt.date | str) -> str:
    """The single synthetic merge key of a snapshot ('|' cannot occur in any part)."""
    return f"{target_domain}|{search_type}|{kind}|{snapshot_date}"


@dataclass
class FetchStats:
    """What fetching one snapshot did; becomes its row in the `snapshots` ledger."""

    status: str = S.STATUS_INCOMPLETE
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
    error: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    finished_at: dt.datetime | None = None


@dataclass(frozen=True)
class Partition:
    """A slice of the result: domain_rank within `ranks`, domain_from starting with `prefix`."""

    ranks: tuple[int, int] | None = None
    prefix: str | None = None

    def conditions(self) -> list[dict]:
        conds: list[dict] = []
        if self.ranks is not None:
            conds.append({"field": "domain_rank", "compareType": "between", "value": list(self.ranks)})
        if self.prefix is not None:
            conds.append({"field": "domain_from", "compareType": "startsWith", "value": [self.prefix]})
        return conds

    def split(self) -> list["Partition"]:
        low, high = self.ranks or S.DOMAIN_RANK_RANGE
        if low < high:
            middle = (low + high) // 2
            return [Partition((low, middle), self.prefix), Partition((middle + 1, high), self.prefix)]
        return [Partition((low, high), (self.prefix or "") + c) for c in PREFIX_ALPHABET]

    def __str__(self) -> str:
        parts = []
        if self.ranks:
            parts.append(f"rank {self.ranks[0]}-{self.ranks[1]}")
        if self.prefix is not None:
            parts.append(f"prefix {self.prefix!r}")
        return ", ".join(parts) or "all"


class SnapshotFetcher:
    """Streams one snapshot as arrow tables, one per page, and fills `stats` as it goes.

    Nothing holds the snapshot: pages are converted and handed on as they arrive; only the set
    of normalized names already yielded is kept, to make a donor that repeats one row.
    """

    def __init__(
        self,
        client: SerpstatClient,
        spec: SnapshotSpec,
        budget: Budget | None = None,
        depth_cap: int = S.DEPTH_CAP,
        executor: ThreadPoolExecutor | None = None,
        window: int = 8,
        progress: Callable[["SnapshotFetcher"], None] | None = None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.budget = budget or Budget(None)
        self.depth_cap = depth_cap
        self.executor = executor
        self.window = window
        self.progress = progress
        self.stats = FetchStats()
        self._lock = threading.Lock()
        self._rows = SnapshotRows({"snapshot_key": spec.key, "target_domain": spec.target.domain,
                                   "search_type": spec.target.search_type, "snapshot_date": spec.snapshot_date,
                                   "snapshot_kind": spec.kind}, self._reject, self._null)

    # --- public --------------------------------------------------------------------------
    def tables(self) -> Iterator[pa.Table]:
        """Arrow tables of the snapshot's rows; `stats.status` is final when this is exhausted."""
        stats = self.stats
        moved = False
        leaves: list[tuple[Partition, int]] = []
        stack = [Partition()]
        while stack:
            part = stack.pop()
            outcome = yield from self._fetch_partition(part, probe=part != Partition())
            if outcome == "split":
                stack.extend(reversed(part.split()))
                continue
            if outcome == "moved":
                logger.info("%s: total moved while paging (%s); fetching it once more", self.spec.key, part)
                outcome = yield from self._fetch_partition(part, probe=False)
                if outcome == "moved":
                    moved = True
                    continue
            leaves.append((part, outcome))
        if stats.rows_loaded == 0:
            # An empty snapshot still declares the table, so queries and models find it.
            yield self._to_arrow([])
        self._rows.finish()
        stats.partitions = len(leaves)
        stats.expected_total = sum(total for _, total in leaves)
        if moved:
            stats.status = S.STATUS_INCOMPLETE
            stats.error = "the result changed while it was paged, twice: fetch again later"
        elif len(leaves) > 1 and not self._partitions_cover(leaves):
            stats.status = S.STATUS_INCOMPLETE
            stats.error = ("partitions of a result over the depth cap do not add up to its total "
                           "(names outside a-z0-9 or ranks outside 0-100)")
        elif (self.spec.kind == "full" and stats.expected_total == 0 and self.spec.previous_rows):
            stats.status = S.STATUS_SUSPECT_EMPTY
            stats.error = (f"empty, while the previous complete snapshot had {self.spec.previous_rows} rows "
                           "(retried once): check the target in Serpstat, then rerun with --force")
        else:
            stats.status = S.STATUS_COMPLETE
        stats.finished_at = dt.datetime.now(dt.timezone.utc)

    # --- partitions ----------------------------------------------------------------------
    def _fetch_partition(self, part: Partition, probe: bool) -> Iterator[pa.Table]:
        """Yields the partition's pages; returns its total, or "split" / "moved"."""
        size = self.spec.page_size
        first = self._page(part, 1, 1 if probe else size)
        total = first.total
        if self.spec.kind == "full" and total == 0 and part == Partition() and self.spec.previous_rows:
            # An empty full snapshot after a non-empty one is more often a glitch than a fact.
            first = self._page(part, 1, size)
            total = first.total
        if total > (self.depth_cap // size) * size:
            return "split"
        pages = math.ceil(total / size)
        if probe and total > 0:
            first = self._page(part, 1, size)
            if first.total != total:
                return "moved"
        if pages == 0:
            return 0
        if not self.budget.fits(total - first.count):
            raise _budget_error(total - first.count, self.budget)
        counted = first.count
        batch = list(first.rows)
        outcome: str | None = None
        try:
            for page in self._pages(part, range(2, pages + 1), size):
                if page.total != total:
                    outcome = "moved"
                    break
                counted += page.count
                batch.extend(page.rows)
                if len(batch) >= CONVERT_BATCH_ROWS:
                    yield self._to_arrow(batch)
                    batch = []
        except DepthCapError:
            # Serpstat's window is narrower than we assumed: learn it, split this partition.
            self.depth_cap = min(self.depth_cap, (pages - 1) * size)
            logger.info("%s: depth cap is below %d rows; splitting", self.spec.key, self.depth_cap)
            outcome = "split"
        if batch:
            yield self._to_arrow(batch)
        if outcome is not None:
            return outcome
        if counted != total:
            return "moved"
        return total

    def _pages(self, part: Partition, numbers: range, size: int) -> Iterator[RefDomainsPage]:
        """Pages in order, fetched concurrently within a bounded window (the rate limiter paces them)."""
        if self.executor is None or len(numbers) <= 1:
            for number in numbers:
                yield self._page(part, number, size)
            return
        pending: list[Future] = []
        queue = iter(numbers)
        try:
            for number in queue:
                pending.append(self.executor.submit(self._page, part, number, size))
                if len(pending) >= self.window:
                    break
            while pending:
                page = pending.pop(0).result()
                next_number = next(queue, None)
                if next_number is not None:
                    pending.append(self.executor.submit(self._page, part, next_number, size))
                yield page
        finally:
            for future in pending:
                future.cancel()
            for future in pending:
                if not future.cancelled():
                    try:
                        future.result()
                    except Exception:  # noqa: BLE001 - abandoned pages: their failure is moot
                        pass

    def _page(self, part: Partition, number: int, size: int) -> RefDomainsPage:
        self.budget.reserve(size)
        charged = 0
        try:
            page = self.client.get_ref_domains(
                self.spec.target.domain, self.spec.target.search_type, page=number, size=size,
                sort=SORT, order=ORDER, complex_filter=self._filter(part))
            charged = page.charge
        finally:
            self.budget.settle(size, charged)
            with self._lock:
                self.stats.requests += 1
        with self._lock:
            self.stats.credits_spent += page.charge
            # the account balance, as the client keeps it (lowest left_lines seen; minus the
            # charge of an empty result, which carries none)
            self.stats.credits_left = self.client.last_left_lines
        if self.progress is not None:
            self.progress(self)
        return page

    def _filter(self, part: Partition) -> list | None:
        extra = part.conditions()
        if self.spec.kind == "last_week":
            extra.append({"additional_filters": "last_week"})
        groups = self.spec.user_filter or [[]]
        combined = [list(group) + extra for group in groups]
        return combined if any(combined) else None

    def _partitions_cover(self, leaves: list[tuple[Partition, int]]) -> bool:
        """The union of leaves is the whole result only if one unpartitioned count agrees."""
        whole = self._page(Partition(), 1, 1).total
        return whole == sum(total for _, total in leaves)

    # --- rows ----------------------------------------------------------------------------
    def _to_arrow(self, rows: list[Any]) -> pa.Table:
        table = self._rows.table(rows)
        with self._lock:
            self.stats.rows_loaded += table.num_rows
        return table

    def _reject(self, reason: str) -> None:
        with self._lock:
            self.stats.rows_rejected += 1
            self.stats.reject_reasons[reason[:80]] += 1

    def _null(self, metric: str, value: str) -> None:
        with self._lock:
            self.stats.metrics_nulled += 1
            self.stats.nulled_values[f"{metric} {value}"] += 1


class Prefetcher:
    """Runs a fetcher in a background thread, up to `max_tables` converted batches (of up to
    CONVERT_BATCH_ROWS rows) ahead of its consumer.

    The run loads snapshots one after another; while dlt loads one, the next one's requests are
    already on their way, so a rate-limited plan keeps using its whole rate. The queue bounds
    memory; `cancel` stops a fetch whose results will not be wanted.
    """

    _DONE = object()

    def __init__(self, fetcher: SnapshotFetcher, max_tables: int = 4) -> None:
        self.fetcher = fetcher
        self._queue: queue.Queue = queue.Queue(maxsize=max_tables)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name=f"prefetch {fetcher.spec.key}", daemon=True)
        self._thread.start()

    @property
    def spec(self) -> SnapshotSpec:
        return self.fetcher.spec

    @property
    def stats(self) -> FetchStats:
        return self.fetcher.stats

    def _produce(self) -> None:
        tables = self.fetcher.tables()
        try:
            for table in tables:
                if not self._put(table):
                    return
            self._put(self._DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(error)
        finally:
            tables.close()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def tables(self) -> Iterator[pa.Table]:
        while True:
            item = self._queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def _budget_error(needed: int, budget: Budget) -> BudgetExhausted:
    return BudgetExhausted(f"needs {needed} more credits, {budget.left} left in this run's budget")
