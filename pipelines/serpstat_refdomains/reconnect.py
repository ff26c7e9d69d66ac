"""A destination that drops its sessions: a database server closes idle sessions, restarts and
fails over, and a run whose loads all succeeded must not fail for it, nor count a load twice
(docs/operations.md). Work done again on fresh connections, dlt's failed load steps finished
instead of dropped, and the rows a replayed load job wrote twice collapsed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import dlt
from dlt.destinations.exceptions import DatabaseTransientException
from dlt.pipeline.exceptions import PipelineStepFailed

from .errors import ServiceUnavailable, first_line, unwrap
from .warehouse import destination_type

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The first wait before trying a dropped destination again; each later try waits longer, up to
# RETRY_WAIT_MAX_SECONDS (a restart's or failover's length is seconds, not minutes).
RETRY_WAIT_SECONDS = 0.5
RETRY_WAIT_MAX_SECONDS = 2.0


def pause_before_try(attempt: int) -> None:
    """The wait after `attempt` failed on a dropped connection, before the next try."""
    time.sleep(min(RETRY_WAIT_SECONDS * attempt, RETRY_WAIT_MAX_SECONDS))


def reconnecting(pipeline: dlt.Pipeline, work: Callable[[], T], attempts: int = 3) -> T:
    """`work` (idempotent, or one transaction) done again on a fresh connection when the one it
    used dropped: a database server closes sessions, restarts and fails over, and a run whose loads
    all succeeded must not fail on one of its own statements for it. DuckDB, in this process, has
    no connection to lose (and dlt calls its out-of-memory errors transient too): done once."""
    if destination_type(pipeline) == "duckdb":
        return work()
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as error:
            if attempt == attempts or not is_transient(error):
                raise
            logger.info("the destination connection dropped (%s): trying again", first_line(error))
            pause_before_try(attempt)
    raise AssertionError("unreachable")


def is_transient(error: BaseException) -> bool:
    """Whether `error` is a dropped connection (or another failure dlt calls transient) somewhere in
    dlt's wrappers: what a fresh connection may not meet again."""
    return isinstance(unwrap_transient(error), DatabaseTransientException)


def load_step_failed(error: BaseException) -> bool:
    """Whether `error` is dlt's run failing at its load step: the data was extracted and packaged,
    and the package may now be pending (see `finish_pending_loads`)."""
    return isinstance(error, PipelineStepFailed) and error.step == "load"


def retried_jobs(info: Any) -> bool:
    """Whether a load (dlt's LoadInfo) ran a job again after a failure: a job whose commit reached
    the database while its connection dropped has then written its rows twice (an append, or a
    staging table the merge copies from)."""
    for package in getattr(info, "load_packages", None) or []:
        for job in package.jobs.get("completed_jobs", []):
            if job.job_file_info.retry_count:
                return True
    return False


def finish_pending_loads(pipeline: dlt.Pipeline, may_write: Callable[[], None] = lambda: None,
                         attempts: int = 8) -> bool:
    """Load the packages a failed load step left pending, on fresh connections, trying again while
    the connection keeps dropping; True when there were any (they are loaded now).

    dlt keeps the package of a load that failed, and the next `pipeline.run` loads that package
    *instead of* the data passed to it, which it drops ("will not be extracted"): a run never calls
    `pipeline.run` with a package pending, or it would report and pay for one snapshot and load
    another. `may_write()` is asked before each try (the run's lease). Raises the last error when
    the packages cannot be loaded (a terminal error at once; a dropped connection after `attempts`
    tries, some 12 s: a restart's or failover's length, well within the lease): they stay
    pending, and only the caller knows whether to keep them for the next run
    (recovery.finish_interrupted_load) or abort them. DuckDB, in this process, is tried once.
    """
    if not pipeline.has_pending_data:
        return False
    tries = 1 if destination_type(pipeline) == "duckdb" else attempts
    for attempt in range(1, tries + 1):
        may_write()
        try:
            if pipeline.list_extracted_load_packages():
                pipeline.normalize()
            pipeline.load()
        except Exception as error:
            if attempt == tries or not is_transient(error):
                raise
            logger.info("the destination connection dropped while loading (%s): trying again",
                        first_line(unwrap(error)))
            pause_before_try(attempt)
            continue
        if not pipeline.has_pending_data:
            return True
        pause_before_try(attempt)  # dlt left jobs to retry without raising: load them again
    raise ServiceUnavailable(f"destination {pipeline.destination.destination_name!r} did not finish loading a "
                             f"package after {tries} tries: it is kept, and the next run loads it")


def unwrap_transient(error: BaseException) -> BaseException:
    """The first dlt database error on the way into `error`'s causes (dlt wraps them in its step
    errors), else the error itself."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, DatabaseTransientException):
            return current
        seen.add(id(current))
        current = getattr(current, "exception", None) or current.__cause__
    return error


def collapse_identical_rows(client: Any, table: str, where: str, args: Sequence[Any], scratch: str) -> None:
    """Rows of `table` matching `where` made distinct, in one transaction: a load job run again
    (its commit reached the database while its connection dropped) wrote them twice, and two
    copies of one job's rows are identical in every column. `table` and `scratch` are qualified."""
    with client.begin_transaction():
        client.execute_sql(f"DROP TABLE IF EXISTS {scratch}")
        client.execute_sql(f"CREATE TABLE {scratch} AS SELECT DISTINCT * FROM {table} WHERE {where}", *args)
        client.execute_sql(f"DELETE FROM {table} WHERE {where}", *args)
        client.execute_sql(f"INSERT INTO {table} SELECT * FROM {scratch}")
        client.execute_sql(f"DROP TABLE {scratch}")
