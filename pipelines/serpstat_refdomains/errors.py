"""Every error this package raises, under one root, and how to read one out of dlt's wrappers.

Catch `RefdomainsError` for all of them, or a branch for what you care about:

    RefdomainsError
    ├── UsageError            a command-line flag or argument is wrong          (exit 2)
    ├── ConfigError           the configuration is wrong or incomplete          (exit 2)
    ├── ConcurrentRunError    another run holds the destination dataset         (exit 2)
    ├── ServiceUnavailable      Serpstat or the destination cannot be reached     (exit 1)
    ├── InvalidDomain         a name that cannot be a domain
    ├── BudgetExhausted       the run's credit budget cannot cover a request
    ├── SnapshotNotCommitted  a fetch whose result must not replace what is loaded
    ├── ModelGraphError       the SQL models cannot be built as written
    ├── ModelTestFailed       a model's data test found rows that break it; the build was undone
    └── SerpstatError         the Serpstat API or the way to it (code and message as sent)
        ├── AuthenticationError, CreditsExhaustedError, InvalidRequestError, EndpointError
        ├── DepthCapError, EmptyResult
        └── TransientError
            └── RateLimitError

Exit 2 means nothing was fetched and nothing written (docs/operations.md). Every message is
one line, the cause then the fix, and never holds the API token.
"""

from __future__ import annotations

from dlt.common.exceptions import DltException

from .redaction import redact


class RefdomainsError(DltException):
    """Any error of this package. A DltException, like dlt's own helpers' errors, so dlt's traces
    record its attributes (never a secret: messages and attributes are redacted)."""


# --- before anything is fetched: exit 2 -------------------------------------------------
class UsageError(RefdomainsError, ValueError):
    """A command-line flag or argument the command cannot use."""


class ConfigError(RefdomainsError, ValueError):
    """A mistake in the configuration ([sources.serpstat], the destination, its credentials)."""


class ConcurrentRunError(RefdomainsError):
    """Another run is writing to the same destination dataset; this one fetched nothing."""


# --- during a run: exit 1, what was loaded stays loaded ---------------------------------
class ServiceUnavailable(RefdomainsError):
    """Something outside the user's configuration failed (network, destination, disk).

    The message is one line: what failed, then what to do; what was loaded stays loaded."""


class InvalidDomain(RefdomainsError, ValueError):
    """A name that cannot be a domain. The message says why with the offending value; `reason`
    says it without, so rejected rows can be counted by reason."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class BudgetExhausted(RefdomainsError):
    """The run's credit budget (max_credits_per_run or the account balance) cannot cover this."""


class ModelGraphError(RefdomainsError):
    """The SQL files do not form a buildable set: a cycle, an unknown table, a duplicate name, a
    parameter that is not an integer, an incremental model that adds nothing."""


class ModelTestFailed(RefdomainsError):
    """A data test of a model (declared in its doc file) found rows that break it. The build's
    transaction was rolled back: the models are as the previous build left them."""

    def __init__(self, model: str, test: str, count: int, example: str) -> None:
        rows = "1 row breaks it" if count == 1 else f"{count} rows break it"
        super().__init__(f"model {model} fails its data test {test}: {rows}, e.g. {example}")
        self.model, self.test, self.count, self.example = model, test, count, example


class SnapshotNotCommitted(RefdomainsError):
    """Raised at the end of a fetch whose result must not replace what is loaded (a complete
    snapshot is only ever replaced by a complete one)."""

    def __init__(self, status: str) -> None:
        super().__init__(f"snapshot ended {status}; the loaded one is kept")
        self.status = status


# --- the Serpstat API --------------------------------------------------------------------
class SerpstatError(RefdomainsError):
    """Any error from the Serpstat API or the way to it. `code`/`api_message` as the API sent them."""

    def __init__(self, message: str, code: int | None = None, api_message: str | None = None,
                 charge: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.api_message = api_message
        self.charge = charge  # credits the answer was billed although it is an error to us


class AuthenticationError(SerpstatError):
    """The token is missing, wrong, or the plan does not allow this method. Retrying cannot help."""


class CreditsExhaustedError(SerpstatError):
    """The account has no API credits left for this request."""


class DepthCapError(SerpstatError):
    """The page asked for lies beyond the sortable depth (page x size > 60,000)."""


class InvalidRequestError(SerpstatError):
    """The API refused the parameters (query, searchType, complexFilter, ...)."""


class EmptyResult(SerpstatError):
    """Serpstat's way of saying "no data" (an empty page to get_ref_domains, billed 1 credit)."""


class EndpointError(SerpstatError):
    """api_url does not lead to Serpstat's API (HTTP 404, or "Wrong API query!"): a configuration
    error, never an empty result."""


class TransientError(SerpstatError):
    """A failure that may pass (5xx, timeout, dropped connection, bad JSON, rate limit).

    Retried inside the client; raised to callers only once retries are exhausted.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitError(TransientError):
    """Serpstat answered a rate limit (429 or 32000, in the body; or HTTP 429)."""


# --- reading an error --------------------------------------------------------------------
def unwrap(error: BaseException) -> BaseException:
    """What failed, taken out of dlt's wrappers (PipelineStepFailed, ResourceExtractionError,
    DatabaseTransientException): the first of this package's errors on the way in, whose message
    is written for the user; else the innermost exception, whose own words (the database's, a
    library's) name the problem where dlt's wrapper only says which step failed."""
    seen: set[int] = set()
    while not isinstance(error, RefdomainsError) and id(error) not in seen:
        seen.add(id(error))
        inner = (getattr(error, "exception", None) or error.__cause__
                 or getattr(error, "dbapi_exception", None))
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


def first_line(error: BaseException, limit: int = 300) -> str:
    """The error's first line, at most `limit` characters, without any registered secret: dlt's
    wrappers and database drivers put tracebacks and SQL on the lines after it."""
    lines = str(error).strip().splitlines()
    return redact(lines[0].strip()[:limit]) if lines else type(error).__name__
