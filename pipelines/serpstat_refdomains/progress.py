"""What a run shows while it fetches: one line per snapshot in flight."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .paging import SnapshotFetcher


class Progress:
    """Per-snapshot progress: a live line on a terminal; otherwise (cron, CI) a plain line every
    `every` seconds, so a scheduler's log shows a long run is alive without flooding it."""

    def __init__(self, stream: TextIO | None = None, every: float = 15.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self._last = 0.0

    def __call__(self, fetcher: SnapshotFetcher) -> None:
        stats = fetcher.stats
        # rows count only once their partition is verified (usually after the last request), so a
        # line in flight shows the requests and credits alone, not "0 rows" beside paid requests
        rows = f"{stats.rows_loaded} of {stats.expected_total} rows verified, " if stats.expected_total else ""
        line = (f"{fetcher.spec.target} {fetcher.spec.kind}: {rows}"
                f"{stats.requests} requests, {stats.credits_spent} credits")
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif now - self._last >= self.every:
            self._last = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()
