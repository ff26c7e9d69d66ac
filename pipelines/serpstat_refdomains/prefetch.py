"""Fetching ahead: the next snapshot in the background while dlt loads the current one. The rate
limiter, not this, paces the requests."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from .paging import FetchStats, SnapshotFetcher, SnapshotSpec


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

