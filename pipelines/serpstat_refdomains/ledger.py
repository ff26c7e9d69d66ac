"""The snapshots ledger: what was fetched, what it cost, and whether the loaded rows can be trusted.

Tables (docs/data.md):
- `snapshots`: one row per (target_domain, search_type, snapshot_kind, snapshot_date), the
  latest outcome, which always agrees with the snapshot's rows in `ref_domains`;
- `snapshot_attempts`: append-only, one row per fetch attempt, whatever became of it: what each
  attempt cost (a merged ledger row keeps only the latest attempt's credits).

This module is the one place that turns a fetch's `spec.FetchStats` into those rows. It also
writes, reads and repairs them, deletes and counts a snapshot's rows, and runs the queries of
`refdomains report` and `refdomains status`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.exceptions import DltException
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.extract.resource import DltResource

from .constants import ATTEMPTS_TABLE, PULLED_AT, REF_DOMAINS_TABLE, SNAPSHOTS_TABLE
from .contract import ATTEMPTS, SNAPSHOT_KEY, SNAPSHOTS, WRITE_DISPOSITION
from .errors import ServiceUnavailable, first_line, unwrap
from .reconnect import (
    collapse_identical_rows,
    finish_pending_loads,
    is_transient,
    load_step_failed,
    pause_before_try,
    reconnecting,
    retried_jobs,
)
from .rows import describe_nulled
from .spec import FetchStats, SnapshotSpec
from .warehouse import destination_type, has_column, loader_file_format

logger = logging.getLogger(__name__)

SNAPSHOTS_SCHEMA = SNAPSHOTS.arrow_schema
ATTEMPTS_SCHEMA = ATTEMPTS.arrow_schema

# Hints travel with the items: the resource that writes the rows writes these tables too, and
# hints set on a resource would give every table its keys.
SNAPSHOTS_HINTS = dlt.mark.make_hints(
    table_name=SNAPSHOTS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
    primary_key=SNAPSHOT_KEY,
)
# Append: every attempt is a fact of its own (a failed --force of a complete snapshot spends
# credits while the ledger rightly keeps describing the complete one).
ATTEMPTS_HINTS = dlt.mark.make_hints(table_name=ATTEMPTS_TABLE, write_disposition="append")

@dataclass(frozen=True)
class LedgerRow:
    """What planning needs of a ledger row."""

    key: str
    target_domain: str
    search_type: str
    snapshot_kind: str
    snapshot_date: dt.date
    filter_hash: str
    status: str
    rows_loaded: int
    expected_total: int
    partition_plan: str | None = None


# --- a fetch's rows ----------------------------------------------------------------------
def _identity(spec: SnapshotSpec) -> dict[str, Any]:
    """The columns that name a snapshot, in the ledger and in its attempts."""
    return {
        SNAPSHOT_KEY: spec.key,
        "target_domain": spec.target.domain,
        "search_type": spec.target.search_type,
        "snapshot_kind": spec.kind,
        "snapshot_date": spec.snapshot_date,
        "filter_hash": spec.filter_hash,
    }


def ledger_row(spec: SnapshotSpec, stats: FetchStats, status: str | None = None,
               error: str | None = None) -> dict[str, Any]:
    """The ledger row of one fetch. `error` never holds the token: client messages are redacted."""
    reasons = "; ".join(f"{reason} ({n})" for reason, n in stats.reject_reasons.most_common(5))
    message = error if error is not None else stats.error
    if stats.rows_rejected:
        rejected = f"{stats.rows_rejected} rows rejected: {reasons}"
        message = f"{message}; {rejected}" if message else rejected
    nulled = describe_nulled(stats.metrics_nulled, stats.nulled_values)
    if nulled:
        message = f"{message}; {nulled}" if message else nulled
    return {
        **_identity(spec),
        "complex_filter": json.dumps(spec.user_filter) if spec.user_filter else None,
        "status": status or stats.status,
        "expected_total": stats.expected_total,
        "rows_loaded": stats.rows_loaded,
        "requests": stats.requests,
        "credits_spent": stats.credits_spent,
        "credits_left": stats.credits_left,
        "rows_rejected": stats.rows_rejected,
        "metrics_nulled": stats.metrics_nulled,
        "partitions": stats.partitions,
        "partition_plan": stats.partition_plan,
        "started_at": stats.started_at,
        "finished_at": stats.finished_at or dt.datetime.now(dt.UTC),
        "error": message,
    }


def attempt_row(spec: SnapshotSpec, stats: FetchStats, status: str | None = None, error: str | None = None,
                rows_loaded: int | None = None) -> dict[str, Any]:
    """One fetch attempt: what it asked and what it cost, loaded or not."""
    return {
        **_identity(spec),
        "status": status or stats.status,
        "requests": stats.requests,
        "credits_spent": stats.credits_spent,
        "rows_loaded": stats.rows_loaded if rows_loaded is None else rows_loaded,
        "started_at": stats.started_at,
        "finished_at": stats.finished_at or dt.datetime.now(dt.UTC),
        "error": error if error is not None else stats.error,
    }


def outcome_tables(rows: Sequence[dict[str, Any]], attempts: Sequence[dict[str, Any]] = ()) -> Iterator[Any]:
    """Ledger rows, then attempt rows, as Arrow tables marked for their own tables."""
    if rows:
        yield dlt.mark.with_hints(pa.Table.from_pylist(list(rows), schema=SNAPSHOTS_SCHEMA), SNAPSHOTS_HINTS)
    if attempts:
        yield dlt.mark.with_hints(pa.Table.from_pylist(list(attempts), schema=ATTEMPTS_SCHEMA), ATTEMPTS_HINTS)


def snapshots_resource(rows: Sequence[dict[str, Any]], attempts: Sequence[dict[str, Any]] = ()) -> DltResource:
    """Ledger and attempt rows alone: a snapshot that failed or was skipped has no rows to carry them.

    Write dispositions: the ledger merges (delete-insert on `snapshot_key`: one row per snapshot,
    the latest outcome); attempts append. Both go in one load package.
    """
    def outcome() -> Iterator[Any]:
        yield from outcome_tables(rows, attempts)

    # hints travel with the items: the attempts must not get the ledger's keys
    return dlt.resource(outcome, name=SNAPSHOTS_TABLE)


def write_outcome(pipeline: dlt.Pipeline, rows: list[dict[str, Any]],
                  attempts: Sequence[dict[str, Any]] = (), *, may_write: Callable[[], None] = lambda: None,
                  tries: int = 3) -> None:
    """Load ledger and attempt rows of snapshots that load no rows of their own.

    The attempt rows are what the run paid: a dropped connection never loses or doubles them. A
    load that failed at its load step keeps its package (these rows) pending, which is finished on
    a fresh connection (reconnect.finish_pending_loads; its completed jobs are not run again, so
    the appended attempts are not either); one that failed before it is run again. If the
    connection keeps dropping, the run stops (ServiceUnavailable) with the package kept for the
    next run: left pending, the next snapshot's `pipeline.run` would load it in place of its own
    rows. Otherwise best effort: a destination that refuses the rows for good is logged, since the
    fetch they describe has already failed or been skipped.
    """
    if not rows and not attempts:
        return
    finish_pending_loads(pipeline, may_write)  # ours must be loaded, not dropped for a pending package
    keys = sorted({attempt[SNAPSHOT_KEY] for attempt in attempts})
    retried = 1 if destination_type(pipeline) == "duckdb" else tries
    for attempt in range(1, retried + 1):
        may_write()
        try:
            info = pipeline.run(snapshots_resource(rows, attempts), loader_file_format=loader_file_format(pipeline))
            if retried_jobs(info):
                reconnecting(pipeline, lambda: repair_replayed_attempts(pipeline, keys))
            return
        except Exception as error:
            if load_step_failed(error) and pipeline.has_pending_data:
                _finish_outcome(pipeline, error, may_write)
                reconnecting(pipeline, lambda: repair_replayed_attempts(pipeline, keys))
                return
            if attempt == retried or not is_transient(error):  # the ledger is best effort once the fetch failed
                logger.error("could not record the snapshot outcome in the ledger: %s", first_line(error))
                return
            logger.info("the destination connection dropped (%s): recording the outcome again", first_line(error))
            pause_before_try(attempt)


def _finish_outcome(pipeline: dlt.Pipeline, failed: Exception, may_write: Callable[[], None]) -> None:
    """The pending package of a ledger load that failed at its load step: loaded, or kept for the
    next run (the run stops), or, when it can never load, aborted and logged."""
    try:
        finish_pending_loads(pipeline, may_write)
    except ServiceUnavailable:  # the lease lost (run_lock.LockLost), or the package would not finish: as said
        raise
    except Exception as error:
        if is_transient(error):
            raise ServiceUnavailable(
                f"the ledger rows of this run's last snapshot could not be loaded ({first_line(unwrap(error))}): "
                "they are kept and the next run loads them first; completed snapshots are kept") from error
        pipeline.abort_packages()
        logger.error("could not record the snapshot outcome in the ledger: %s (first: %s)",
                     first_line(unwrap(error)), first_line(unwrap(failed)))


def record_unloaded(pipeline: dlt.Pipeline, spec: SnapshotSpec, stats: FetchStats, status: str, error: str,
                    *, complete_kept: bool, may_write: Callable[[], None] = lambda: None) -> None:
    """Record a fetch none of whose rows were loaded, whatever it fetched: its attempt, and its
    ledger row (0 rows, `status`, `error`) unless the complete snapshot already loaded is kept."""
    unloaded = dataclasses.replace(stats, rows_loaded=0, metrics_nulled=0, nulled_values=Counter(),
                                   finished_at=dt.datetime.now(dt.UTC))
    write_outcome(pipeline, [] if complete_kept else [ledger_row(spec, unloaded, status=status, error=error)],
                  [attempt_row(spec, unloaded, status=status, error=error)], may_write=may_write)


def record_unfetched(pipeline: dlt.Pipeline, spec: SnapshotSpec, fetched: FetchStats | None, status: str,
                     reason: str, *, complete_kept: bool, present: int,
                     may_write: Callable[[], None] = lambda: None) -> FetchStats:
    """Record a snapshot the run does not load (skipped, or stopped before its turn) and return
    what was recorded: the attempt if a look-ahead had sent requests (`fetched`), and, unless the
    complete snapshot already loaded is kept, the ledger row, with the `present` rows of an earlier
    attempt deleted to agree with it."""
    stats = FetchStats(status=status) if fetched is None else dataclasses.replace(fetched, status=status,
                                                                                   rows_loaded=0)
    stats.error = (f"not fetched: {reason}" if not stats.requests
                   else f"stopped after {stats.requests} requests ({stats.credits_spent} credits): {reason}")
    stats.finished_at = dt.datetime.now(dt.UTC)
    attempts = [attempt_row(spec, stats)] if stats.requests else []
    if complete_kept:
        write_outcome(pipeline, [], attempts, may_write=may_write)
    else:
        if present:  # the ledger will say 0 rows
            may_write()
            reconnecting(pipeline, lambda: delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date))
        write_outcome(pipeline, [ledger_row(spec, stats)], attempts, may_write=may_write)
    return stats


def repair_replayed_attempts(pipeline: dlt.Pipeline, keys: Sequence[str] | None = None) -> int:
    """Collapse the attempt rows of `keys` (None: of every snapshot) that a load job run again
    wrote twice; returns the rows removed. snapshot_attempts appends: a job whose COPY committed
    while its connection dropped is run again by dlt, and its rows would count the credits twice.
    Two real attempts never agree in every column (their started_at and finished_at), so
    identical rows are one attempt."""
    if keys is not None and not keys:
        return 0
    keys = list(keys or [])
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(ATTEMPTS_TABLE)
            where = f"{SNAPSHOT_KEY} IN ({', '.join(['%s'] * len(keys))})" if keys else "1 = 1"
            counts = client.execute_sql(
                f"SELECT (SELECT count(*) FROM {table} WHERE {where}), "
                f"(SELECT count(*) FROM (SELECT DISTINCT * FROM {table} WHERE {where}) once)", *keys, *keys)
            total, distinct = counts[0] if counts else (0, 0)
            if total == distinct:
                return 0
            logger.warning("attempt rows written twice by a replayed load job: collapsing %d", total - distinct)
            collapse_identical_rows(client, table, where, keys,
                                    client.make_qualified_table_name("_snapshot_attempts_repair"))
            return int(total - distinct)
    except DatabaseUndefinedRelation:
        return 0


# --- reading -----------------------------------------------------------------------------
def read_ledger(pipeline: dlt.Pipeline) -> dict[str, LedgerRow]:
    """The `snapshots` ledger as it is in the destination (the truth, whatever the local state)."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(SNAPSHOTS_TABLE)
            rows = client.execute_sql(
                f"SELECT snapshot_key, target_domain, search_type, snapshot_kind, snapshot_date, "
                f"filter_hash, status, rows_loaded, expected_total FROM {table}")
    except DatabaseUndefinedRelation:
        return {}
    ledger = {}
    for row in rows or []:
        day = row[4] if isinstance(row[4], dt.date) else dt.date.fromisoformat(str(row[4]))
        entry = LedgerRow(row[0], row[1], row[2], row[3], day, row[5], row[6], int(row[7] or 0),
                          int(row[8] or 0))
        ledger[entry.key] = entry
    for key, plan in _partition_plans(pipeline):
        if key in ledger:
            ledger[key] = dataclasses.replace(ledger[key], partition_plan=plan)
    return ledger


def _partition_plans(pipeline: dlt.Pipeline) -> list:
    """(snapshot_key, partition_plan) of partitioned snapshots; none in a ledger written before
    the column existed (dlt adds it with the first partitioned snapshot)."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(SNAPSHOTS_TABLE)
            return list(client.execute_sql(
                f"SELECT snapshot_key, partition_plan FROM {table} WHERE partition_plan IS NOT NULL") or [])
    except DatabaseUndefinedRelation:
        return []
    except DltException:
        return []  # no such column yet


def rows_present(pipeline: dlt.Pipeline, day: dt.date, keys: list[str]) -> dict[str, int]:
    """Rows loaded per snapshot key of one day that belong to the pull its ledger row describes
    (`pulled_at` = `started_at`; rows loaded before `pulled_at` existed count as they are): one
    grouped count, restricted to that day (its blocks only, however long the history) and to the
    keys a run may fetch. Rows of another pull under the ledger row (a load cut between the two
    tables' merges) do not count, so the snapshot is fetched again."""
    if not keys:
        return {}
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(REF_DOMAINS_TABLE)
            ledger = client.make_qualified_table_name(SNAPSHOTS_TABLE)
            marks = ", ".join(["%s"] * len(keys))
            same_pull = ""
            if has_column(client, REF_DOMAINS_TABLE, PULLED_AT):
                same_pull = (f"AND (loaded.{PULLED_AT} IS NULL OR loaded.{PULLED_AT} = (SELECT ledger.started_at "
                             f"FROM {ledger} ledger WHERE ledger.snapshot_key = loaded.snapshot_key)) ")
            rows = client.execute_sql(
                f"SELECT loaded.snapshot_key, count(*) FROM {table} loaded WHERE loaded.snapshot_date = %s "
                f"AND loaded.snapshot_key IN ({marks}) {same_pull}GROUP BY loaded.snapshot_key", day, *keys)
    except DatabaseUndefinedRelation:
        return {}
    return {row[0]: int(row[1]) for row in rows or []}


# --- keeping the rows and the ledger in agreement ----------------------------------------
def delete_rows_of_other_pulls(pipeline: dlt.Pipeline, day: dt.date, keys: list[str]) -> None:
    """Delete the rows of one day's snapshots that belong to another pull than the one their
    ledger row describes: what a replacement cut before its last step left (an empty result that
    replaced a snapshot stopped before its rows were deleted). No model or plan ever reads them;
    gone, the ledger and the rows agree again, at no cost."""
    if not keys:
        return
    try:
        with pipeline.sql_client() as client:
            if not has_column(client, REF_DOMAINS_TABLE, PULLED_AT):
                return
            table = client.make_qualified_table_name(REF_DOMAINS_TABLE)
            ledger = client.make_qualified_table_name(SNAPSHOTS_TABLE)
            marks = ", ".join(["%s"] * len(keys))
            client.execute_sql(
                f"DELETE FROM {table} WHERE snapshot_date = %s AND snapshot_key IN ({marks}) "
                f"AND {PULLED_AT} IS NOT NULL AND EXISTS (SELECT 1 FROM {ledger} ledger "
                f"WHERE ledger.snapshot_key = {table}.snapshot_key AND ledger.started_at <> {table}.{PULLED_AT})",
                day, *keys)
    except DatabaseUndefinedRelation:
        pass


def delete_snapshot_rows(pipeline: dlt.Pipeline, key: str, snapshot_date: dt.date | None = None) -> None:
    """Remove the rows of one snapshot (parameterized). The date, when given, lets the database
    skip the blocks of other days (DuckDB's zone maps) instead of reading the whole history."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(REF_DOMAINS_TABLE)
            if snapshot_date is None:
                client.execute_sql(f"DELETE FROM {table} WHERE snapshot_key = %s", key)
            else:
                client.execute_sql(f"DELETE FROM {table} WHERE snapshot_date = %s AND snapshot_key = %s",
                                   snapshot_date, key)
    except DatabaseUndefinedRelation:
        pass
