"""A run's credit budget: max_credits_per_run and the account balance, shared by every snapshot and
thread of the run (docs/operations.md, "Credits")."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable

from .client import SerpstatClient
from .constants import DEPTH_CAP
from .errors import (
    AuthenticationError,
    BudgetExhausted,
    ConfigError,
    CreditsExhaustedError,
    SerpstatError,
    ServiceUnavailable,
    TransientError,
)
from .windows import MIN_WINDOW, plan_cost, plan_windows

logger = logging.getLogger(__name__)


def read_cost(rows: int, page_size: int) -> int:
    """Credits of reading `rows` (known from a count) in proven windows of up to `page_size` rows:
    the rows, the rows the windows share (windows.py), 1 for an empty result. A result past the
    depth cap is read in partitions: about a row more per page, and their counts."""
    if rows == 0:
        return 1
    if rows > DEPTH_CAP:
        return rows + 2 * math.ceil(rows / page_size)
    window = max(page_size, MIN_WINDOW)
    return plan_cost(plan_windows(rows, window, first=(1, min(window, rows))), rows)[1]


class Budget:
    """Credits a run may still spend, shared by all its snapshots and threads.

    Each request reserves the most it can cost (its page size) and is then charged what it was billed.
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

    def charge(self, reserved: int, charged: int) -> None:
        """A request that reserved `reserved` credits was billed `charged`."""
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



def account_balance(client: SerpstatClient) -> int | None:
    """The account balance from the free getStats, asked before anything is fetched or written;
    ConfigError when a run cannot start at all (token refused, no credits left)."""
    try:
        stats = client.get_stats()
    except AuthenticationError as error:
        raise ConfigError(str(error)) from None
    except CreditsExhaustedError as error:
        raise ConfigError(f"nothing fetched: {error}") from None
    except TransientError as error:
        raise ServiceUnavailable(f"could not reach Serpstat for the credit preflight ({error}): nothing was "
                               "fetched; run again later") from None
    except SerpstatError as error:
        raise ConfigError(f"Serpstat refused the credit preflight ({error}): check api_url") from None
    if stats.left_lines is not None and stats.left_lines <= 0:
        raise ConfigError("Serpstat API credits are exhausted (0 left): wait for the next billing period "
                          "or buy credits")
    return stats.left_lines


def run_budget(max_credits_per_run: int | None, balance: int | None, estimates: Iterable[int | None]) -> Budget:
    """The run's credit budget: max_credits_per_run or the account's balance, whichever is lower.

    A balance below what the due snapshots are estimated to cost is worth a warning up front:
    the snapshots that do not fit end skipped_budget."""
    limits = [x for x in (max_credits_per_run, balance) if x is not None]
    known = [estimate for estimate in estimates if estimate is not None]
    if balance is not None and sum(known) > balance:
        logger.warning("Serpstat balance %d is below the estimated need of %d credits: snapshots that do "
                       "not fit are skipped_budget", balance, sum(known))
    return Budget(min(limits) if limits else None)


def may_fetch_together(budget: Budget, current: int | None, following: int | None) -> bool:
    """Fetch a snapshot ahead of its turn only when the budget surely holds it and the current one:
    a snapshot started and then skipped for budget would waste what it had fetched. Unknown sizes
    count as a full 60,000-row window."""
    if budget.limit is None:
        return True
    need = (current if current is not None else DEPTH_CAP) + (following if following is not None else DEPTH_CAP)
    return budget.fits(need)
