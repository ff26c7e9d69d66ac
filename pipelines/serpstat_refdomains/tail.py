"""The tail of a split partition: the names under a prefix that none of its one-character
extensions reaches (a non-ASCII letter next, or another case), read from both ends of the
partition and proven whole (docs/design.md, "Partitions over the depth cap").

Sorted by code point the tail names are the partition's last, so they are read in descending
order down to the first name an extension reaches. But Serpstat matches `startsWith` regardless
of case, and sorted byte by byte the names under `b` fall into blocks by case: `B...` below every
`b...`, each block with its own tail names at its top. So the tail is read from both ends: the top
of the highest block, then the bottom of the lowest, where a block's tail names are its lowest
only when the block has no other names. Every tail name counted must be found: one in a block in
between (or under another block's names) leaves the partition unstable, and the snapshot
incomplete, never short.

The count (a fresh total less the extensions' rows) is only where to start at each end: the
extensions were read earlier, and a donor deleted from one since makes it one too small. So one
row more is read, and more, until a name that is not the tail's shows the end. When a name at
either end sorts elsewhere than its extensions' names, churn could make the count short by
exactly a name hidden in between: then the extensions are counted twice (1 credit each), the tail
is read again between the rounds, and it is taken only if both rounds agree, the second reading
finds the same names, they and it add up, and the partition's own count is unchanged before,
between and after them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .pages import DepthCapped, PageReader, Unstable, Verified, name
from .partitions import PREFIX_ALPHABET, Partition
from .windows import NoOverlapPlan

logger = logging.getLogger(__name__)


class TailReader:
    """Reads the tail of `part`, whose extensions' leaves (`read`: partition and rows) were read
    before. `learn_depth_cap(capped, part)` narrows the reader's depth cap from a refused page."""

    def __init__(self, reader: PageReader, part: Partition, read: list[tuple[Partition, int]],
                 learn_depth_cap: Callable[[DepthCapped, Partition], bool]) -> None:
        self.reader, self.part, self.read = reader, part, read
        self.learn_depth_cap = learn_depth_cap
        self.own = (part.prefix or "").lower()
        self.reachable = tuple(self.own + c for c in PREFIX_ALPHABET)
        self.scope = f"prefix {part.prefix!r}" if part.prefix else "the whole result"

    # --- names ---------------------------------------------------------------------------
    def in_tail(self, row: Any) -> bool:
        text = str(name(row)).lower()
        return not (self.own and text == self.own) and not text.startswith(self.reachable)

    def plain(self, row: Any) -> bool:
        """Sorts where a name of its extensions is expected to: the prefix as written, then an
        ASCII character (or nothing). A name of another case (`BA-x.com` under `b`) sorts in a
        block of its own, and a non-ASCII letter that lowercases into the alphabet (`İzmir.com`,
        Kelvin's `K`) among the tail names: either can hide tail names."""
        text = name(row)
        return (isinstance(text, str) and text.startswith(self.own)
                and (len(text) == len(self.own) or text[len(self.own)].isascii()))

    @staticmethod
    def donor(row: Any) -> str:
        """What makes two rows one donor: its name, whatever its metrics did between two reads."""
        return repr(name(row))

    # --- the read ------------------------------------------------------------------------
    def fetch(self) -> Verified | Unstable:
        count = self.reader.count
        reached = sum(total for _, total in self.read)
        try:
            whole = count(self.part)
            rest = whole - reached
            if rest < 0:
                return Unstable(f"the result changed while it was paged ({self.part} lost rows)")
            if whole == 0:
                return Verified(0, [], whole)
            ends = self._both_ends(whole, rest)
            if isinstance(ends, Unstable):
                return ends
            tail, highest, lowest = ends
            if len(tail) < rest:
                return Unstable(f"{rest - len(tail)} of the {rest} names under {self.scope} that no extension "
                                "reaches sort at neither end of it (names of several cases?)")
            # an end read as far as the window reaches without leaving the tail: its boundary is
            # unseen, and tail names beyond it unread (a deletion elsewhere can make the count match)
            unseen_end = len(tail) < whole and (highest is None or lowest is None)
            if unseen_end or any(edge is not None and not self.plain(edge) for edge in (highest, lowest)):
                return self._recounted(whole, tail)
        except DepthCapped:
            return Unstable(f"Serpstat refused the names of {self.part} beyond its extensions as beyond its depth cap")
        return Verified(len(tail), tail, whole)

    def _recounted(self, whole: int, tail: list[Any]) -> Verified | Unstable:
        """A block of other names at an end: one in between could hide tail names that churn
        balances in the count. Only counts taken as if at one instant show none is hidden: the
        extensions counted in two rounds that agree, the tail read again between them and found
        the same, the whole unchanged before, between and after. (One round without the second
        reading can be fooled by an arrival in an extension and a departure from one already
        recounted, or from the tail.)"""
        count = self.reader.count
        split = Partition(self.part.ranks, self.part.prefix).split()
        recounted = [child for child in split if not child.tail and any(
            child == leaf or (not child.exact and child.covers(leaf)) for leaf, total in self.read if total)]
        first = [count(child) for child in recounted]
        between = count(self.part)
        reread = self._both_ends(whole, len(tail))
        if isinstance(reread, Unstable):
            return reread
        again = [count(child) for child in recounted]
        after = count(self.part)
        same_tail = sorted(map(self.donor, reread[0])) == sorted(map(self.donor, tail))
        if (first != again or between != whole or after != whole or not same_tail
                or sum(again) + len(tail) != whole):
            return Unstable(f"the names under {self.scope} that no extension reaches do not add up ({whole} in all, "
                            f"then {between}, then {after}; {sum(first)} under its extensions, then {sum(again)}; "
                            f"{len(tail)} found, then {len(reread[0])}{'' if same_tail else ' others'})")
        return Verified(len(tail), tail, whole)

    def _both_ends(self, whole: int, rest: int) -> tuple[list[Any], Any, Any] | Unstable:
        """The tail names read from the top and from the bottom, and the first other name at each
        end (None where there is none)."""
        top = self._end(self.part, whole, rest)
        if isinstance(top, Unstable):
            return top
        top_rows, highest = top
        bottom_rows: list[Any] = []
        lowest = None
        if len(top_rows) < whole:
            # the same filter, in ascending order: the partition's lowest names
            bottom = self._end(Partition(self.part.ranks, self.part.prefix), whole, max(rest - len(top_rows), 0))
            if isinstance(bottom, Unstable):
                return bottom
            bottom_rows, lowest = bottom
        seen = {self.donor(row) for row in top_rows}
        return top_rows + [row for row in bottom_rows if self.donor(row) not in seen], highest, lowest

    def _end(self, reading: Partition, whole: int, expected: int) -> tuple[list[Any], Any] | Unstable:
        """`reading`'s first rows in its order while they are tail names, and the first row after
        them (None if there is none within reach). `expected` of them are looked for, one row more
        read in proven windows; if all are tail names (the count was stale), twice as many are
        read again, as far as the depth cap lets."""
        reader = self.reader
        want = min(expected + 1, whole, reader.depth_cap)
        while True:
            try:
                read = reader.read(reading, whole, reader.plan(whole, want=want))
            except DepthCapped as capped:
                if not self.learn_depth_cap(capped, reading):
                    raise
                want = min(want, reader.depth_cap)  # a pull from a plan had not learned the window yet
                continue
            except NoOverlapPlan as error:
                return Unstable(str(error))
            if isinstance(read, Unstable):
                return read
            rows = read.rows[:want]
            boundary = next((i for i, row in enumerate(rows) if not self.in_tail(row)), None)
            if boundary is not None:
                return rows[:boundary], rows[boundary]
            if want >= min(whole, reader.depth_cap):
                return rows, None  # every row, or all this end can reach
            want = min(2 * want + 1, whole, reader.depth_cap)
