"""The one way this project calls Serpstat: JSON-RPC over HTTPS, throttled, retried, redacted.

The client knows nothing of dlt. It owns the HTTP session, the rate limiter shared by every
thread of a run, retries with backoff, reading each answer as data or as one of the errors of
errors.py, and credit accounting. Callers see methods (`get_ref_domains`, `get_stats`), never
URLs, and never the token: Serpstat takes it as a query parameter, which requests and urllib3
like to print, so every path out of this module (log records, exception messages, reprs) is
redacted.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_exponential_jitter

from .constants import DEFAULT_API_URL
from .errors import (
    AuthenticationError,
    CreditsExhaustedError,
    DepthCapError,
    EmptyResult,
    EndpointError,
    InvalidRequestError,
    RateLimitError,
    SerpstatError,
    TransientError,
)
from .redaction import redact, register_secret

logger = logging.getLogger(__name__)

REF_DOMAINS = "SerpstatBacklinksProcedure.getRefDomains"
GET_STATS = "SerpstatLimitsProcedure.getStats"
TOKEN_FIX = "set a valid token in .dlt/secrets.toml [sources.serpstat] api_token or SOURCES__SERPSTAT__API_TOKEN"

# Error codes, from Serpstat's "Server response codes" page and clients written against the live
# API. The group number (404, 429, ...) or a 32xxx code arrives in error.code; clients must key on
# both code and message, because the same answer is reported under more than one code.
#
# Empty results: only these mean "no referring domains". The same group code 404 also answers
# "Wrong API query! Use API domain subdomain" (a wrong api_url or path). A 404 that does not say
# its result is empty, even one with no message at all, is therefore an error too: a false empty
# snapshot becomes false LOST donors, while an error only costs a rerun.
EMPTY_CODES = {32015, 32017}  # "No data found for requested domain", "Data not found"
EMPTY_MESSAGES = ("empty result", "no data found", "data not found")
# Rate limits: 429 "Query frequency exceeded" / "Too many queries", and 32000 "more requests per
# second than available", which Airbyte's Serpstat connector also retries.
RATE_LIMIT_CODES = {429, 32000}
RATE_LIMIT_MESSAGES = ("frequency", "too many", "requests per second")
RETRY_CODES = {500, 502, 503, 504}
CREDIT_CODES = {32012}
INVALID_CODES = {400, 32016, 32018, 32116, 32117}
# The depth-cap answer, "To get more than 60000 results use export report methods": documented
# under 402, reported by one client under 32018, so it is recognised by its words too.
DEPTH_CAP_MESSAGES = ("results use export", "use export report")
WRONG_ENDPOINT_MESSAGES = ("wrong api query",)
API_URL_FIX = f"set api_url to Serpstat's endpoint {DEFAULT_API_URL} (or remove it to use that default)"


# --- results -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RefDomainsPage:
    """One page of getRefDomains. `charge` is what the API billed for it."""

    rows: list[dict[str, Any]]
    page: int
    total: int
    left_lines: int | None
    charge: int

    @property
    def count(self) -> int:
        return len(self.rows)


@dataclass(frozen=True, slots=True)
class AccountStats:
    max_lines: int | None
    used_lines: int | None
    left_lines: int | None


# --- rate limit --------------------------------------------------------------------------
class RateLimiter:
    """Spaces calls evenly at `rate` per second across every thread that shares it.

    Slots are handed out under a lock and slept on outside it, so N threads together never
    exceed the rate and a slow response does not hold up the next request's slot.

    Requests leave exactly one interval apart but arrive a little closer or further (the network
    varies): a server that allows no burst then refuses the early ones, and each refusal costs a
    retry wait. `slow_down` (called on every rate-limit answer) stretches the interval by
    SLOW_DOWN, up to MAX_STRETCH of the configured one, so a run that was refused paces just under
    the limit from then on, and one that never was keeps the full rate.
    """

    SLOW_DOWN = 1.03
    MAX_STRETCH = 1.25

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self._longest = self.interval * self.MAX_STRETCH
        self._next = 0.0
        self._lock = threading.Lock()

    def slow_down(self) -> None:
        with self._lock:
            self.interval = min(self.interval * self.SLOW_DOWN, self._longest)

    def acquire(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)


# --- client ------------------------------------------------------------------------------
class SerpstatClient:
    """JSON-RPC client for Serpstat API v4.

    Args:
        api_token: the Serpstat API token (sent as the `token` query parameter).
        api_url: endpoint, e.g. the local emulator's.
        requests_per_second: shared by every thread using this client (1 on most plans).
        timeout: seconds to wait for one answer.
        max_attempts: tries per call, retries included.
        max_retry_wait: seconds a call may spend retrying before it gives up.
    """

    def __init__(
        self,
        api_token: str,
        api_url: str = DEFAULT_API_URL,
        requests_per_second: float | None = 1.0,
        timeout: float = 60.0,
        max_attempts: int = 6,
        max_retry_wait: float = 300.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        pool_size: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_token:
            raise AuthenticationError(f"Serpstat API token is missing: {TOKEN_FIX}")
        register_secret(api_token)
        self._token = api_token
        self.api_url = api_url
        self.limiter = RateLimiter(requests_per_second)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.max_retry_wait = max_retry_wait
        self._backoff = wait_exponential_jitter(multiplier=backoff_initial, max=backoff_max)
        self._sleep = sleep
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.credits_spent = 0
        self.requests_made = 0
        self.retries = 0
        self.last_left_lines: int | None = None

    def __repr__(self) -> str:
        return f"SerpstatClient(api_url={self.api_url!r}, token=***)"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SerpstatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- methods -------------------------------------------------------------------------
    def get_ref_domains(
        self,
        query: str,
        search_type: str = "domain_with_subdomains",
        page: int = 1,
        size: int = 1000,
        sort: str = "domain_from",
        order: str = "asc",
        complex_filter: list | None = None,
    ) -> RefDomainsPage:
        """One page of referring domains. An empty result (404 "Empty result!", 32015, 32017) is
        an empty page billed 1 credit; any other error raises."""
        params: dict[str, Any] = {"query": query, "searchType": search_type, "page": page,
                                  "size": size, "sort": sort, "order": order}
        if complex_filter:
            params["complexFilter"] = complex_filter
        try:
            result = self.call(REF_DOMAINS, params)
        except EmptyResult:
            self._account(charge=1, left_lines=None)
            return RefDomainsPage(rows=[], page=page, total=0, left_lines=None, charge=1)
        data = result.get("data")
        summary = result.get("summary_info") or {}
        if not isinstance(data, list):
            raise TransientError(f"Serpstat answered {REF_DOMAINS} without a data list")
        left = _int_or_none(summary.get("left_lines"))
        charge = max(len(data), 1)
        self._account(charge=charge, left_lines=left)
        total = _int_or_none(summary.get("total"))
        if total is None and data:
            # Without the total, the pages to ask for are unknown: taking this page's length would
            # make page 1 a complete snapshot and every donor past it a false LOST.
            raise SerpstatError(f"Serpstat answered {REF_DOMAINS} page {page} without summary_info.total: "
                                "the snapshot cannot be paged completely; run again later", charge=charge)
        return RefDomainsPage(rows=data, page=page, total=total if total is not None else 0,
                              left_lines=left, charge=charge)

    def get_stats(self) -> AccountStats:
        """Account credits (free: getStats spends none)."""
        result = self.call(GET_STATS)
        data = result.get("data") or {}
        left = _int_or_none(data.get("left_lines"))
        with self._lock:
            self.last_left_lines = left
        return AccountStats(_int_or_none(data.get("max_lines")), _int_or_none(data.get("used_lines")), left)

    def call(self, method: str, params: dict | None = None) -> dict:
        """Send one JSON-RPC request, retrying transient failures; returns `result`."""
        request: dict[str, Any] = {"id": next(self._ids), "method": method}
        if params is not None:
            request["params"] = params
        body = orjson.dumps(request)
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_retry_wait),
            wait=self._wait,
            sleep=self._sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, request["id"], body)
        except TransientError as error:
            attempts = retrying.statistics.get("attempt_number", self.max_attempts)
            failure = type(error)(f"Serpstat API still failing after {attempts} attempts ({error}); "
                                  "the API or the network is down: run again later")
        raise failure

    # --- internals -----------------------------------------------------------------------
    def _attempt(self, method: str, request_id: int, body: bytes) -> dict:
        self.limiter.acquire()
        with self._lock:
            self.requests_made += 1
        failure: Exception | None = None
        try:
            response = self._session.post(
                self.api_url, params={"token": self._token}, data=body,
                headers={"Content-Type": "application/json"}, timeout=self.timeout)
        except requests.Timeout:
            failure = TransientError(f"no answer within {self.timeout:g}s")
        except requests.RequestException as error:
            # requests puts the full URL, token included, into its messages: keep the class only.
            failure = TransientError(f"connection failed ({type(error).__name__})")
        if failure is not None:
            raise failure  # outside the except block: no chained exception carries the URL
        return self._parse(method, request_id, response)

    def _parse(self, method: str, request_id: int, response: requests.Response) -> dict:
        status = response.status_code
        if status == 429:
            raise RateLimitError("HTTP 429 rate limited", retry_after=_retry_after(response))
        if status >= 500:
            raise TransientError(f"HTTP {status}", retry_after=_retry_after(response))
        if status != 200:
            raise EndpointError(f"HTTP {status} from api_url {_shown_url(self.api_url)} for {method}: "
                                f"not Serpstat's API; {API_URL_FIX}", code=status)
        try:
            payload = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            raise TransientError("malformed JSON in the answer")
        error = payload.get("error")
        if error or isinstance(error, dict):
            # an error object (even an empty one, even beside a result) is an error, never data;
            # null, false, 0, "" are how some servers say "no error"
            raise self._api_error(method, error)
        if "result" not in payload:
            raise TransientError("answer has neither result nor error")
        if payload.get("id") is not None and str(payload["id"]) != str(request_id):
            raise TransientError("answer id does not match the request id")
        result = payload["result"]
        if not isinstance(result, dict):
            raise TransientError("result is not an object")
        return result

    def _api_error(self, method: str, error: Any) -> SerpstatError:
        """The typed error for an in-body `error`, by code and by message (either may be missing,
        a string, or a code Serpstat documents under another number)."""
        code, message = _error_code_and_message(error)
        said = f"({code} {message})" if message else f"({code})"
        lowered = message.lower()
        # Negative codes (JSON-RPC style, e.g. -32000) are read as Serpstat's positive ones: no
        # source shows Serpstat sending them, clients that mock them mean the same errors, and
        # -32000..-32099 is JSON-RPC's own "server error" range, where a retry is right too.
        number = abs(code) if code is not None else None
        if any(words in lowered for words in DEPTH_CAP_MESSAGES):
            return DepthCapError(f"Serpstat refuses pages beyond its depth cap {said}: "
                                 "split the query with complexFilter", code=code, api_message=message)
        if number in EMPTY_CODES or (number in (404, None) and any(w in lowered for w in EMPTY_MESSAGES)):
            return EmptyResult(f"no data {said}", code=code, api_message=message)
        if number in RATE_LIMIT_CODES or any(words in lowered for words in RATE_LIMIT_MESSAGES):
            return RateLimitError(f"Serpstat rate limit {said}")
        if number in RETRY_CODES:
            return TransientError(f"Serpstat {said}")
        if number == 404 or any(words in lowered for words in WRONG_ENDPOINT_MESSAGES):
            return EndpointError(f"Serpstat answered {said} to {method} at api_url {_shown_url(self.api_url)}: "
                                 f"not a Serpstat API query; {API_URL_FIX}", code=code, api_message=message)
        if number in CREDIT_CODES or number == 402 or "credit" in lowered:
            return CreditsExhaustedError(
                f"Serpstat API credits are exhausted {said}: wait for the next billing period, "
                "buy credits, or lower max_credits_per_run", code=code, api_message=message)
        if number == 403 or "token" in lowered:
            return AuthenticationError(f"Serpstat rejected the request {said}: {TOKEN_FIX}, "
                                       "on a plan with API access", code=code, api_message=message)
        if number in INVALID_CODES:
            return InvalidRequestError(f"Serpstat refused the parameters of {method} {said}: "
                                       "check domains, search_type and complex_filter",
                                       code=code, api_message=message)
        return SerpstatError(f"Serpstat error {said} on {method}", code=code, api_message=message)

    def _account(self, charge: int, left_lines: int | None) -> None:
        with self._lock:
            self.credits_spent += charge
            if left_lines is not None:
                # concurrent answers arrive out of order; the balance only falls during a run
                self.last_left_lines = left_lines if self.last_left_lines is None \
                    else min(self.last_left_lines, left_lines)
            elif self.last_left_lines is not None:
                self.last_left_lines -= charge

    def _wait(self, state: RetryCallState) -> float:
        wait = self._backoff(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        return max(wait, retry_after) if retry_after else wait

    def _log_retry(self, state: RetryCallState) -> None:
        with self._lock:
            self.retries += 1
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitError):
            self.limiter.slow_down()
        logger.info("Serpstat call failed (%s); retry %d in %.1fs", error, state.attempt_number,
                    state.next_action.sleep if state.next_action else 0.0)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_code_and_message(error: Any) -> tuple[int | None, str]:
    """`error` as sent: an object {code, message}, a bare message, or a bare code."""
    if isinstance(error, dict):
        code, message = _int_or_none(error.get("code")), error.get("message")
    elif isinstance(error, (int, float)) and not isinstance(error, bool):
        code, message = _int_or_none(error), None
    else:
        code, message = None, error
    if message is None:
        text = ""
    elif isinstance(message, str):
        text = message
    else:
        text = orjson.dumps(message, default=str).decode()
    return code, redact(text.strip()[:300])


def _shown_url(url: str) -> str:
    """api_url as safe to print: without user info, query or fragment (a proxy's password or a
    token pasted into the URL)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return redact(urlunsplit((parts.scheme, host, parts.path, "", "")) or "''")


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, float):
            return int(value) if value.is_integer() else None
        return int(value)  # ints, and codes or counts sent as strings ("32000", " 7 ")
    except (TypeError, ValueError, OverflowError):
        return None
