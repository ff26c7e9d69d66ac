"""Cutting a result deeper than Serpstat's sortable window into partitions by name, and the
partition plan the ledger keeps so the next pull of a snapshot starts from its leaves.

A partition is a complexFilter slice of the result: `domain_from startsWith` a prefix, extended
one character of PREFIX_ALPHABET at a time; the names no extension reaches (the prefix's tail)
and the name equal to the prefix itself are partitions of their own. Their union is the result.

A pull from a plan reads the leaves the previous pull found empty or small together, as one
`Group`: complexFilter groups are OR'd, one per member, so a run of leaves that would each cost a
request (an empty one too: Serpstat charges it a credit) costs one. Its rows are told apart by
name afterwards, so each member keeps its own total in the next plan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from .errors import DepthCapError

PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_."
MAX_PREFIX = 16  # deeper than any sane set of names that share a start
# Members of one group: a split has 41 children at most (39 characters, the name itself, the
# tail), so one group can hold every small child of a split, and the filter stays a few KB.
MAX_GROUP_MEMBERS = 40


@dataclass(frozen=True)
class Partition:
    """A slice of the result: domain_rank within `ranks`, domain_from starting with `prefix`."""

    ranks: tuple[int, int] | None = None
    prefix: str | None = None
    # The rows of `prefix` that none of its one-character extensions from PREFIX_ALPHABET reaches
    # (a non-ASCII letter next: CJK, Cyrillic, ...). They sort after every ASCII name, so they are
    # its first rows in descending order: fetched that way, as many as the extensions missed.
    tail: bool = False
    # The one name equal to `prefix` itself (a donor `a` beside `aa.com` ... when `a` is split):
    # no extension reaches it, and it sorts last in descending order, past the tail's boundary.
    exact: bool = False

    def conditions(self) -> list[dict]:
        conds: list[dict] = []
        if self.ranks is not None:
            conds.append({"field": "domain_rank", "compareType": "between", "value": list(self.ranks)})
        if self.prefix is not None:
            compare = "eq" if self.exact else "startsWith"
            conds.append({"field": "domain_from", "compareType": compare, "value": [self.prefix]})
        return conds

    def split(self) -> list[Partition]:
        """By name, never by a metric: a donor's domain_rank can change between the reads of two
        rank partitions (two donors crossing a boundary in opposite directions would leave every
        count in place and one donor on neither side); its name cannot."""
        if self.tail or self.exact or len(self.prefix or "") >= MAX_PREFIX:
            raise DepthCapError(f"Serpstat refuses even the first page of {self} as beyond its depth cap: "
                                "this result cannot be split further; report it to Serpstat support")
        children = [Partition(self.ranks, (self.prefix or "") + c) for c in PREFIX_ALPHABET]
        exact = [Partition(self.ranks, self.prefix, exact=True)] if self.prefix else []
        return [*children, *exact, Partition(self.ranks, self.prefix, tail=True)]

    def children(self) -> list[tuple[Partition, int | None]]:
        """What to read in its place, with sizes where known: its split, sizes unknown."""
        return [(child, None) for child in self.split()]

    def alternatives(self) -> list[list[dict]]:
        """The complexFilter conditions of the partition, one list per OR'd alternative."""
        return [self.conditions()]

    def matches(self, text: str) -> bool:
        """Whether this leaf's filter takes the name `text`: Serpstat compares names regardless of
        case. Not for a tail, whose names are those no sibling takes."""
        own, low = (self.prefix or "").lower(), text.lower()
        return low == own if self.exact else low.startswith(own)

    def covers(self, other: Partition | Group) -> bool:
        """`other` lies inside this partition, split from it (its tail excluded); a group does when
        any of its members does."""
        if isinstance(other, Group):
            return any(self.covers(member) for member in other.members)
        mine = self.prefix or ""
        return (other.ranks == self.ranks and other.prefix is not None
                and (len(other.prefix) > len(mine) or other.exact) and other.prefix.startswith(mine))

    def as_json(self, total: int) -> dict:
        item = {"ranks": list(self.ranks) if self.ranks else None, "prefix": self.prefix, "total": total}
        if self.tail:
            item["tail"] = True
        if self.exact:
            item["exact"] = True
        return item

    @classmethod
    def from_json(cls, item: dict) -> tuple[Partition, int | None]:
        ranks = item.get("ranks")
        return (cls(tuple(ranks) if ranks else None, item.get("prefix"), bool(item.get("tail")),
                    bool(item.get("exact"))), item.get("total"))

    def __str__(self) -> str:
        parts = []
        if self.ranks:
            parts.append(f"rank {self.ranks[0]}-{self.ranks[1]}")
        if self.prefix is not None:
            parts.append(f"prefix {self.prefix!r}")
        if self.tail:
            parts.append("names no prefix reaches")
        if self.exact:
            parts.append("that name itself")
        return ", ".join(parts) or "all"


@dataclass(frozen=True)
class Group:
    """Leaves of a plan read as one partition: the OR of their filters."""

    members: tuple[Partition, ...]
    # each member's rows when last read, if known: read alone again, a small one needs no count
    sizes: tuple[int | None, ...] = ()
    tail: ClassVar[bool] = False
    ranks: ClassVar[None] = None

    def alternatives(self) -> list[list[dict]]:
        return [member.conditions() for member in self.members]

    def children(self) -> list[tuple[Partition, int | None]]:
        """Its members, to read one by one (its rows could not be told apart by name, or it grew
        past the window), with their sizes when last read where known."""
        sizes = self.sizes or (None,) * len(self.members)
        return list(zip(self.members, sizes, strict=True))

    def covers(self, other: Partition | Group) -> bool:
        return False

    def owner(self, text: str) -> Partition | None:
        """The member whose filter takes the name `text`, if one does."""
        return next((member for member in self.members if member.matches(text)), None)

    def __str__(self) -> str:
        return f"{len(self.members)} small partitions read together ({', '.join(map(str, self.members))})"


Slice = Partition | Group


def grouped(leaves: list[tuple[Partition, int | None]], rows: int) -> list[tuple[Slice, int | None]]:
    """The plan's leaves with those of at most `rows` rows each gathered into groups of at most
    `rows` rows in all, so a group's read is one request when their sizes hold. A group takes the
    place of its first member: every tail that covers a member is still read after it. A leaf
    alone stays itself; tails and leaves of unknown size are never grouped."""
    slots: list[tuple[Slice, int | None] | list[tuple[Partition, int]]] = []
    current: list[tuple[Partition, int]] | None = None
    for part, total in leaves:
        if part.tail or total is None or total > rows:
            slots.append((part, total))
            continue
        if current is None or sum(t for _, t in current) + total > rows or len(current) >= MAX_GROUP_MEMBERS:
            current = []
            slots.append(current)
        current.append((part, total))
    planned: list[tuple[Slice, int | None]] = []
    for slot in slots:
        if isinstance(slot, tuple):
            planned.append(slot)
        elif len(slot) == 1:
            planned.append(slot[0])
        else:
            planned.append((Group(tuple(part for part, _ in slot), tuple(total for _, total in slot)),
                            sum(total for _, total in slot)))
    return planned


def plan_json(leaves: list[tuple[Partition, int]]) -> str:
    """The leaves a partitioned snapshot was read in, with their sizes: its `partition_plan`."""
    return json.dumps([part.as_json(total) for part, total in leaves])


def reusable_plan(plan: str | None) -> list[tuple[Partition, int | None]]:
    """The leaves of a stored `partition_plan` a new pull may start from; none if it has to start
    from the whole result."""
    if not plan:
        return []
    try:
        leaves = [Partition.from_json(item) for item in json.loads(plan)]
    except (ValueError, TypeError, AttributeError):
        return []  # unreadable: start from the whole result
    if any(part.ranks for part, _ in leaves):
        # plans cut by rank are not reused: a donor whose rank moves
        # mid-pull can fall between two rank ranges; start again from the whole result
        return []
    return leaves
