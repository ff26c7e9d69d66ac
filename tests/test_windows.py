"""Overlapping windows (windows.py): the plans, their cost, and the seam proof against a list that
changes between answers that come back in any order.

The proof is tested on a list of its own (sorted unique names, numbers here), attacked between
any two answers: names inserted and deleted anywhere, same-count delete+insert pairs, rows slid
across a seam and back, bursts. Whenever every answer reports the plan's total and every seam
holds, the merged read must hold every name present at all answers and no name absent at all of
them, in order, once; and a row that slid across a seam between its two answers must fail it.
The emulator-level churn tests (test_churn.py) attack the same proof through real HTTP.
"""

from __future__ import annotations

import itertools
import math
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serpstat_refdomains.windows import (
    MIN_WINDOW,
    REQUEST_COST,
    NoOverlapPlan,
    merge_pages,
    plan_cost,
    plan_windows,
    seam_holds,
    window_rows,
)

# `make chaos` raises both: every total, and many more attacks
SEAM_EXAMPLES = int(os.environ.get("SEAM_EXAMPLES", "1500"))
TOTAL_STEP = int(os.environ.get("WINDOWS_TOTAL_STEP", "13"))


def assert_well_formed(plan: list, total: int, max_size: int, depth_cap: int = 60_000, first=None) -> None:
    if total == 0:
        assert plan == ([first] if first else [])
        return
    assert plan[0][0] == 1 and (first is None or plan[0] == first)
    end = 0
    for i, window in enumerate(plan):
        start, stop = window_rows(window)
        assert 1 <= window[1] <= max_size and stop <= depth_cap and start < total, (i, window)
        if i:
            assert start < end < stop, f"window {i} {window} does not overlap the one before and go on"
        end = stop
    assert end >= total and all(window_rows(w)[1] < total for w in plan[:-1])


def brute_cost(total: int, max_size: int, first_size: int) -> int | None:
    """REQUEST_COST * requests + credits of the cheapest plan, trying every addressable window."""
    best = [math.inf] * (total + 1)
    best[min(first_size, total)] = REQUEST_COST + min(first_size, total)
    for end in range(1, total):
        if best[end] == math.inf:
            continue
        for size in range(1, max_size + 1):
            start = size * ((end - 1) // size)
            stop = start + size
            if stop > end:
                reach = min(stop, total)
                best[reach] = min(best[reach], best[end] + REQUEST_COST + reach - start)
    return None if best[total] == math.inf else int(best[total])


@pytest.mark.parametrize("max_size", [2, 3, 5, 8, 13, 16])
def test_plans_are_the_cheapest_on_small_lists(max_size):
    for total in range(1, 120):
        cheapest = brute_cost(total, max_size, max_size)
        try:
            plan = plan_windows(total, max_size, first=(1, max_size))
        except NoOverlapPlan:
            assert cheapest is None, f"no plan found for {total} rows where one exists"
            continue
        assert cheapest is not None, f"a plan for {total} rows where none can exist"
        assert_well_formed(plan, total, max_size, first=(1, max_size))
        requests, credits = plan_cost(plan, total)
        assert REQUEST_COST * requests + credits == cheapest, (total, plan)


def test_every_total_up_to_the_depth_cap_meets_the_request_and_credit_bars():
    """Pages of 1,000: at most ceil(total/1000) * 1.1 + 2 requests and 0.6% more credits than
    rows, for every total a read can have (with page 1 of 1,000 first, as a read asks it); every
    13th one here, all of them in `make chaos`."""
    worst = 0.0
    for total in sorted({*range(1, 60_001, TOTAL_STEP), *range(59_000, 60_001), 1001, 2001, 20_001}):
        plan = plan_windows(total, 1000, first=(1, min(1000, total)))
        requests, credits = plan_cost(plan, total)
        assert requests <= math.ceil(total / 1000) * 1.1 + 2, (total, requests)
        assert credits <= total * 1.006, (total, credits)
        worst = max(worst, credits / total - 1)
    assert worst < 0.006


def test_long_plans_are_well_formed_under_any_cap_and_for_a_read_of_first_rows():
    rng = random.Random(7)
    for max_size in (1000, 500, 100, MIN_WINDOW):
        for total in [*rng.sample(range(1, 60_001), 60), 59_999, 60_000]:
            assert_well_formed(plan_windows(total, max_size, first=(1, max_size)), total, max_size,
                               first=(1, max_size))
    for cap in (552, 3000, 17_000):  # a cap learned from a refused page
        for total in rng.sample(range(1, cap + 1), 30):
            assert_well_formed(plan_windows(total, 100, cap, first=(1, 100)), total, 100, cap, first=(1, 100))
    # a read of the first 250 rows of 5,000 pays its last window only up to where it stops
    plan = plan_windows(250, 100, paid_to=5_000)
    assert window_rows(plan[-1])[1] <= 250 + 100 and window_rows(plan[-1])[0] < 250


def test_a_size_below_the_minimum_window_cannot_prove_every_seam():
    """At an offset every size up to S divides, no window of at most S rows holds both rows
    either side: 2520 for S = 10. The reader never plans below MIN_WINDOW rows."""
    with pytest.raises(NoOverlapPlan):
        plan_windows(2_600, 10, first=(1, 10))
    assert plan_windows(2_600, MIN_WINDOW, first=(1, MIN_WINDOW))


# --- the proof under attack ----------------------------------------------------------------------
class Index:
    """The server's list: sorted unique names; answers a window with its rows and the total."""

    def __init__(self, names: list[float]) -> None:
        self.names = list(names)

    def answer(self, window) -> tuple[list[float], int]:
        start, stop = window_rows(window)
        return self.names[start:stop], len(self.names)

    def insert_at(self, gap: int) -> None:
        names = self.names
        gap = min(gap, len(names))
        low = names[gap - 1] if gap > 0 else (names[0] - 2.0 if names else 0.0)
        high = names[gap] if gap < len(names) else (names[-1] + 2.0 if names else 2.0)
        names.insert(gap, (low + high) / 2)

    def delete_at(self, index: int) -> None:
        if self.names:
            del self.names[min(index, len(self.names) - 1)]


def attack(index: Index, rng: random.Random, seams: list[int], initial: list[float]) -> None:
    """Changes between two answers, aimed at the seams as often as anywhere."""
    if rng.random() < 0.35:
        return
    for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 6)):
        kind = rng.choices(["replace", "slide", "insert", "delete", "revert"], [40, 30, 10, 10, 10])[0]
        n = len(index.names)
        seam = min(rng.choice(seams or [0]) + rng.randint(-2, 2), n) if rng.random() < 0.6 else rng.randint(0, n)
        seam = max(seam, 0)
        if kind == "revert":
            index.names = list(initial)
        elif kind == "insert" or n == 0:
            index.insert_at(seam)
        elif kind == "delete":
            index.delete_at(seam)
        elif kind == "replace":  # same count: one name leaves, another arrives elsewhere
            index.delete_at(seam)
            index.insert_at(rng.randint(0, len(index.names)))
        else:  # slide: same count, the rows between the two changes move by one across the seam
            left, right = rng.randint(max(0, seam - 3), seam), rng.randint(seam, min(n, seam + 3))
            if rng.random() < 0.5:
                index.insert_at(right)
                index.delete_at(left)
            else:
                index.delete_at(right)
                index.insert_at(left)


def slid(before: tuple, after: tuple, edges: tuple[int, int]) -> bool:
    """A name present at both answers sits on different sides of an edge of the shared stretch."""
    at = {name: i for i, name in enumerate(after)}
    return any(j is not None and (i < edge) != (j < edge)
               for i, name in enumerate(before) for j in [at.get(name)] for edge in edges)


@settings(max_examples=SEAM_EXAMPLES, deadline=None, derandomize=True, database=None)
@given(total=st.integers(1, 40), max_size=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_a_read_whose_seams_hold_holds_every_name_present_throughout(total, max_size, seed):
    rng = random.Random(seed)
    try:
        plan = plan_windows(total, max_size, first=(1, max_size))
    except NoOverlapPlan:
        return  # a size this small cannot prove every seam: the reader never plans below MIN_WINDOW
    initial = [float(i) for i in range(total)]
    index = Index(initial)
    seams = [window_rows(w)[0] for w in plan[1:]]
    order = list(range(len(plan)))
    rng.shuffle(order)  # concurrent requests: answered in any order
    pages: list = [None] * len(plan)
    totals: list = [None] * len(plan)
    seen: list = [None] * len(plan)  # the list when each window was answered
    for i in order:
        attack(index, rng, seams, initial)
        pages[i], totals[i] = index.answer(plan[i])
        seen[i] = tuple(index.names)
    for i in range(1, len(plan)):
        holds = seam_holds(plan[i - 1], pages[i - 1], plan[i], pages[i])
        edges = (window_rows(plan[i])[0], window_rows(plan[i - 1])[1])
        assert not (holds and slid(seen[i - 1], seen[i], edges)), "a row slid across a seam unseen"
    accepted = all(t == total for t in totals) and all(
        len(p) == min(window_rows(w)[1], total) - window_rows(w)[0] for w, p in zip(plan, pages, strict=True)) and all(
        seam_holds(plan[i - 1], pages[i - 1], plan[i], pages[i]) for i in range(1, len(plan)))
    if not accepted:
        return
    merged = merge_pages(plan, pages)
    throughout, ever = set(seen[0]).intersection(*seen[1:]), set().union(*seen)
    assert throughout <= set(merged), f"missed {sorted(throughout - set(merged))[:3]}"
    assert set(merged) <= ever, "read a name that was never there"
    assert all(a < b for a, b in itertools.pairwise(merged)), "a name twice, or out of order"
