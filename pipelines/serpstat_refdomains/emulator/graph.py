"""A deterministic synthetic link graph: referring domains of any target, day by day.

Every target gets a donor universe generated from (seed, target) alone, so a test, the demo and
the emulator agree on the true set of referring domains for any day without sharing state.
Donors are born, some are lost, some of those return; the set therefore evolves the way a real
backlink index does, and `active_on(day)` is the ground truth the pipeline is checked against.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import threading
from dataclasses import dataclass, field, replace

EPOCH = dt.date(2026, 1, 1)
# Donors are generated from HISTORY_DAYS before EPOCH to HORIZON_DAYS after it; later days see
# no new births (the graph only thins out), which is far beyond any test or demo timeline.
HISTORY_DAYS = 1200
HORIZON_DAYS = 1500
MEAN_LIFETIME_DAYS = 400
RETURN_PROBABILITY = 0.35
MEAN_RETURN_GAP_DAYS = 12

_WORDS = [
    "alpha", "blog", "news", "shop", "travel", "tech", "daily", "review", "guide", "forum",
    "media", "press", "market", "studio", "cloud", "data", "green", "smart", "local", "prime",
]
_UNICODE_WORDS = [("bücher", "de"), ("пример", "рф"), ("café", "fr"), ("münchen", "de"),
                  ("例え", "jp"), ("straße", "at"), ("señal", "es")]
_TLDS = ["com", "net", "org", "io", "co.uk", "de", "com.au", "info", "blogspot.com"]


@dataclass(frozen=True, slots=True)
class Donor:
    """One referring domain of one target, with its whole life on the timeline."""

    name: str  # exactly as the API returns it in `domain_from` (may be Unicode, mixed case, www.)
    rank: int
    ref_pages: int
    born: dt.date
    lost: dt.date | None = None
    returned: dt.date | None = None
    in_domain_only: bool = True  # also links to the bare host (searchType=domain)

    def active_on(self, day: dt.date) -> bool:
        if day < self.born:
            return False
        if self.lost is not None and self.lost <= day:
            return self.returned is not None and self.returned <= day
        return True

    def first_detected(self, day: dt.date) -> dt.date:
        """The `check` date: when the index last (re)discovered the donor."""
        if self.returned is not None and self.returned <= day:
            return self.returned
        return self.born


@dataclass(frozen=True)
class Profile:
    """How a target's donor universe is generated.

    `size` fixes the number of referring domains: exactly that many donors, alive on every day
    and never lost, so a test knows the total and therefore the pages it must see. Without a
    size, the target churns: roughly `base_size` donors alive on any day, with daily gains,
    losses and returns.
    """

    size: int | None = None
    base_size: int | None = None
    rank: int | None = None  # every donor of a sized profile has this domain_rank (one rank value)


@dataclass
class _Overlay:
    """Changes made at run time, between two pages of one query: donors added, removed by name,
    and donors whose metrics changed (by name)."""

    donors: list[Donor] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)
    changed: dict[str, Donor] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """One run-time change of the index, in the order it happened (`LinkGraph.changes`)."""

    kind: str  # insert | remove | metrics
    target: str
    donor: Donor


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _donor_name(rng: random.Random, index: int) -> str:
    style = rng.random()
    word = rng.choice(_WORDS)
    tld = rng.choice(_TLDS)
    if style < 0.08:
        return f"www.{word}{index}.{tld}"
    if style < 0.16:
        mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in f"{word}{index}")
        return f"{mixed}.{tld.upper() if rng.random() < 0.5 else tld}"
    if style < 0.23:
        uword, utld = rng.choice(_UNICODE_WORDS)
        return f"{uword}{index}.{utld}"
    if style < 0.30:
        return f"{rng.choice(['blog', 'news', 'shop', 'm'])}.{word}{index}.{tld}"
    return f"{word}-{index}.{tld}"


def _donor_rank(rng: random.Random) -> int:
    return int(100 * rng.random() ** 2)


def _ref_pages(rng: random.Random) -> int:
    return 1 + int(rng.expovariate(1 / 5))


class LinkGraph:
    """Referring-domain universes of every target, generated on first use and cached."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._profiles: dict[str, Profile] = {}
        self._universes: dict[str, _Universe] = {}
        self._overlays: dict[str, _Overlay] = {}
        self._active: dict[tuple, list[Donor]] = {}
        self._lock = threading.Lock()
        self.version = 0  # bumped on every change, so caches of served result sets expire
        self.changes: list[Change] = []  # run-time changes, so a test can replay every state

    # --- configuration -------------------------------------------------------------------
    def set_profile(self, target: str, profile: Profile | int) -> None:
        if isinstance(profile, int):
            profile = Profile(size=profile)
        key = target.lower()
        with self._lock:
            self._profiles[key] = profile
            self._universes.pop(key, None)
            self.version += 1

    def insert_donors(self, target: str, count: int, day: dt.date) -> list[Donor]:
        """Add `count` fresh donors to a target, first detected on `day` (a live index update)."""
        key = target.lower()
        with self._lock:
            overlay = self._overlays.setdefault(key, _Overlay())
            start = len(overlay.donors)
            rng = _rng(self.seed, key, "inserted", start)
            added = [
                Donor(name=f"inserted-{start + i}-{rng.randrange(10**6)}.example.net",
                      rank=_donor_rank(rng), ref_pages=_ref_pages(rng), born=day)
                for i in range(count)
            ]
            self._add(key, overlay, added)
        return added

    def add_named(self, target: str, names: list[str], day: dt.date, rank: int = 10) -> list[Donor]:
        """Add donors with chosen names (a name equal to another's prefix, an odd first letter)."""
        key = target.lower()
        added = [Donor(name=name, rank=rank, ref_pages=1, born=day) for name in names]
        with self._lock:
            self._add(key, self._overlays.setdefault(key, _Overlay()), added)
        return added

    def insert_beside(self, target: str, anchor: Donor, after: bool, day: dt.date) -> Donor:
        """Add a donor whose name sorts right before (or after) `anchor`'s, with its rank: a new
        row at a chosen place of a result sorted by name, inside the anchor's rank partition."""
        key = target.lower()
        with self._lock:
            overlay = self._overlays.setdefault(key, _Overlay())
            label, dot, rest = anchor.name.partition(".")
            # '-' sorts before '.', '0' after it: the new name lands just before / just after
            mark = f"0c{len(overlay.donors)}" if after else f"-c{len(overlay.donors)}"
            donor = Donor(name=f"{label}{mark}{dot}{rest}", rank=anchor.rank, ref_pages=anchor.ref_pages,
                          born=day)
            self._add(key, overlay, [donor])
        return donor

    def remove_donors(self, target: str, donors: list[Donor]) -> None:
        """Drop donors from the index (a live index update: the links are gone)."""
        key = target.lower()
        with self._lock:
            overlay = self._overlays.setdefault(key, _Overlay())
            for donor in donors:
                overlay.removed.add(donor.name)
                self.changes.append(Change("remove", key, donor))
            self.version += 1

    def change_metrics(self, target: str, donor: Donor, rank: int, ref_pages: int) -> Donor:
        """Give a donor new metrics (rank and ref_pages move under a live index every day)."""
        key = target.lower()
        changed = replace(donor, rank=rank, ref_pages=ref_pages)
        with self._lock:
            self._overlays.setdefault(key, _Overlay()).changed[donor.name] = changed
            self.changes.append(Change("metrics", key, changed))
            self.version += 1
        return changed

    def _add(self, key: str, overlay: _Overlay, added: list[Donor]) -> None:
        overlay.donors.extend(added)
        self.changes.extend(Change("insert", key, donor) for donor in added)
        self.version += 1

    # --- ground truth --------------------------------------------------------------------
    def donors(self, target: str, through: dt.date | None = None) -> list[Donor]:
        """The target's donors with the changes made at run time: all of them, or at least every
        one born by `through` (a churning universe is generated day by day as far as it is asked
        for; what was generated before is returned too)."""
        key = target.lower()
        with self._lock:
            universe = self._universes.get(key)
            if universe is None:
                universe = self._universes[key] = self._universe(key, self._profiles.get(key, Profile()))
            overlay = self._overlays.get(key)
            if overlay and overlay.changed:
                # a change is kept by name and given to every donor of that name, also one born
                # later that an added donor shares its name with: those must exist to be changed
                through = None
            generated = universe.through(self.seed, key, through)
            if not overlay:
                return generated
            if not overlay.removed and not overlay.changed:
                return generated + overlay.donors
            removed, changed = set(overlay.removed), dict(overlay.changed)
            donors = generated + overlay.donors
        return [changed.get(d.name, d) for d in donors if d.name not in removed]

    def active(self, target: str, day: dt.date, search_type: str = "domain_with_subdomains") -> list[Donor]:
        # A partitioned pull asks for dozens of filters of one target and day: the scan of a
        # churning universe (several donors per one alive) is done once per state of the graph.
        key = (target.lower(), day, search_type, self.version)
        with self._lock:
            cached = self._active.get(key)
        if cached is None:
            only_domain = search_type == "domain"
            cached = [d for d in self.donors(target, through=day)
                      if d.active_on(day) and (d.in_domain_only or not only_domain)]
            with self._lock:
                if len(self._active) >= 64:
                    self._active.clear()
                self._active[key] = cached
        return list(cached)

    def truth(self, target: str, day: dt.date, search_type: str = "domain_with_subdomains",
              last_week: bool = False) -> set[str]:
        """Raw `domain_from` names the API would list for that day (the test oracle)."""
        donors = self.active(target, day, search_type)
        if last_week:
            donors = [d for d in donors if in_last_week(d, day)]
        return {d.name for d in donors}

    # --- generation ----------------------------------------------------------------------
    def _universe(self, key: str, profile: Profile) -> _Universe:
        rng = _rng(self.seed, key, "profile")
        if profile.size is not None:
            static = [_static_donor(self.seed, key, i) for i in range(profile.size)]
            if profile.rank is not None:
                static = [replace(d, rank=profile.rank) for d in static]
            return _Universe(static, births_per_day=0.0, next_offset=HORIZON_DAYS)
        base = profile.base_size if profile.base_size is not None else 100 + rng.randrange(1900)
        return _Universe([], births_per_day=base / MEAN_LIFETIME_DAYS, next_offset=-HISTORY_DAYS)


@dataclass
class _Universe:
    """A target's generated donors, in order of birth, and where generation stopped: a churning
    universe spans HISTORY_DAYS + HORIZON_DAYS (several donors for each one alive on a day), and
    a day's truth needs only the donors born by then."""

    donors: list[Donor]
    births_per_day: float
    next_offset: int  # the first day (days from EPOCH) not generated yet
    born_so_far: float = 0.0

    def through(self, seed: int, key: str, day: dt.date | None) -> list[Donor]:
        """Every donor born by `day` (all of them without one), generated as far as needed;
        those generated before for a later day are in the list too."""
        last = HORIZON_DAYS - 1 if day is None else min((day - EPOCH).days, HORIZON_DAYS - 1)
        if self.next_offset <= last:
            born = list(self.donors)  # a list handed out before stays as it was
            index = len(born)
            for offset in range(self.next_offset, last + 1):
                self.born_so_far += self.births_per_day
                while index < int(self.born_so_far):
                    born.append(_churning_donor(seed, key, index, EPOCH + dt.timedelta(days=offset)))
                    index += 1
            self.donors, self.next_offset = born, last + 1
        return self.donors


def _static_donor(seed: int, key: str, index: int) -> Donor:
    rng = _rng(seed, key, index)
    born = EPOCH - dt.timedelta(days=400 + rng.randrange(3000))
    return Donor(name=_donor_name(rng, index), rank=_donor_rank(rng), ref_pages=_ref_pages(rng),
                 born=born, in_domain_only=rng.random() < 0.8)


def _churning_donor(seed: int, key: str, index: int, born: dt.date) -> Donor:
    rng = _rng(seed, key, index)
    name = _donor_name(rng, index)
    lost = born + dt.timedelta(days=1 + int(rng.expovariate(1 / MEAN_LIFETIME_DAYS)))
    returned = None
    if rng.random() < RETURN_PROBABILITY:
        returned = lost + dt.timedelta(days=1 + int(rng.expovariate(1 / MEAN_RETURN_GAP_DAYS)))
    return Donor(name=name, rank=_donor_rank(rng), ref_pages=_ref_pages(rng), born=born,
                 lost=lost, returned=returned, in_domain_only=rng.random() < 0.8)


def in_last_week(donor: Donor, day: dt.date) -> bool:
    """ASSUMPTION ([emulator choice]): Serpstat documents `last_week` only
    as "data for the last week"; we read it as "first detected within the 7 days up to the
    index date", the one per-row date the method has."""
    detected = donor.first_detected(day)
    return day - dt.timedelta(days=7) <= detected <= day
