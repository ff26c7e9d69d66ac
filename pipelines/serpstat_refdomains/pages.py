"""Reading a run of pages and proving it whole: every request through the run's budget and the
client, counted in the snapshot's figures; the pages of one read in overlapping windows
(windows.py), fetched concurrently, and accepted only when every answer reports the same total,
holds all its rows and agrees with its neighbours on the rows they share.

What a read returns says what happened: `Verified` (its rows, in order), `Unstable` (the result
changed under it, or came back short: read again or give up), `Split` (too deep for Serpstat's
window: read it in partitions). A page Serpstat refuses as past its depth cap raises
`DepthCapped`, carrying where that page starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

from .budget import Budget
from .client import RefDomainsPage, SerpstatClient
from .concurrency import in_order
from .errors import DepthCapError, RefdomainsError, SerpstatError
from .partitions import Slice
from .spec import FetchStats, SnapshotSpec
from .windows import MIN_WINDOW, Window, merge_pages, plan_windows, seam_holds, window_rows

# A stable sort, so the partition of the list into pages does not depend on ties.
SORT, ORDER = "domain_from", "asc"


@dataclass(frozen=True)
class Verified:
    """A read proven consistent: the result's total and the raw rows read, in order. A tail's read
    also says what its parent counted, every answer of it agreeing (`parent_total`)."""

    total: int
    rows: list[Any]
    parent_total: int | None = None


@dataclass(frozen=True)
class Split:
    """Too deep for Serpstat's window: read the partition's children instead."""

    why: str


@dataclass(frozen=True)
class Unstable:
    """The result changed (or came back short) while it was read: `what` says how."""

    what: str


class DepthCapped(RefdomainsError):
    """Serpstat refused a page as beyond its depth cap; `offset` is where that page starts. A
    signal to the partition walker (paging.py), which splits the result there."""

    def __init__(self, offset: int) -> None:
        super().__init__(f"depth cap at offset {offset}")
        self.offset = offset


def name(row: Any) -> Any:
    return row.get("domain_from") if isinstance(row, dict) else row


def moved(before: int, after: int) -> Unstable:
    return Unstable(f"the result changed while it was paged (its total moved from {before} to {after})")


class PageReader:
    """Reads pages of one snapshot (its target and kind, under the user's filter, within a
    partition), each request reserved in the run's `budget` and counted in the fetch's `stats`."""

    def __init__(self, client: SerpstatClient, spec: SnapshotSpec, budget: Budget, stats: FetchStats,
                 depth_cap: int, executor: ThreadPoolExecutor | None = None, window: int = 8,
                 on_request: Callable[[], None] | None = None) -> None:
        self.client = client
        self.query, self.search_type = spec.target.domain, spec.target.search_type
        self.page_size = spec.page_size
        self.user_filter, self.last_week = spec.user_filter, spec.kind == "last_week"
        self.budget, self.stats = budget, stats
        self.depth_cap = depth_cap
        self.executor, self.window = executor, window
        self.on_request = on_request

    @property
    def window_size(self) -> int:
        """The largest window: page_size, but never fewer than the rows every seam needs, nor past
        the depth cap."""
        return min(max(self.page_size, MIN_WINDOW), self.depth_cap)

    # --- one request -----------------------------------------------------------------------
    def page(self, part: Slice, number: int, size: int, total: int | None = None) -> RefDomainsPage:
        """Page `number` of `size` rows of `part` (a tail partition in descending order: its names
        sort last). It reserves the most it can cost (a page, or what is left of a known total on
        its last page) and is charged what Serpstat billed."""
        most = size if total is None else max(1, min(size, total - (number - 1) * size))
        self.budget.reserve(most)
        charged = 0
        try:
            page = self.client.get_ref_domains(self.query, self.search_type, page=number, size=size, sort=SORT,
                                               order="desc" if part.tail else ORDER,
                                               complex_filter=self.complex_filter(part))
            charged = page.charge
        except DepthCapError:
            raise DepthCapped((number - 1) * size) from None
        except SerpstatError as error:
            charged = error.charge  # a page billed and then found unusable is still paid for
            raise
        finally:
            self.budget.charge(most, charged)
            with self.stats.lock:
                self.stats.requests += 1
                self.stats.credits_spent += charged
        with self.stats.lock:
            # the account balance as the client keeps it (the lowest left_lines seen)
            self.stats.credits_left = self.client.last_left_lines
        if self.on_request is not None:
            self.on_request()
        return page

    def count(self, part: Slice) -> int:
        """The partition's size now: a 1-row page (1 credit)."""
        return self.page(part, 1, 1).total

    def complex_filter(self, part: Slice) -> list | None:
        """The user's filter AND the partition's: complexFilter is an OR of AND groups, so each of
        the user's groups is repeated for each of the partition's alternatives."""
        quick = [{"additional_filters": "last_week"}] if self.last_week else []
        groups = self.user_filter or [[]]
        combined = [list(group) + conditions + quick for group in groups for conditions in part.alternatives()]
        return combined if any(combined) else None

    # --- a proven read -----------------------------------------------------------------------
    def plan(self, total: int, first: Window | None = None, want: int | None = None) -> list[Window]:
        """The windows of a read of the first `want` rows (default: all `total`), within the depth
        cap; NoOverlapPlan where none exists."""
        return plan_windows(total if want is None else min(want, total), self.window_size, self.depth_cap,
                            first=first, paid_to=total)

    def read(self, part: Slice, total: int, plan: list[Window],
             first: RefDomainsPage | None = None) -> Verified | Unstable:
        """The rows `plan` covers, or why they cannot be trusted. `first` is the answer to plan[0]
        when it was fetched already. DepthCapped if Serpstat refuses a window."""
        pages: list[RefDomainsPage] = []
        fetch = partial(self._window, part, total)
        rest = plan[1:] if first is not None else plan
        answers = ([first] if first is not None else []) + list(self._fetched(fetch, rest))
        for window, page in zip(plan, answers, strict=True):
            problem = self._check(window, page, total)
            if problem is not None:
                return problem
            if pages and not seam_holds(plan[len(pages) - 1], [name(r) for r in pages[-1].rows],
                                        window, [name(r) for r in page.rows]):
                return Unstable("the result changed while it was paged (rows shifted across the start of "
                                f"rows {window_rows(window)[0]}-{window_rows(window)[1] - 1})")
            pages.append(page)
        return Verified(total, merge_pages(plan, [p.rows for p in pages]))

    def _window(self, part: Slice, total: int, window: Window) -> RefDomainsPage:
        page, size = window
        return self.page(part, page, size, total=total)

    def _fetched(self, fetch: Callable[[Window], RefDomainsPage], windows: list[Window]) -> Iterator[RefDomainsPage]:
        """The answers in plan order, fetched concurrently within a bounded window (the rate
        limiter paces them); a generator closed early (a failed check) cancels what has not started."""
        if self.executor is None or len(windows) <= 1:
            return map(fetch, windows)
        return in_order(self.executor, fetch, windows, self.window)

    @staticmethod
    def _check(window: Window, page: RefDomainsPage, total: int) -> Unstable | None:
        """Why an answer cannot be part of a read of `total` rows: another total, or too few or too
        many rows for its window."""
        if page.total != total:
            return moved(total, page.total)
        start, end = window_rows(window)
        expected = max(0, min(end, total) - start)
        if page.count == expected:
            return None
        if page.count < expected:
            return Unstable(f"Serpstat returned a short page (rows {start}-{end - 1}: {page.count} of {expected}) "
                            f"while its total said {total}")
        return Unstable(f"Serpstat returned {page.count} rows for rows {start}-{end - 1} where its total of {total} "
                        f"allows {expected}")
