"""Fetching one snapshot: exact paging, depth-cap partitions, completeness, rows to arrow.

This is where the pipeline earns or wastes the user's money. The rules (README: Tables, Operations):
- page 1 gives `total`; then exactly pages 2..ceil(total/size), never a page past the end;
- a result deeper than Serpstat's sortable window (page x size <= 60,000) is split by name into
  complexFilter partitions (`domain_from startsWith` a-z0-9-_., and the names none of them
  reaches, read as the last rows in descending order), each probed for its size with a 1-row page
  unless the ledger's previous pull knows it, and their union is the snapshot;
- a snapshot is complete only if every page of every partition was fetched, the reported total
  stayed put and no row slid over a page seam; if not, the partition is fetched once more, then
  given up as incomplete. Only a verified read of a partition is converted and loaded.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from .budget import Budget, BudgetExhausted, read_cost
from .client import RefDomainsPage, SerpstatClient
from .concurrency import in_order, settle
from .constants import (
    DEFAULT_PAGE_SIZE,
    DEPTH_CAP,
    PULLED_AT,
    STATUS_COMPLETE,
    STATUS_INCOMPLETE,
    STATUS_SUSPECT_EMPTY,
)
from .contract import snapshot_key
from .errors import DepthCapError, SerpstatError
from .partitions import PREFIX_ALPHABET, Partition, plan_json, reusable_plan
from .rows import SnapshotRows
from .targets import Target

logger = logging.getLogger(__name__)

# A stable sort, so the partition of the list into pages does not depend on ties.
SORT, ORDER = "domain_from", "asc"
# Pages are converted to Arrow ten at a time: per call, the columnar conversion and dlt's
# extract have fixed costs, and each hands the GIL to the page threads (a convoy that cost
# more than the conversion itself at one page per call).
CONVERT_BATCH_ROWS = 10_000


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
        depth_cap: int = DEPTH_CAP,
        executor: ThreadPoolExecutor | None = None,
        window: int = 8,
        progress: Callable[[SnapshotFetcher], None] | None = None,
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
                                   "snapshot_kind": spec.kind, PULLED_AT: self.stats.started_at},
                                  self._reject, self._null)

    # --- public --------------------------------------------------------------------------
    def tables(self) -> Generator[pa.Table, None, None]:
        """Arrow tables of the snapshot's rows; `stats.status` is final when this is exhausted.

        A partition is held (at most a depth cap of raw rows, a few MB) until it is verified
        consistent, and only then converted: rows of an abandoned attempt never reach a table,
        nor the set of names that makes a repeated donor one row.
        """
        stats = self.stats
        unstable: str | None = None
        leaves: list[tuple[Partition, int]] = []
        # (partition, attempt, rows it had last time if known)
        stack: list[tuple[Partition, int, int | None]] = list(reversed(self._planned()))
        while stack:
            part, attempt, expected = stack.pop()
            if part.tail:
                outcome = self._fetch_tail(part, [(p, t) for p, t in leaves if part.covers(p)])
            else:
                outcome = self._fetch_partition(part, probe=self._needs_probe(part, expected))
            if isinstance(outcome, _Split):
                stack.extend((child, 1, None) for child in reversed(part.split()))
                continue
            if isinstance(outcome, _Unstable):
                if attempt == 1:
                    logger.info("%s: %s (%s); fetching it once more", self.spec.key, outcome.what, part)
                    stack.append((part, 2, None))
                else:
                    # the first is the cause: a tail that could not be read leaves its names in
                    # the count of every tail above it, which then fails too
                    unstable = unstable or outcome.what
                continue
            leaves.append((part, outcome.total))
            for start in range(0, len(outcome.rows), CONVERT_BATCH_ROWS):
                yield self._to_arrow(outcome.rows[start:start + CONVERT_BATCH_ROWS])
        if stats.rows_loaded == 0:
            # An empty snapshot still declares the table, so queries and models find it.
            yield self._to_arrow([])
        self._rows.finish()
        stats.partitions = len(leaves)
        stats.expected_total = sum(total for _, total in leaves)
        if len(leaves) > 1:
            stats.partition_plan = plan_json(leaves)
        if unstable is not None:
            stats.status = STATUS_INCOMPLETE
            stats.error = f"{unstable}, on both attempts: fetch again later"
        elif len(leaves) > 1 and not self._partitions_cover(leaves):
            stats.status = STATUS_INCOMPLETE
            stats.error = ("partitions of a result over the depth cap do not add up to its total "
                           "(the index changed while it was paged, or names outside the prefixes tried)")
        elif (self.spec.kind == "full" and stats.expected_total == 0 and self.spec.previous_rows):
            stats.status = STATUS_SUSPECT_EMPTY
            stats.error = (f"empty, while the previous complete snapshot had {self.spec.previous_rows} rows "
                           "(retried once): check the target in Serpstat, then rerun with --force")
        else:
            stats.status = STATUS_COMPLETE
        stats.finished_at = dt.datetime.now(dt.UTC)

    # --- partitions ----------------------------------------------------------------------
    def _planned(self) -> list[tuple[Partition, int, int | None]]:
        """Where to start: the previous snapshot's leaves when it was over the depth cap (its root
        page would be paid for and thrown away), else the whole result. A plan is trusted even when
        the previous total seems to fit: Serpstat's window may be narrower than DEPTH_CAP (learned
        from a refused page, never stored), and a root read would then pay for rows up to it again
        every run."""
        leaves = reusable_plan(self.spec.partition_plan)
        if leaves:
            return [(part, 1, total) for part, total in leaves]
        return [(Partition(), 1, self.spec.previous_total)]

    def _needs_probe(self, part: Partition, expected: int | None) -> bool:
        """A 1-row count first, unless the size is known to be well inside the depth cap: then
        page 1 is surely not thrown away. A first pull's size is unknown, and a full page 1 of a
        result over the cap would be paid for and discarded (1,000 credits at the default size)
        to save the 1 credit the count costs."""
        return expected is None or expected > self.depth_cap // 2

    def _fetch_partition(self, part: Partition, probe: bool) -> _Verified | _Split | _Unstable:
        """One attempt at a partition: its rows if every page agreed, else why not."""
        size = self.spec.page_size
        try:
            first = self._page(part, 1, 1 if probe else size)
            total = first.total
            if self.spec.kind == "full" and total == 0 and part == Partition() and self.spec.previous_rows:
                # An empty full snapshot after a non-empty one is more often a glitch than a fact.
                first = self._page(part, 1, size)
                total = first.total
            if not self._fits(total, size):
                return _Split(f"{total} rows")
            pages = math.ceil(total / size)
            if probe and total > 0:
                if not self.budget.fits(read_cost(total, size)):  # known from the count: 1 credit, not a page
                    raise _budget_error(read_cost(total, size), self.budget)
                first = self._page(part, 1, size)
                if first.total != total:
                    return _moved(total, first.total)
            if pages == 0:
                return _Verified(0, [])
            still = read_cost(total, size) - first.count  # the rows after page 1 and every seam
            if not self.budget.fits(still):
                raise _budget_error(still, self.budget)
            return self._read_pages(part, first, total, pages, size)
        except _DepthCapped as capped:
            self._learn_depth_cap(capped, part)
            return _Split("Serpstat's depth cap")

    def _learn_depth_cap(self, capped: _DepthCapped, part: Partition) -> bool:
        """Serpstat's window is narrower than assumed: the page it refused starts at it. Whether
        that narrowed the cap (a refused first page teaches nothing)."""
        if not 0 < capped.offset < self.depth_cap:
            return False
        self.depth_cap = capped.offset
        logger.info("%s: depth cap is %d rows (%s)", self.spec.key, self.depth_cap, part)
        return True

    def _fetch_tail(self, part: Partition, read: list[tuple[Partition, int]]) -> _Verified | _Split | _Unstable:
        """The names of a partition its one-character extensions (`read`: their leaves, read
        earlier) did not reach: the tail.

        Sorted by code point they are its last names, read in descending order down to the first
        name an extension reaches. But Serpstat matches `startsWith` regardless of case, and
        sorted byte by byte the names under `b` fall into blocks by case: `B…` below every `b…`,
        each block with its own tail names at its top. So the tail is read from both ends: the
        top of the highest block, then the bottom of the lowest, where a block's tail names are
        its lowest only when the block has no other names. Every tail name counted must be found:
        one in a block in between (or under another block's names) leaves the partition
        unstable, and the snapshot incomplete, never short.

        The count (a fresh total less the extensions' rows) is only where to start at each end:
        the extensions were read earlier, and a donor deleted from one since makes it one too
        small. So one row more is read, and more (see _tail_end) until a name that is not the
        tail's shows the end. And when a name at either end sorts elsewhere than its extension's
        names, churn could make the count short by exactly a name hidden in between: then the
        extensions are counted again, twice (1 credit each), the tail is read again between the
        rounds, and the tail is only taken if both rounds agree, the second reading finds the
        same names, they and it add up, and the partition's own count is unchanged before,
        between and after them.
        """
        own = (part.prefix or "").lower()
        reachable = tuple(own + c for c in PREFIX_ALPHABET)
        scope = f"prefix {part.prefix!r}" if part.prefix else "the whole result"

        def in_tail(row: Any) -> bool:
            name = str(_name(row)).lower()
            return not (own and name == own) and not name.startswith(reachable)

        def plain(row: Any) -> bool:
            """Sorts where a name of its extensions is expected to: the prefix as written, then
            an ASCII character (or nothing). A name of another case (`BA-x.com` under `b`) sorts
            in a block of its own, and a non-ASCII letter that lowercases into the alphabet
            (`İzmir.com`, Kelvin's `K`) among the tail names: either can hide tail names."""
            name = _name(row)
            return (isinstance(name, str) and name.startswith(own)
                    and (len(name) == len(own) or name[len(own)].isascii()))

        def donor(row: Any) -> str:
            """What makes two rows one donor: its name, whatever its metrics did between two reads
            (a rank that changed between the ends' reads must not count one donor twice)."""
            return repr(_name(row))

        def both_ends(whole: int, rest: int) -> tuple[list[Any], Any, Any] | _Unstable:
            """The tail names read from the top and from the bottom, and the first other name at
            each end (None where there is none)."""
            top = self._tail_end(part, whole, rest, in_tail)
            if isinstance(top, _Unstable):
                return top
            top_rows, highest = top
            bottom_rows: list[Any] = []
            lowest = None
            if len(top_rows) < whole:
                # the same filter, in ascending order: the partition's lowest names
                bottom = self._tail_end(Partition(part.ranks, part.prefix), whole, max(rest - len(top_rows), 0),
                                        in_tail)
                if isinstance(bottom, _Unstable):
                    return bottom
                bottom_rows, lowest = bottom
            seen = {donor(row) for row in top_rows}
            return top_rows + [row for row in bottom_rows if donor(row) not in seen], highest, lowest

        reached = sum(total for _, total in read)
        try:
            whole = self._page(part, 1, 1).total
            rest = whole - reached
            if rest < 0:
                return _Unstable(f"the result changed while it was paged ({part} lost rows)")
            if whole == 0:
                return _Verified(0, [])
            ends = both_ends(whole, rest)
            if isinstance(ends, _Unstable):
                return ends
            tail, highest, lowest = ends
            if len(tail) < rest:
                return _Unstable(f"{rest - len(tail)} of the {rest} names under {scope} that no extension reaches "
                                 "sort at neither end of it (names of several cases?)")
            # an end read as far as the window reaches without leaving the tail: its boundary is
            # unseen, and tail names beyond it unread (a deletion elsewhere can make the count match)
            unseen_end = len(tail) < whole and (highest is None or lowest is None)
            if unseen_end or any(edge is not None and not plain(edge) for edge in (highest, lowest)):
                # A block of other names at an end: one in between could hide tail names that churn
                # balances in the count. Only counts taken as if at one instant show none is
                # hidden: the extensions counted in two rounds that agree, the tail read again
                # between them and found the same, the whole unchanged before, between and after.
                # (One round without the second reading can be fooled by an arrival in an extension
                # and a departure from one already recounted, or from the tail.)
                split = Partition(part.ranks, part.prefix).split()
                recounted = [child for child in split if not child.tail and any(
                    child == leaf or (not child.exact and child.covers(leaf)) for leaf, total in read if total)]
                first = [self._page(child, 1, 1).total for child in recounted]
                between = self._page(part, 1, 1).total
                reread = both_ends(whole, len(tail))
                if isinstance(reread, _Unstable):
                    return reread
                again = [self._page(child, 1, 1).total for child in recounted]
                after = self._page(part, 1, 1).total
                same_tail = sorted(map(donor, reread[0])) == sorted(map(donor, tail))
                if (first != again or between != whole or after != whole or not same_tail
                        or sum(again) + len(tail) != whole):
                    return _Unstable(f"the names under {scope} that no extension reaches do not add up "
                                     f"({whole} in all, then {between}, then {after}; {sum(first)} under its "
                                     f"extensions, then {sum(again)}; {len(tail)} found, then "
                                     f"{len(reread[0])}{'' if same_tail else ' others'})")
        except _DepthCapped:
            return _Unstable(f"Serpstat refused the names of {part} beyond its extensions as beyond its depth cap")
        return _Verified(len(tail), tail)

    def _tail_end(self, reading: Partition, whole: int, expected: int,
                  in_tail: Callable[[Any], bool]) -> tuple[list[Any], Any] | _Unstable:
        """`reading`'s first rows in its order while they are tail names, and the first row after
        them (None if there is none within reach). `expected` of them are looked for, one row more
        read in checked pages, sized so that they pay for fewer rows past it than there are pages;
        if all are tail names (the count was stale), twice as many are read again, checked the
        same way, as far as the depth cap lets: rows read one at a time could skip one that
        shifted between two requests."""
        def reach() -> int:  # the most rows this end can reach: whole pages within the depth cap
            return max(self.spec.page_size, self.depth_cap // self.spec.page_size * self.spec.page_size)

        want = min(expected + 1, whole, reach())
        while True:
            pages = math.ceil(want / self.spec.page_size)
            size = math.ceil(want / pages)
            try:
                first = self._page(reading, 1, size)
                if first.total != whole:
                    return _moved(whole, first.total)
                read = self._read_pages(reading, first, whole, pages, size)
            except _DepthCapped as capped:
                if not self._learn_depth_cap(capped, reading):
                    raise
                want = min(want, reach())  # a pull from a plan had not learned the window yet
                continue
            if isinstance(read, _Unstable):
                return read
            rows = read.rows[:want]
            boundary = next((i for i, row in enumerate(rows) if not in_tail(row)), None)
            if boundary is not None:
                return rows[:boundary], rows[boundary]
            if want >= min(whole, reach()):
                return rows, None  # every row, or all this end can reach
            want = min(2 * want + 1, whole, reach())

    def _read_pages(self, part: Partition, first: RefDomainsPage, total: int, pages: int,
                    size: int) -> _Verified | _Unstable:
        """Pages 2.. of an attempt, checked as they come, and the seams between them probed."""
        short = _short_page(first, 1, total, size)
        if short:
            return _Unstable(short)
        rows = list(first.rows)
        edges = [(_name(first.rows[0]), _name(first.rows[-1]))]
        probes: list[tuple[int, Any, Any]] = []  # (offset, expected name, future or page)
        try:
            for number, page in zip(range(2, pages + 1), self._pages(part, range(2, pages + 1), size, total),
                                    strict=False):
                if page.total != total:
                    return _moved(total, page.total)
                short = _short_page(page, number, total, size)
                if short:
                    return _Unstable(short)
                rows.extend(page.rows)
                edges.append((_name(page.rows[0]), _name(page.rows[-1])))
                # The seam before this page: the rows either side must still be where both pages
                # saw them. Asked once both pages are in (whichever Serpstat served first), so a
                # row that slid over the seam between the two requests is caught.
                seam = (number - 1) * size
                probes.append((seam - 1, edges[-2][1], self._probe(part, seam - 1)))
                probes.append((seam, edges[-1][0], self._probe(part, seam)))
            for offset, expected, pending in probes:
                found = pending.result() if isinstance(pending, Future) else pending
                if found.total != total:
                    return _moved(total, found.total)
                if not found.rows or _name(found.rows[0]) != expected:
                    return _Unstable("the result changed while it was paged "
                                         f"(rows shifted across the end of page {offset // size + 1})")
        finally:
            settle([pending for _, _, pending in probes if isinstance(pending, Future)])
        return _Verified(total, rows)

    def _probe(self, part: Partition, offset: int) -> Future | RefDomainsPage:
        """The single row at `offset` (a 1-row page), in the background when pages are."""
        if self.executor is None:
            return self._page(part, offset + 1, 1)
        return self.executor.submit(self._page, part, offset + 1, 1)

    def _fits(self, total: int, size: int) -> bool:
        """Every page of `total` rows lies inside the depth cap, page x size <= cap (page 1 always
        does). The stricter reading of Serpstat's rule: a last page refused because it ends past
        the cap would cost every row read before it, read again after the split."""
        return total <= size or math.ceil(total / size) * size <= self.depth_cap

    def _pages(self, part: Partition, numbers: range, size: int, total: int) -> Iterator[RefDomainsPage]:
        """Pages in order, fetched concurrently within a bounded window (the rate limiter paces them)."""
        page = partial(self._page, part, size=size, total=total)
        if self.executor is None or len(numbers) <= 1:
            return map(page, numbers)
        return in_order(self.executor, page, numbers, self.window)

    def _page(self, part: Partition, number: int, size: int, total: int | None = None) -> RefDomainsPage:
        # The most it can cost: a page, or what is left of a known total on its last page. A
        # whole page held for a last page of one row refused a seam probe of a budget that
        # had room for the read, after every row was paid for.
        most = size if total is None else max(1, min(size, total - (number - 1) * size))
        self.budget.reserve(most)
        charged = 0
        try:
            page = self.client.get_ref_domains(
                self.spec.target.domain, self.spec.target.search_type, page=number, size=size,
                sort=SORT, order="desc" if part.tail else ORDER, complex_filter=self._filter(part))
            charged = page.charge
        except DepthCapError:
            raise _DepthCapped((number - 1) * size) from None
        except SerpstatError as error:
            charged = error.charge  # a page billed and then found unusable is still paid for
            raise
        finally:
            self.budget.settle(most, charged)
            with self._lock:
                self.stats.requests += 1
                self.stats.credits_spent += charged
        with self._lock:
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


@dataclass(frozen=True)
class _Verified:
    """A partition read consistently: its total and its raw rows, in order."""

    total: int
    rows: list[Any]


@dataclass(frozen=True)
class _Split:
    """Too deep for Serpstat's window: fetch the partition's halves instead."""

    why: str


@dataclass(frozen=True)
class _Unstable:
    """The partition changed (or came back short) while it was paged: `what` says how."""

    what: str


class _DepthCapped(Exception):
    """Serpstat refused a page as beyond its depth cap; `offset` is where that page starts."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"depth cap at offset {offset}")
        self.offset = offset


def _moved(before: int, after: int) -> _Unstable:
    return _Unstable(f"the result changed while it was paged (its total moved from {before} to {after})")


def _name(row: Any) -> Any:
    return row.get("domain_from") if isinstance(row, dict) else row


def _short_page(page: RefDomainsPage, number: int, total: int, size: int) -> str | None:
    """Why a page holds fewer (or more) rows than its total says it must, if it does."""
    expected = min(size, total - (number - 1) * size)
    if page.count == expected:
        return None
    return (f"Serpstat returned a short page {number} ({page.count} of {expected} rows) while its "
            f"total said {total}") if page.count < expected else (
            f"Serpstat returned page {number} with {page.count} rows where its total of {total} allows {expected}")


def _budget_error(needed: int, budget: Budget) -> BudgetExhausted:
    return BudgetExhausted(f"needs {needed} more credits, {budget.left} left in this run's budget")
