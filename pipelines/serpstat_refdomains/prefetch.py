"""Fetching ahead: the pages of a partition within a bounded window, and the next snapshot in the
background while dlt loads the current one. The rate limiter, not these, paces the requests."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

if TYPE_CHECKING:  # annotations only: paging imports this module
    from .paging import FetchStats, SnapshotFetcher, SnapshotSpec

T = TypeVar("T")
R = TypeVar("R")


def in_order(executor: Executor, call: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    """`call` of each item, yielded in order, with at most `window` calls submitted at once.

    Closing the generator early (a failed check) cancels what has not started."""
    pending: list[Future] = []
    todo = iter(items)
    try:
        for item in todo:
            pending.append(executor.submit(call, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.pop(0).result()
            following = next(todo, None)
            if following is not None:
                pending.append(executor.submit(call, following))
            yield result
    finally:
        settle(pending)


def settle(futures: list[Future]) -> None:
    """Cancel what has not started; wait for the rest, whose failure no longer matters."""
    for future in futures:
        future.cancel()
    for future in futures:
        if not future.cancelled():
            with contextlib.suppress(Exception):
                future.result()  # an abandoned request: its failure is moot


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

