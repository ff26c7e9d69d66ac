"""A run's credit budget: max_credits_per_run and the account balance, shared by every snapshot and
thread of the run (README: Configuration, `max_credits_per_run`)."""

from __future__ import annotations

import threading


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

