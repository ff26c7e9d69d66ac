"""Fetching one snapshot: its partitions walked, each read proven (pages.py), rows to Arrow.

This is where the pipeline earns or wastes the user's money (docs/design.md, "Fetching a snapshot" and "Credits"):
- a result is read in overlapping windows, never a page past its end; the overlaps prove that
  no row slid between two requests, at no extra request (windows.py);
- a result deeper than Serpstat's sortable window (page x size <= 60,000) is split by name into
  complexFilter partitions (`domain_from startsWith` a-z0-9-_., the name equal to the prefix, and
  the names none of them reaches: tail.py), each counted with a 1-row page unless the ledger's
  previous pull knows its size; their union is the snapshot;
- a partition that changed while it was read is read again, alone, up to PARTITION_ATTEMPTS
  times; when the partitions no longer add up to the whole, the ones whose count moved are read
  again, not the whole result. A snapshot is complete only when every read was proven and the
  partitions add up to one count of the whole. Only a proven read is converted and loaded.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from .budget import Budget, BudgetExhausted
from .client import SerpstatClient
from .constants import DEPTH_CAP, PULLED_AT, STATUS_COMPLETE, STATUS_INCOMPLETE, STATUS_SUSPECT_EMPTY
from .contract import SNAPSHOT_KEY
from .pages import DepthCapped, PageReader, Split, Unstable, Verified, name
from .partitions import MAX_GROUP_MEMBERS, Group, Partition, Slice, grouped, plan_json, reusable_plan
from .rows import SnapshotRows
from .spec import FetchStats, SnapshotSpec
from .tail import TailReader
from .windows import NoOverlapPlan, plan_cost

logger = logging.getLogger(__name__)

# Pages are converted to Arrow ten thousand rows at a time: per call, the columnar conversion and
# dlt's extract have fixed costs, and each hands the GIL to the page threads.
CONVERT_BATCH_ROWS = 10_000
# Reads of one partition before the snapshot gives it up: churn is usually brief, and each read
# again costs that partition only.
PARTITION_ATTEMPTS = 3
# Rounds of counting the partitions again when they no longer add up to the whole.
COVER_ROUNDS = 2
# A plan's leaves of up to this share of a window are read together (partitions.grouped).
GROUP_SHARE = (3, 4)

Outcome = Verified | Split | Unstable


class SnapshotFetcher:
    """Streams one snapshot as Arrow tables and fills `stats` as it goes.

    Nothing holds the snapshot: a partition's rows are held until proven (at most a depth cap of
    raw rows, a few MB), then converted and handed on; only the set of names already yielded is
    kept, so a donor that repeats (or is read again) is one row.
    """

    def __init__(self, client: SerpstatClient, spec: SnapshotSpec, budget: Budget | None = None,
                 depth_cap: int = DEPTH_CAP, executor: ThreadPoolExecutor | None = None, window: int = 8,
                 progress: Callable[[SnapshotFetcher], None] | None = None) -> None:
        self.spec = spec
        self.budget = budget or Budget(None)
        self.stats = FetchStats()
        self.reader = PageReader(client, spec, self.budget, self.stats, depth_cap, executor, window,
                                 on_request=(lambda: progress(self)) if progress is not None else None)
        self._rows = SnapshotRows({SNAPSHOT_KEY: spec.key, "target_domain": spec.target.domain,
                                   "search_type": spec.target.search_type, "snapshot_date": spec.snapshot_date,
                                   "snapshot_kind": spec.kind, PULLED_AT: self.stats.started_at},
                                  self._reject, self._null)

    @property
    def depth_cap(self) -> int:
        return self.reader.depth_cap

    # --- the snapshot --------------------------------------------------------------------------
    def tables(self) -> Generator[pa.Table, None, None]:
        """Arrow tables of the snapshot's rows; `stats.status` is final when this is exhausted."""
        stats = self.stats
        unstable: str | None = None
        leaves: dict[Partition, int] = {}  # read partitions and their rows when read, in reading order
        given_up: list[Slice] = []
        # (partition, attempt, its rows last time if known)
        stack: list[tuple[Slice, int, int | None]] = list(reversed(self._planned()))
        # the whole result's size, when the last partition read was its tail: every answer of
        # that read reported it, after every other partition was read
        counted_last: int | None = None
        while stack:
            part, attempt, expected = stack.pop()
            counted_last = None
            if part.tail and any(part.covers(other) for other in given_up):
                # its count is the parent's less the leaves read: the rows of a leaf given up
                # would count as its own, and every read of it would fail, paid from both ends
                logger.info("%s: %s not read: a partition beside it was given up", self.spec.key, part)
                continue
            outcome = self._fetch(part, expected, leaves)
            if isinstance(outcome, Split):
                stack.extend((child, 1, size) for child, size in reversed(part.children()))
            elif isinstance(outcome, Unstable):
                if attempt < PARTITION_ATTEMPTS:
                    logger.info("%s: %s (%s); reading it again", self.spec.key, outcome.what, part)
                    stack.append((part, attempt + 1, None))
                    if isinstance(part, Partition) and part.tail:
                        # its names are counted as its parent's less the leaves read beside it: a leaf
                        # that changed since it was read fails every read of the tail until read again
                        stack.extend((leaf, 1, leaves[leaf]) for leaf in reversed(self._moved_beside(part, leaves)))
                else:
                    # the first is the cause: a tail that could not be read leaves its names in
                    # the count of every tail above it, which then fails too
                    unstable = unstable or outcome.what
                    given_up.append(part)
            elif isinstance(part, Group):
                members = self._told_apart(part, outcome.rows)
                if members is None:
                    logger.info("%s: %s: a name no member's filter takes; reading them one by one", self.spec.key, part)
                    stack.extend((member, 1, size) for member, size in reversed(part.children()))
                    continue
                leaves.update(members)
                yield from self._convert(outcome.rows)
            else:
                leaves[part] = outcome.total
                if part.tail and part.prefix is None and part.ranks is None:
                    counted_last = outcome.parent_total
                yield from self._convert(outcome.rows)
        if unstable is None and len(leaves) > 1:
            uncovered = yield from self._cover(leaves, counted_last)
            if uncovered:
                unstable = uncovered
        if stats.rows_loaded == 0:
            yield self._convert_one([])  # an empty snapshot still declares the table, so models find it
        self._rows.finish()
        self._finish(leaves, unstable)

    def _finish(self, leaves: dict[Partition, int], unstable: str | None) -> None:
        stats = self.stats
        stats.partitions = len(leaves)
        stats.expected_total = sum(leaves.values())
        if len(leaves) > 1:
            stats.partition_plan = plan_json(list(leaves.items()))
        if unstable is not None:
            stats.status = STATUS_INCOMPLETE
            stats.error = f"{unstable}, on every attempt: fetch again later"
        elif self.spec.kind == "full" and stats.expected_total == 0 and self.spec.previous_rows:
            stats.status = STATUS_SUSPECT_EMPTY
            stats.error = (f"empty, while the previous complete snapshot had {self.spec.previous_rows} rows "
                           "(retried once): check the target in Serpstat, then rerun with --force")
        else:
            stats.status = STATUS_COMPLETE
        stats.finished_at = dt.datetime.now(dt.UTC)

    # --- partitions ------------------------------------------------------------------------------
    def _planned(self) -> list[tuple[Slice, int, int | None]]:
        """Where to start: the previous snapshot's leaves when it was over the depth cap (its root
        page would be paid for and thrown away), else the whole result. A plan is trusted even when
        the previous total seems to fit: Serpstat's window may be narrower than DEPTH_CAP (learned
        from a refused page, never stored), and a root read would then pay for rows up to it again.
        Its small leaves are read in groups of up to GROUP_SHARE of a window: each alone would
        cost a request (an empty one a credit too), and a group one, with room for some growth."""
        leaves = reusable_plan(self.spec.partition_plan)
        if leaves:
            rows = self.reader.window_size * GROUP_SHARE[0] // GROUP_SHARE[1]
            return [(part, 1, total) for part, total in grouped(leaves, rows)]
        return [(Partition(), 1, self.spec.previous_total)]

    @staticmethod
    def _told_apart(group: Group, rows: list[Any]) -> dict[Partition, int] | None:
        """Each member's rows in a group's read, by name; None if a name matches no member (then
        Serpstat's matching is not ours, and the members are read alone)."""
        members = dict.fromkeys(group.members, 0)
        for row in rows:
            text = name(row)
            owner = group.owner(text) if isinstance(text, str) else None
            if owner is None:
                return None
            members[owner] += 1
        return members

    def _moved_beside(self, tail: Partition, leaves: dict[Partition, int]) -> list[Partition]:
        """The leaves read under `tail`'s parent whose size changed since. (The tails of nested
        prefixes are not among them: their count is their own parent's.)"""
        beside = [leaf for leaf in leaves if not leaf.tail and tail.covers(leaf)]
        return [leaf for start in range(0, len(beside), MAX_GROUP_MEMBERS)
                for leaf in self._moved_among(beside[start:start + MAX_GROUP_MEMBERS], leaves)]

    def _moved_among(self, chunk: list[Partition], leaves: dict[Partition, int]) -> list[Partition]:
        """Those of `chunk` whose count moved: counted together (1 credit, an OR of their filters),
        then halved where the count moved, so one leaf that changed among 40 costs about 11
        counts, not 41."""
        together: Slice = chunk[0] if len(chunk) == 1 else Group(tuple(chunk))
        if self.reader.count(together) == sum(leaves[leaf] for leaf in chunk):
            return []
        if len(chunk) == 1:
            return chunk
        half = len(chunk) // 2
        return self._moved_among(chunk[:half], leaves) + self._moved_among(chunk[half:], leaves)

    def _fetch(self, part: Slice, expected: int | None, leaves: dict[Partition, int]) -> Outcome:
        if isinstance(part, Partition) and part.tail:
            read = [(leaf, total) for leaf, total in leaves.items() if part.covers(leaf)]
            return TailReader(self.reader, part, read, self._learn_depth_cap).fetch()
        return self._fetch_partition(part, probe=self._needs_probe(expected))

    def _needs_probe(self, expected: int | None) -> bool:
        """A 1-row count first, unless the size is known to be well inside the depth cap: then
        page 1 is surely not thrown away. A first pull's size is unknown, and a full page 1 of a
        result over the cap would be paid for and discarded to save the 1 credit the count costs."""
        return expected is None or expected > self.depth_cap // 2

    def _fetch_partition(self, part: Slice, probe: bool) -> Outcome:
        """One read of a partition: its rows if every window agreed, else why not."""
        reader, size = self.reader, self.reader.window_size
        try:
            first = reader.page(part, 1, 1 if probe else size)
            if self.spec.kind == "full" and first.total == 0 and part == Partition() and self.spec.previous_rows:
                # an empty full snapshot after a non-empty one is more often a glitch than a fact
                first = reader.page(part, 1, size)
            total = first.total
            if total == 0:
                return Verified(0, [])
            try:
                plan = reader.plan(total, first=(1, size))
            except NoOverlapPlan:
                return Split(f"{total} rows")
            cost = plan_cost(plan if probe else plan[1:], total)[1]
            if not self.budget.fits(cost):  # known before any page of it is paid for
                raise BudgetExhausted(f"needs {cost} more credits, {self.budget.left} left in this run's budget")
            return reader.read(part, total, plan, first=None if probe else first)
        except DepthCapped as capped:
            self._learn_depth_cap(capped, part)
            return Split("Serpstat's depth cap")

    def _learn_depth_cap(self, capped: DepthCapped, part: Slice) -> bool:
        """Serpstat's window is narrower than assumed: the page it refused starts at it. Whether
        that narrowed the cap (a refused first page teaches nothing)."""
        if not 0 < capped.offset < self.reader.depth_cap:
            return False
        self.reader.depth_cap = capped.offset
        logger.info("%s: depth cap is %d rows (%s)", self.spec.key, capped.offset, part)
        return True

    def _cover(self, leaves: dict[Partition, int], counted: int | None) -> Generator[pa.Table, None, str | None]:
        """The partitions add up to one count of the whole result, or are made to: when they do
        not, each one is counted again (1 credit each) and those whose count moved are read again,
        alone; their new names join the snapshot (a donor gone since was present when read).
        `counted` is the whole's size as the last read reported it, after every other partition:
        that is the first count, not a request of its own. Returns why they do not add up, if so."""
        for round_ in range(COVER_ROUNDS + 1):
            whole = counted if round_ == 0 and counted is not None else self.reader.count(Partition())
            if whole == sum(leaves.values()):
                return None
            moved_parts = [part for part in leaves if not part.tail and self.reader.count(part) != leaves[part]]
            if any(part.tail for part in leaves) and not moved_parts:
                break  # only a tail can explain it: its names are read from both ends, not recounted
            for part in moved_parts:
                outcome = self._fetch_partition(part, probe=True)
                if not isinstance(outcome, Verified):
                    return f"{part} changed again while it was read"
                leaves[part] = outcome.total
                yield from self._convert(outcome.rows)
        return ("partitions of a result over the depth cap do not add up to its total (the index kept "
                "changing while it was paged, or names outside the prefixes tried)")

    # --- rows ------------------------------------------------------------------------------------
    def _convert(self, rows: list[Any]) -> Generator[pa.Table, None, None]:
        for start in range(0, len(rows), CONVERT_BATCH_ROWS):
            yield self._convert_one(rows[start:start + CONVERT_BATCH_ROWS])

    def _convert_one(self, rows: list[Any]) -> pa.Table:
        table = self._rows.table(rows)
        with self.stats.lock:
            self.stats.rows_loaded += table.num_rows
        return table

    def _reject(self, reason: str) -> None:
        with self.stats.lock:
            self.stats.rows_rejected += 1
            self.stats.reject_reasons[reason[:80]] += 1

    def _null(self, metric: str, value: str) -> None:
        with self.stats.lock:
            self.stats.metrics_nulled += 1
            self.stats.nulled_values[f"{metric} {value}"] += 1
