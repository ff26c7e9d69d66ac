"""The emulated Serpstat API v4: request validation, getRefDomains, getStats, credits, rate limit.

Implements Serpstat's published API v4 contract, with an [emulator choice] default where Serpstat's
public documentation is silent. HTTP plumbing lives in server.py; this module turns a decoded
request into a response and keeps the account (balance, request log) that tests inspect.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .faults import CHURN_KINDS, TRANSPORT_KINDS, Fault, FaultPlan
from .graph import Donor, LinkGraph, in_last_week

REF_DOMAINS = "SerpstatBacklinksProcedure.getRefDomains"
GET_STATS = "SerpstatLimitsProcedure.getStats"

SEARCH_TYPES = ("domain", "domain_with_subdomains")
SORTS = {"domain_links": "ref_pages", "domain_from": "name", "domain_rank": "rank", "check": "check",
         "lastupdate": "check"}  # `lastupdate`: the name an older getRefDomains docs page gives `check`
FILTER_FIELDS = {"domain_links": "ref_pages", "domain_from": "name", "domain_rank": "rank"}
NUMERIC_COMPARES = {"gt", "lt", "gte", "lte", "between"}
TEXT_COMPARES = {"contains", "notContains", "startsWith", "endsWith"}
ANY_COMPARES = {"eq", "neq"}
ADDITIONAL_FILTERS = {"no_subdomains", "only_subdomains", "only_hosts", "last_week"}
DEFAULT_DEPTH_CAP = 60_000


class ApiError(Exception):
    """An API-level error: answered as HTTP 200 with a JSON-RPC style `error` object."""

    def __init__(self, code: int, message: str, charge: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.charge = charge


@dataclass
class LogEntry:
    """One request as the emulator saw it: what was asked, what it cost, how it ended."""

    method: str
    query: str | None = None
    search_type: str | None = None
    page: int | None = None
    size: int | None = None
    sort: str | None = None
    order: str | None = None
    complex_filter: Any = None
    last_week: bool = False
    count: int = 0
    total: int | None = None
    charge: int = 0
    outcome: str = "ok"  # ok | empty | error:<code> | fault:<kind>
    http_status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    delay: float = 0.0


@dataclass(frozen=True)
class _Rendered:
    json: bytes


class _TokenBucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


class SerpstatApi:
    """State and behaviour of one emulated Serpstat account."""

    def __init__(
        self,
        *,
        seed: int = 0,
        today: dt.date | None = None,
        token: str = "demo-token",
        balance: int = 10_000_000,
        rate_limit_rps: float | None = None,
        http_429_mode: bool = False,
        empty_as_error: bool = True,
        numbers_as_strings: bool = False,
        extra_fields: bool = False,
        depth_cap: int = DEFAULT_DEPTH_CAP,
        latency: float = 0.0,
    ) -> None:
        self.graph = LinkGraph(seed)
        self.today = today or dt.date.today()
        self.token = token
        self.max_lines = balance
        self.balance = balance
        self.http_429_mode = http_429_mode
        self.empty_as_error = empty_as_error
        self.numbers_as_strings = numbers_as_strings
        self.extra_fields = extra_fields
        self.depth_cap = depth_cap
        self.latency = latency
        self.faults = FaultPlan()
        self.log: list[LogEntry] = []
        self._bucket = _TokenBucket(rate_limit_rps) if rate_limit_rps else None
        self._lock = threading.Lock()
        self._results: OrderedDict[tuple, list[Donor]] = OrderedDict()
        self._pages: OrderedDict[tuple, _Rendered] = OrderedDict()

    # --- account -------------------------------------------------------------------------
    def set_rate_limit(self, rps: float | None) -> None:
        self._bucket = _TokenBucket(rps) if rps else None

    def set_balance(self, balance: int) -> None:
        with self._lock:
            self.balance = balance

    @property
    def credits_charged(self) -> int:
        return sum(e.charge for e in self.log)

    def clear_log(self) -> None:
        with self._lock:
            self.log.clear()

    # --- entry point ---------------------------------------------------------------------
    def handle(self, raw_body: bytes, query_token: str | None, header_token: str | None) -> Response:
        try:
            request = json.loads(raw_body)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            return self._error_response(None, ApiError(400, "Json schema validation error"),
                                        LogEntry(method="?"))
        req_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        entry = LogEntry(method=str(method))
        if isinstance(params, dict):
            entry.query = params.get("query")
            entry.search_type = params.get("searchType")
            entry.page = params.get("page", 1)
            entry.size = params.get("size", 100)
            entry.sort = params.get("sort")
            entry.order = params.get("order")
            entry.complex_filter = params.get("complexFilter")
            entry.last_week = _mentions_last_week(params.get("complexFilter"))

        fired = self.faults.take(str(method), entry.query,
                                 entry.page if isinstance(entry.page, int) else None, entry.last_week, entry.order)
        transport = next((f for f in fired if f.kind in TRANSPORT_KINDS), None)
        if transport is not None:
            return self._transport_fault(transport, req_id, entry)

        delay = self.latency + sum(f.seconds for f in fired if f.kind == "delay")
        try:
            self._authenticate(query_token, header_token)
            if self._bucket is not None and not self._bucket.take():
                response = self._rate_limited(req_id, entry)
                response.delay = delay
                return response
            if method == GET_STATS:
                result = self._get_stats()
            elif method == REF_DOMAINS:
                if not isinstance(params, dict):
                    raise ApiError(32117, "Not allowed params for filter")
                result = self._get_ref_domains(params, fired, entry)
            else:
                raise ApiError(403, "Wrong method or access denied")
        except ApiError as error:
            response = self._error_response(req_id, error, entry)
            response.delay = delay
            return response
        self._record(entry)
        beside = next((f for f in fired if f.kind == "error_with_result"), None)
        if beside is not None:
            if isinstance(result.get("data"), _Rendered):
                result = {**result, "data": json.loads(result["data"].json)}
            return Response(200, _dumps({"id": _echo_id(req_id), "result": result,
                                         "error": {"code": beside.code, "message": beside.message}}), delay=delay)
        if isinstance(result.get("data"), _Rendered):
            # the page's rows are pre-rendered JSON; only the envelope is encoded per request
            body = b"".join([b'{"id":', _dumps(_echo_id(req_id)), b',"result":{"data":', result["data"].json,
                             b',"summary_info":', _dumps(result["summary_info"]), b"}}"])
            return Response(200, body, delay=delay)
        return Response(200, _dumps({"id": _echo_id(req_id), "result": result}), delay=delay)

    # --- methods -------------------------------------------------------------------------
    def _authenticate(self, query_token: str | None, header_token: str | None) -> None:
        token = query_token if query_token is not None else header_token
        if not token:
            raise ApiError(400, "Missing token!")
        if token != self.token:
            raise ApiError(403, "Invalid token!")

    def _get_stats(self) -> dict:
        with self._lock:
            left = self.balance
        return {
            "data": {
                "max_lines": self.max_lines,
                "used_lines": max(0, self.max_lines - left),
                "left_lines": left,
                "user_info": {"user_id": "555", "ga_client_Id": "12434534.544545", "plan_id": "2028"},
                "plugin_limits": {"hasApiPlugin": True, "delayBetweenRequests": 1,
                                  "total": 10000, "used": 0, "left": 10000},
            },
            "summary_info": {"left_lines": left},
        }

    def _get_ref_domains(self, params: dict, fired: list[Fault], entry: LogEntry) -> dict:
        query, search_type, page, size, sort, order, groups = _validate(params)
        entry.page, entry.size = page, size
        for fault in fired:
            if fault.kind == "insert_rows" and fault.where is None:
                self.graph.insert_donors(query, fault.count, self.today)
            elif fault.kind in CHURN_KINDS:
                self._churn(fault, (query, search_type, sort, order, groups), (page - 1) * size, size)
        if (page - 1) * size + 1 > self.depth_cap:
            raise ApiError(402, f"To get more than {self.depth_cap} results use export report methods")

        rows: list[Donor]
        if any(f.kind == "empty" for f in fired):
            result_key, rows = None, []
        else:
            result_key, rows = self._result_set(query, search_type, sort, order, groups)
        total = len(rows)
        window = rows[(page - 1) * size: page * size]
        short = sum(f.count for f in fired if f.kind == "short_page")
        if short:
            window = window[:max(len(window) - short, 0)]
        entry.total = total
        if not window:
            charge = 1  # since 2025-06-15 an empty answer costs 1 credit
            self._charge(charge, entry)
            if self.empty_as_error:
                raise ApiError(404, "Empty result!", charge=charge)
            entry.outcome = "empty"
        else:
            self._charge(len(window), entry)
        entry.count = len(window)

        as_strings = self.numbers_as_strings or any(f.kind == "string_numbers" for f in fired)
        extras = self.extra_fields or any(f.kind == "extra_fields" for f in fired)
        page_key = None if result_key is None or short else (result_key, page, size, as_strings, extras)
        bad_metrics = [f for f in fired if f.kind == "bad_metrics"]
        rewrites = [f for f in fired if f.kind == "rewrite_rows"]
        if bad_metrics or rewrites:
            # rendered for this answer only: the page cache keeps what the index itself serves
            rendered = _with_bad_metrics([self._row(d, as_strings, extras) for d in window], bad_metrics)
            data = _Rendered(_dumps(_rewritten(window, rendered, rewrites)))
        else:
            data = self._render(window, page_key, as_strings, extras)
        with self._lock:
            left = self.balance
        summary = {"left_lines": left, "page": page, "count": len(window), "total": total,
                   "sort": sort, "order": order.upper()}
        if any(f.kind == "no_total" for f in fired):
            summary["total"] = None
        return {"data": data, "summary_info": summary}

    def _churn(self, fault: Fault, request: tuple, offset: int, size: int) -> None:
        """Change the index the way a live one does between two page requests (faults.py)."""
        query, search_type = request[0], request[1]
        if fault.kind == "change_metrics":
            everyone = sorted(self.graph.active(query, self.today, search_type), key=lambda d: d.name)
            for donor in _picked(everyone, fault.pick, fault.count):
                self.graph.change_metrics(query, donor, (donor.rank + 50) % 101, donor.ref_pages + 1)
            return
        _, rows = self._result_set(*request)
        before, after = rows[:offset], rows[offset + size:]
        if fault.kind == "delete_rows":
            self.graph.remove_donors(query, _picked(before if fault.where == "before" else after,
                                                    fault.pick, fault.count))
            return
        removed, added = (before, after) if fault.where != "after" else (after, before)
        if fault.kind == "insert_rows":
            removed, added = [], (before if fault.where == "before" else after)
        # anchors first: the rows to add sit beside rows of the result as it was asked for
        # (taken in turn, so a short stretch still takes `count` new rows)
        anchors = [added[(int(fault.pick * len(added)) + i) % len(added)] for i in range(fault.count)] if added else []
        self.graph.remove_donors(query, _picked(removed, fault.pick, fault.count))
        for anchor in anchors:
            # after the page: just after its anchor; before it: just before its anchor
            self.graph.insert_beside(query, anchor, after=added is after, day=self.today)

    def _render(self, window: list[Donor], key: tuple | None, as_strings: bool, extras: bool) -> _Rendered:
        """Rows of one page as JSON, cached by everything that decides them (the result set's
        key, page, size, value modes): the emulator must not be the benchmarks' bottleneck."""
        if key is not None:
            with self._lock:
                cached = self._pages.get(key)
            if cached is not None:
                return cached
        rendered = _Rendered(_dumps([self._row(d, as_strings, extras) for d in window]))
        if key is None:
            return rendered
        with self._lock:
            self._pages[key] = rendered
            while len(self._pages) > 4096:
                self._pages.popitem(last=False)
        return rendered

    def _row(self, donor: Donor, as_strings: bool, extras: bool) -> dict:
        row: dict[str, Any] = {
            "domain_from": donor.name,
            "ref_pages": str(donor.ref_pages) if as_strings else donor.ref_pages,
            "domainRank": str(donor.rank) if as_strings else donor.rank,
        }
        if extras:
            row["domain_links"] = donor.ref_pages
            row["check"] = donor.first_detected(self.today).isoformat()
        return row

    def _result_set(self, query: str, search_type: str, sort: str, order: str,
                    groups: list) -> tuple[tuple, list[Donor]]:
        key = (query.lower(), search_type, self.today, json.dumps(groups, sort_keys=True), sort, order,
               self.graph.version)
        with self._lock:
            cached = self._results.get(key)
            if cached is not None:
                self._results.move_to_end(key)
                return key, cached
        donors = self.graph.active(query, self.today, search_type)
        if groups:
            donors = self._matching(donors, groups, query)
        attr = SORTS[sort]
        if attr == "check":
            def sort_key(d: Donor) -> tuple:
                return (d.first_detected(self.today), d.name)
        else:
            def sort_key(d: Donor) -> tuple:
                return (getattr(d, attr), d.name)
        donors = sorted(donors, key=sort_key, reverse=(order == "desc"))
        with self._lock:
            self._results[key] = donors
            while len(self._results) > 256:
                self._results.popitem(last=False)
        return key, donors

    def _matching(self, donors: list[Donor], groups: list, query: str) -> list[Donor]:
        """The donors any group of a complexFilter matches (groups are OR'd, their conditions
        AND'd). A partitioned pull sends dozens of groups that are one `domain_from startsWith`
        each: those are one condition with all their prefixes, tested once per donor."""
        prefixes: list = []
        tests = []
        for group in groups:
            if len(group) == 1 and group[0].get("field") == "domain_from" and group[0]["compareType"] == "startsWith":
                prefixes.extend(group[0]["value"])
            else:
                tests.append([self._condition(c, query) for c in group])
        if prefixes:
            tests.append([self._condition({"field": "domain_from", "compareType": "startsWith", "value": prefixes},
                                          query)])
        if len(tests) == 1 and len(tests[0]) == 1:
            return list(filter(tests[0][0], donors))
        return [d for d in donors if any(all(test(d) for test in group) for group in tests)]

    def _condition(self, cond: dict, query: str) -> Callable[[Donor], bool]:
        """One condition of a complexFilter group as a test of a donor."""
        if "additional_filters" in cond:
            name = cond["additional_filters"]
            return lambda donor: self._quick_filter(donor, name, query)
        attr, compare, values = FILTER_FIELDS[cond["field"]], cond["compareType"], cond["value"]
        if attr == "name":  # text is matched ignoring case
            values = tuple(str(v).lower() for v in values)
        return lambda donor: _compare(getattr(donor, attr), compare, values)

    def _quick_filter(self, donor: Donor, name: str, query: str) -> bool:
        labels = donor.name.lower().rstrip(".").split(".")
        # [emulator choice]: Serpstat's docs give these filters one-liners only.
        if name == "last_week":
            return in_last_week(donor, self.today)
        if name == "only_subdomains":
            return len(labels) > 2
        if name == "only_hosts":
            return len(labels) <= 2
        if name == "no_subdomains":
            return not donor.name.lower().endswith("." + query.lower())
        return True

    # --- accounting ----------------------------------------------------------------------
    def _charge(self, charge: int, entry: LogEntry) -> None:
        with self._lock:
            if self.balance < charge:
                raise ApiError(32012, "Credits exceeded")
            self.balance -= charge
        entry.charge = charge

    def _record(self, entry: LogEntry) -> None:
        with self._lock:
            self.log.append(entry)

    def _rate_limited(self, req_id: Any, entry: LogEntry) -> Response:
        if self.http_429_mode:
            entry.outcome, entry.http_status = "error:429", 429
            self._record(entry)
            return Response(429, b"Too Many Requests", headers={"Retry-After": "1"})
        return self._error_response(req_id, ApiError(429, "Query frequency exceeded"), entry)

    def _error_response(self, req_id: Any, error: ApiError, entry: LogEntry) -> Response:
        entry.outcome = f"error:{error.code}"
        entry.charge = error.charge
        self._record(entry)
        body = {"id": _echo_id(req_id), "error": {"code": error.code, "message": error.message}}
        return Response(200, _dumps(body))

    def _transport_fault(self, fault: Fault, req_id: Any, entry: LogEntry) -> Response:
        entry.outcome = f"fault:{fault.kind}"
        if fault.kind == "http_error":
            entry.http_status = fault.status
            self._record(entry)
            return Response(fault.status, b"<html><body>Bad Gateway</body></html>",
                            headers={"Content-Type": "text/html"})
        if fault.kind == "drop":
            entry.http_status = 0
            self._record(entry)
            return Response(0, b"", drop=True)
        if fault.kind == "malformed":
            self._record(entry)
            return Response(200, b'{"id": "1", "result": {"data": [{"domain_from": "trunc')
        if fault.kind == "api_error" and fault.error_body is not None:
            entry.outcome = f"error:{fault.error_body!r}"[:80]
            self._record(entry)
            return Response(200, _dumps({"id": _echo_id(req_id), "error": fault.error_body}))
        if fault.kind == "api_error":
            return self._error_response(req_id, ApiError(fault.code, fault.message), entry)
        if fault.kind == "wrong_api_query":
            return self._error_response(req_id, ApiError(404, "Wrong API query! Use API domain subdomain"), entry)
        if fault.kind == "http_429":
            entry.http_status = 429
            self._record(entry)
            return Response(429, b"Too Many Requests", headers={"Retry-After": str(fault.retry_after)})
        return self._error_response(req_id, ApiError(429, "Query frequency exceeded"), entry)


def _with_bad_metrics(rows: list[dict], faults: list[Fault]) -> list[dict]:
    for fault in faults:
        for row, value in zip(rows, fault.values, strict=False):
            row[fault.metric] = value
    return rows


def _rewritten(window: list[Donor], rows: list[dict], faults: list[Fault]) -> list[Any]:
    for fault in faults:
        rewrite = fault.rewrite
        assert rewrite is not None  # Fault() refuses a rewrite_rows fault without one
        rows = [rewrite(donor, row) for donor, row in zip(window, rows, strict=False)]
    return rows


def _picked(rows: list, pick: float, count: int) -> list:
    """`count` consecutive rows starting at fraction `pick` of `rows` (fewer if it is short)."""
    if not rows:
        return []
    start = min(int(pick * len(rows)), len(rows) - 1)
    return rows[start:start + count]


def _validate(params: dict) -> tuple[str, str, int, int, str, str, list]:
    query = params.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ApiError(400, "Query required")
    if "://" in query or "/" in query or " " in query.strip():
        raise ApiError(32117, "Not allowed params for filter")
    search_type = params.get("searchType", "domain_with_subdomains")
    if search_type not in SEARCH_TYPES:
        raise ApiError(400, "Json schema validation error")
    page = params.get("page", 1)
    size = params.get("size", 100)
    if not _is_int(page) or page < 1 or not _is_int(size) or not 1 <= size <= 1000:
        raise ApiError(400, "Json schema validation error")
    sort = params.get("sort", "check")
    order = str(params.get("order", "desc")).lower()
    if sort not in SORTS or order not in ("asc", "desc"):
        raise ApiError(400, "Json schema validation error")
    groups = params.get("complexFilter")
    if groups is None:
        groups = []
    _validate_filter(groups)
    return query.strip(), search_type, page, size, sort, order, groups


def _validate_filter(groups: Any) -> None:
    if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
        raise ApiError(32117, "Not allowed params for filter")
    for group in groups:
        for cond in group:
            if not isinstance(cond, dict):
                raise ApiError(32117, "Not allowed params for filter")
            if "additional_filters" in cond:
                if set(cond) != {"additional_filters"} or cond["additional_filters"] not in ADDITIONAL_FILTERS:
                    raise ApiError(32117, "Not allowed params for filter")
                continue
            field_name = cond.get("field")
            if field_name not in FILTER_FIELDS:
                raise ApiError(32117, f"Not allowed field: {field_name}")
            compare = cond.get("compareType")
            if compare is None:
                raise ApiError(32117, "Field compareType is required")
            if "value" not in cond:
                raise ApiError(32117, "Field value is required")
            value = cond["value"]
            numeric_field = field_name != "domain_from"
            allowed = ANY_COMPARES | (NUMERIC_COMPARES if numeric_field else TEXT_COMPARES)
            if compare not in allowed:
                raise ApiError(32117, f"Not allowed method {compare} for field {field_name}")
            if not isinstance(value, list) or not value:
                raise ApiError(32117, "Field value is required")
            if compare == "between":
                if len(value) != 2 or not all(_is_number(v) for v in value):
                    raise ApiError(32117, "Not allowed values for between method")
            elif numeric_field and not all(_is_number(v) for v in value):
                raise ApiError(32117, "Not allowed params for filter")


def _compare(actual: Any, compare: str, values: Sequence) -> bool:
    """One condition on one donor's value; text against `values` already in lower case."""
    if isinstance(actual, str):
        text = actual.lower()
        if compare == "eq":
            return text in values
        if compare == "neq":
            return text not in values
        if compare == "contains":
            return any(n in text for n in values)
        if compare == "notContains":
            return not any(n in text for n in values)
        if compare == "startsWith":
            return text.startswith(tuple(values))
        if compare == "endsWith":
            return text.endswith(tuple(values))
        return False
    number = values[0]
    if compare == "between":
        return values[0] <= actual <= values[1]
    if compare == "eq":
        return actual in values
    if compare == "neq":
        return actual not in values
    return {"gt": actual > number, "lt": actual < number,
            "gte": actual >= number, "lte": actual <= number}[compare]


def _mentions_last_week(groups: Any) -> bool:
    if not isinstance(groups, list):
        return False
    return any(isinstance(c, dict) and c.get("additional_filters") == "last_week"
               for g in groups if isinstance(g, list) for c in g)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _echo_id(req_id: Any) -> str | None:
    # Serpstat's documented examples echo a numeric request id as a string.
    return None if req_id is None else str(req_id)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
