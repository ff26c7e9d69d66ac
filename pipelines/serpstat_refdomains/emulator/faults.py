"""Scriptable faults for the emulator: which request fails, how, and how often.

A fault matches requests by method, target (`query`), page, sort order and whether the request carries the
`last_week` filter; any of these left as None matches everything. Each fault fires `times` times
(-1: for ever), so a test can script "page 3 of example.com answers 503 twice, then works".
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Faults in the transport: nothing reaches the API, nothing is charged.
TRANSPORT_KINDS = {"http_error", "drop", "malformed", "rate_limit", "http_429", "api_error", "wrong_api_query"}
# Faults that change what the API answers (the request is processed and charged).
DATA_KINDS = {"delay", "insert_rows", "extra_fields", "string_numbers", "empty", "bad_metrics",
              "rewrite_rows", "error_with_result", "short_page", "no_total"}
# Faults that change the index itself just before the request is answered (a live index).
CHURN_KINDS = {"insert_rows", "delete_rows", "swap_rows", "change_metrics"}
DATA_KINDS |= CHURN_KINDS
KINDS = TRANSPORT_KINDS | DATA_KINDS


@dataclass
class Fault:
    """One scripted fault.

    kind:
        http_error      answer HTTP `status` (default 500) with a non-JSON body
        drop            close the connection without an answer
        malformed       HTTP 200 with a body that is not JSON
        rate_limit      HTTP 200 + in-body error 429 "Query frequency exceeded"
        http_429        HTTP 429 with `Retry-After: retry_after`
        api_error       HTTP 200 + in-body error `code`/`message` (e.g. 32016), not charged; or,
                        when `error_body` is set, that value verbatim as the error member (a bare
                        message, a code as a string, an empty object: shapes clients report)
        wrong_api_query HTTP 200 + in-body error 404 "Wrong API query! Use API domain subdomain"
                        (what Serpstat documents for a wrong endpoint), not charged
        delay           sleep `seconds` before answering (past the client's timeout, say)
        insert_rows     add `count` new donors to the target before answering (the total moves);
                        with `where` "before"/"after", each sorts just beside a row of this
                        request's result before the page's first row / after its last row
                        (rows of that stretch taken in turn)
        delete_rows     remove `count` donors of this request's result, `where` "before" the
                        page's first row or "after" its last row
        swap_rows       remove `count` donors before the page and add `count` after it (or the
                        other way round with `where="after"`): the total stays put, rows shift
        change_metrics  give `count` donors of the target (any partition) a new domain_rank
                        (+50 mod 101) and ref_pages (+1): a donor can move between rank filters
        extra_fields    add unknown fields to every row of the answer
        string_numbers  send ref_pages and domainRank as strings
        empty           answer as if the target had no referring domains
        error_with_result  the normal answer (processed, charged) plus an error member
                        `code`/`message` beside its result
        bad_metrics     in the answer's rows, set `metric` (ref_pages or domainRank) to each of
                        `values` in turn, from the first row on (values: e.g. "", -1, "n/a", 1.5)
        rewrite_rows    send `rewrite(donor, row)` in place of each row of the answer: the donor
                        (emulator.Donor) and the row as it would have gone out (a dict the
                        function may change or replace by anything JSON can carry), for data
                        no other kind makes (a name that is not text, a field left out, a row
                        that is not an object). Charged as the page it replaces
        no_total        answer with `summary_info.total` null (rows and charge as usual)
        short_page      leave the last `count` rows out of the page while `total` still counts them
    """

    kind: str
    query: str | None = None
    page: int | None = None
    last_week: bool | None = None
    method: str | None = "SerpstatBacklinksProcedure.getRefDomains"
    times: int = 1
    status: int = 500
    seconds: float = 0.0
    count: int = 1
    retry_after: int = 1
    code: int = 32016
    message: str = "Large query domains not supported"
    metric: str = "domainRank"
    values: tuple = ()
    error_body: Any = None
    where: str | None = None  # churn: "before" or "after" the requested page's rows
    pick: float = 0.5  # churn: which rows of that stretch (0 = its first, towards 1 = its last)
    order: str | None = None  # only requests sorted this way ("asc" / "desc"); None: any
    rewrite: Callable[[Any, dict], Any] | None = None  # rewrite_rows: (donor, row) -> the row sent

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(KINDS)}")
        if self.where not in (None, "before", "after"):
            raise ValueError(f"fault where must be 'before' or 'after', not {self.where!r}")
        if not 0 <= self.pick < 1:
            raise ValueError(f"fault pick must be in [0, 1), not {self.pick!r}")
        if (self.kind == "rewrite_rows") != (self.rewrite is not None):
            raise ValueError("a rewrite_rows fault needs rewrite=(donor, row) -> row, and only it takes one")

    def matches(self, method: str, query: str | None, page: int | None, last_week: bool,
                order: str | None = None) -> bool:
        return (
            self.times != 0
            and (self.method is None or self.method == method)
            and (self.query is None or (query or "").lower() == self.query.lower())
            and (self.page is None or self.page == page)
            and (self.last_week is None or self.last_week == last_week)
            and (self.order is None or self.order == str(order or "").lower())
        )


@dataclass
class FaultPlan:
    """The emulator's list of scripted faults, plus an optional random fault rate for chaos runs."""

    faults: list[Fault] = field(default_factory=list)
    random_rate: float = 0.0
    random_kinds: tuple[str, ...] = ("http_error", "drop", "malformed", "rate_limit")
    seed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rng: random.Random | None = field(default=None, repr=False)

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.random_rate = 0.0

    def take(self, method: str, query: str | None, page: int | None, last_week: bool,
             order: str | None = None) -> list[Fault]:
        """Faults that fire for this request, each consuming one of its `times`."""
        fired: list[Fault] = []
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, query, page, last_week, order):
                    # One request can fail in one way only: later transport faults wait their turn.
                    if fault.kind in TRANSPORT_KINDS and any(f.kind in TRANSPORT_KINDS for f in fired):
                        continue
                    if fault.times > 0:
                        fault.times -= 1
                    fired.append(fault)
            if self.random_rate > 0:
                if self._rng is None:
                    self._rng = random.Random(self.seed)
                if self._rng.random() < self.random_rate:
                    fired.append(Fault(kind=self._rng.choice(self.random_kinds), status=503, times=0))
        return fired
