"""Fetching ahead: the next snapshot in the background while dlt loads the current one. The rate
limiter, not this, paces the requests."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

import pyarrow as pa

from .budget import Budget, may_fetch_together
from .paging import SnapshotFetcher
from .spec import FetchStats, SnapshotSpec

P = TypeVar("P")  # what a run plans to fetch (planning.PlannedSnapshot)


class Prefetcher:
    """Runs a fetcher in a background thread, up to `max_tables` converted batches (of up to
    paging.CONVERT_BATCH_ROWS rows) ahead of its consumer.

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
        except BaseException as error:  # handed to the consumer, raised there
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


# Snapshots fetched ahead of the one being loaded, each at most Prefetcher.max_tables batches ahead.
PREFETCH_SNAPSHOTS = 1


def look_ahead(todo: Sequence[P], estimates: Sequence[int | None], budget: Budget, start: Callable[[P], Prefetcher],
               stopped: Callable[[], bool]) -> Generator[tuple[P, Prefetcher | None], None, None]:
    """Each planned snapshot with its fetch, begun when its turn comes or earlier, as the
    look-ahead of the snapshot before it: while dlt loads one snapshot, the next ones' requests go
    out, so a rate-limited plan keeps using its whole rate. `estimates` are their likely credits
    (None: unknown).

    The fetch is None when none was begun: the budget cannot cover the snapshot, or the run has
    `stopped()`. Once stopped nothing new begins and the look-aheads are cancelled at once (no
    more paid requests), but still handed out with what they fetched and cost.
    """
    ahead: dict[int, Prefetcher] = {}
    try:
        for index, planned in enumerate(todo):
            fetch = ahead.pop(index, None)
            cost = estimates[index]
            if fetch is None and not stopped() and (cost is None or budget.fits(cost)):
                fetch = start(planned)
            if fetch is not None and not stopped():
                for later in range(index + 1, min(index + 1 + PREFETCH_SNAPSHOTS, len(todo))):
                    if later not in ahead and may_fetch_together(budget, cost, estimates[later]):
                        ahead[later] = start(todo[later])
            yield planned, fetch
            if stopped():
                for waiting in ahead.values():
                    waiting.cancel()
    finally:
        for waiting in ahead.values():
            waiting.cancel()
