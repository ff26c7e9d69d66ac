"""Overlapping page windows: a sorted list that may change while it is read, read with a proof at
every seam and no request spent on the proof (docs/design.md, "Fetching a snapshot").

Serpstat serves a result sorted by name; a request (page p, size s) returns the rows at offsets
[(p-1)*s, p*s) and costs a credit per row. Rows may come and go between two requests, and
concurrent requests are answered in any order. Consecutive windows here overlap: each starts at
or before the last row of the one before. When every shared offset holds the same name in both
answers, the two answers agree on where that stretch sits, so (names being unique and sorted)
the last shared row R cuts the name space: every name below R that existed when the earlier
window was answered was read by it or before, every name above R that existed when the later
one was answered was read by it or after. No row slid over the seam unseen, whatever happened
elsewhere and in whatever order the answers came. The overlap costs a credit per shared row.

A window is addressable only at a multiple of its size, so consecutive windows need sizes that
fit their offsets (page 1 of 1000, page 2 of 994, page 3 of 993, ...): `plan_windows` finds the
cheapest chain, weighing a request at REQUEST_COST credits (at the rate limit a request is a
second of the user's wait). This module is pure: no I/O.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Sequence
from functools import lru_cache

from .constants import DEPTH_CAP
from .errors import RefdomainsError

Window = tuple[int, int]  # (page, size): rows [(page-1)*size, page*size)

# A request is weighed at this many credits: for pages of up to 1000 rows and every result up to
# the depth cap, plans then take at most ceil(total/1000)*1.1 + 2 requests and at most 0.6% more
# credits than rows; asking for the fewest requests alone can cost 1.2% (awkward sizes).
REQUEST_COST = 20
# The smallest window size that can prove every seam below the depth cap: a seam at an offset
# that every size up to S divides (a multiple of lcm(1..S): 60 for S = 5, 2520 for 10, 27720 for
# 12) has no addressable window holding both rows either side of it.
MIN_WINDOW = 16


class NoOverlapPlan(RefdomainsError):
    """No addressable window of the allowed sizes overlaps the rows read so far and reaches
    further (or the depth cap leaves no room): the result must be read in smaller partitions."""


def window_rows(window: Window) -> tuple[int, int]:
    """The offsets [start, end) a (page, size) request addresses (end may pass the list's end)."""
    page, size = window
    return (page - 1) * size, page * size


def plan_cost(plan: Sequence[Window], total: int) -> tuple[int, int]:
    """(requests, credits) of a plan on a list of `total` rows; an answer costs its rows, at least 1."""
    credits = 0
    for window in plan:
        start, end = window_rows(window)
        credits += max(1, min(end, total) - start)
    return len(plan), credits


def plan_windows(total: int, max_size: int, depth_cap: int = DEPTH_CAP, first: Window | None = None,
                 paid_to: int | None = None) -> list[Window]:
    """Windows covering offsets [0, total), each holding the last row of the one before.

    Returns (page, size) pairs in reading order: page 1 first, the last reaching `total`; every
    later window starts at or before the last row of the window before it and ends after it; none
    starts at or past `total` (no paid empty page); sizes are at most `max_size`; page * size is
    at most `depth_cap`. Among such plans it minimizes REQUEST_COST * requests + credits.

    `first` is page 1 already fetched (the request that told the total): the plan starts with it.
    `paid_to`, when the list is longer than the `total` rows wanted (a read of its first rows),
    is its length: the last window is paid up to there.

    Raises NoOverlapPlan where no plan exists. The first call for a set of parameters builds a
    table of the cheapest way to reach every offset (tens of milliseconds up to 60,000 rows,
    once per process); later calls take well under a millisecond.
    """
    if total < 0 or max_size < 1 or not 0 < depth_cap < _MASK:
        raise ValueError(f"bad arguments: total={total} max_size={max_size} depth_cap={depth_cap}")
    if total > depth_cap:
        raise NoOverlapPlan(f"{total} rows cannot all be addressed under a depth cap of {depth_cap}")
    paid_to = max(paid_to or total, total)
    max_size = min(max_size, depth_cap)
    if first is not None:
        page, size = first
        if page != 1 or not 1 <= size <= max_size:
            raise ValueError(f"the first window must be page 1 of 1..{max_size} rows, not {first}")
        if size >= total:
            return [first]
    elif total == 0:
        return []
    elif total <= max_size:
        return [(1, total)]
    return _ladder(max_size, depth_cap, first[1] if first else 0).plan(total, first, paid_to)


@lru_cache(maxsize=16)
def _ladder(max_size: int, depth_cap: int, first_size: int) -> _Ladder:
    """One table per planning parameters: it does not depend on the total."""
    return _Ladder(max_size, depth_cap, first_size)


class _Ladder:
    """The cheapest way to have read exactly offsets [0, e), for every e, built left to right.

    cost[e] = REQUEST_COST * windows + credits of the best chain of windows whose last one ends
    at e. Only the final window depends on the total (it is paid up to the list's end), so one
    table serves every total and a plan is a short walk back through it.

    A window (start a, size s, s dividing a) can follow a chain ending at e when a < e < a + s:
        cost[a + s] = REQUEST_COST + s + min(cost[e] for e in (a, a + s)).
    Ends are visited in increasing order keeping a stack of the ends no later end has beaten
    (positions and costs both increasing): the minimum over (a, b) is the cost of the first stack
    entry past a, found by bisection. Windows in the middle of a plan are at least half of
    `max_size` once that passes 16: a smaller one loses more rows per request than its cheaper
    overlap wins back (an exhaustive search finds plans at most a couple of credits cheaper).
    """

    def __init__(self, max_size: int, depth_cap: int, first_size: int) -> None:
        self.max_size, self.depth_cap = max_size, depth_cap
        self.min_size = 2 if max_size <= MIN_WINDOW else max_size // 2
        self.cost = [_INFINITE] * (depth_cap + 1)
        self.back = [0] * (depth_cap + 1)  # (previous end << _BITS) | size of the window ending here
        self.ends: list[int] = []  # the stack: positions, increasing
        self.costs: list[int] = []  # and their costs, increasing
        sizes = range(1, max_size + 1) if first_size == 0 else [first_size]
        for size in sizes:  # the first window: page 1, of any size unless it is given
            self.cost[size] = REQUEST_COST + size
            self.back[size] = _FIRST
            self._push(size, REQUEST_COST + size)
        self.done = sizes[-1]  # ends up to here are final
        self.lock = threading.Lock()

    def _push(self, end: int, cost: int) -> None:
        while self.costs and self.costs[-1] >= cost:
            self.ends.pop()
            self.costs.pop()
        self.ends.append(end)
        self.costs.append(cost)

    def extend(self, upto: int) -> None:
        """Make cost[e] final for every e <= upto."""
        with self.lock:
            if upto <= self.done:
                return
            low = self.done + 1
            keys: list[int] = []  # (end << _BITS) | size for every window ending in [low, upto]
            for size in range(self.min_size, self.max_size + 1):
                first_end = -(-low // size) * size
                keys.extend(range((first_end << _BITS) | size, (upto << _BITS) + size + 1, size << _BITS))
            keys.sort()
            ends, costs, cost, back = self.ends, self.costs, self.cost, self.back
            current, best, via = -1, _INFINITE, 0
            for key in [*keys, _INFINITE << _BITS]:  # the sentinel flushes the last end
                end, size = key >> _BITS, key & _MASK
                if end != current:
                    if best < _INFINITE:  # every window ending at `current` has been tried
                        best += REQUEST_COST
                        cost[current], back[current] = best, via
                        self._push(current, best)
                    current, best = end, _INFINITE
                j = bisect_left(ends, end - size + 1)  # the first end inside (start, end)
                if j < len(ends) and costs[j] + size < best:
                    best, via = costs[j] + size, (ends[j] << _BITS) | size
            self.done = upto

    def plan(self, total: int, first: Window | None, paid_to: int) -> list[Window]:
        """The cheapest plan for `total` rows: the best final window, then the back-pointers."""
        self.extend(total - 1)
        cost, max_size = self.cost, self.max_size
        # The final window of size s starts at a = s * ((total - 1) // s) >= total - s, so only
        # ends x > total - max_size can precede it: suffix[x - low] = the cheapest end in [x, total).
        low = max(1, total - max_size + 1)
        suffix: list[tuple[int, int]] = [(_INFINITE, 0)] * (total - low + 1)
        best = (_INFINITE, 0)
        for end in range(total - 1, low - 1, -1):
            if cost[end] < best[0]:
                best = (cost[end], end)
            suffix[end - low] = best
        choice = (_INFINITE, 0, 0)  # (cost, previous end, final window size)
        for size in range(max_size, 0, -1):
            start = size * ((total - 1) // size)
            if start + size > self.depth_cap or start + 1 >= total:
                continue
            before, end = suffix[start + 1 - low]
            paid = before + REQUEST_COST + min(start + size, paid_to) - start
            if paid < choice[0]:
                choice = (paid, end, size)
        if choice[0] >= _INFINITE:
            raise NoOverlapPlan(f"no window of at most {max_size} rows overlaps the rows read and reaches "
                                f"{total} under a depth cap of {self.depth_cap}")
        _, end, size = choice
        plan = [(end // size + 1, size)]  # the final window: the one of this size holding row end - 1
        while self.back[end] != _FIRST:
            previous, size = self.back[end] >> _BITS, self.back[end] & _MASK
            plan.append((end // size, size))
            end = previous
        plan.append(first if first is not None else (1, end))
        plan.reverse()
        return plan


_INFINITE = 1 << 62
_FIRST = -1
_BITS = 20  # (end << _BITS) | size packs a window into one int: sizes and ends stay below 2**20
_MASK = (1 << _BITS) - 1


def seam_holds(earlier: Window, earlier_names: Sequence[object], later: Window, later_names: Sequence[object]) -> bool:
    """Whether every offset the two windows share holds the same name in both answers (a short
    answer fails): then no row present at both answers crossed either edge of the shared
    stretch, and its last row cuts the name space between the two windows."""
    earlier_start, earlier_end = window_rows(earlier)
    start, _ = window_rows(later)
    width = earlier_end - start
    before = earlier_names[start - earlier_start:start - earlier_start + width]
    return 0 < width == len(before) and list(before) == list(later_names[:width])


def merge_pages(plan: Sequence[Window], pages: Sequence[Sequence[object]]) -> list[object]:
    """The rows of checked answers in list order, each shared row once (by offset)."""
    rows: list[object] = []
    covered = 0  # offsets [0, covered) are in rows
    for window, names in zip(plan, pages, strict=True):
        start, _ = window_rows(window)
        if start > covered:
            raise ValueError(f"window {window} leaves offsets {covered}..{start - 1} unread")
        rows.extend(names[covered - start:])
        covered = max(covered, start + len(names))
    return rows
