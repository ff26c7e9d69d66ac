"""One snapshot's load and its ledger outcome: the rows of a fetch loaded with its ledger and
attempt rows, or, when it failed or was skipped, what it cost and why (docs/data.md).

Why one load per snapshot: dlt commits a load package whole, so a failure mid-extract would drop
every snapshot of the run and their credits would be spent again on rerun. Here a snapshot that
fails is recorded and the others are kept; a crash costs at most the snapshot in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import dlt

from . import ledger
from .constants import STATUS_COMPLETE, STATUS_SUSPECT_EMPTY
from .errors import ServiceUnavailable, SnapshotNotCommitted, first_line, unwrap
from .planning import PlannedSnapshot
from .prefetch import Prefetcher
from .reconnect import finish_pending_loads, is_transient, load_step_failed, reconnecting, retried_jobs
from .recovery import repair_replayed_snapshots
from .results import SnapshotResult, classify
from .rows import describe_nulled
from .run_lock import LockLost
from .source import SCOPED_MERGE_DESTINATIONS, ref_domains_resource
from .warehouse import destination_type, loader_file_format

logger = logging.getLogger(__name__)


def load_snapshot(pipeline: dlt.Pipeline, planned: PlannedSnapshot, fetch: Prefetcher,
                   accept_empty: bool = False, may_write: Callable[[], None] = lambda: None,
                   ) -> tuple[SnapshotResult, str | None]:
    """Fetch and load one snapshot; returns its result and, for errors that doom the rest of the
    run (token, credits), the reason to stop.

    `accept_empty` (--force): a full snapshot that came back empty twice is recorded complete,
    so that a target that really lost every donor shows them as lost. `may_write()` raises once
    the run may no longer write (its lease); asked before each try of a load finished again.

    A load whose connection dropped leaves its package (the rows, the ledger row, the attempt)
    pending: it is finished on a fresh connection and the snapshot is what that load committed
    (`_finish_load`), never reported failed while the database holds it, nor left for the next
    snapshot's run to load in place of that snapshot's rows.
    """
    spec, was_complete = planned.spec, planned.was_complete
    if not was_complete and planned.present:
        # rows of an earlier attempt the ledger does not vouch for: the ledger and the rows must agree
        reconnecting(pipeline, lambda: ledger.delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date))

    def keep(f: Prefetcher) -> bool:
        if accept_empty and f.stats.status == STATUS_SUSPECT_EMPTY:
            f.stats.status = STATUS_COMPLETE
            f.stats.error = "empty on both tries; accepted as empty with --force"
        # A complete snapshot is only ever replaced by a complete one.
        return not was_complete or f.stats.status == STATUS_COMPLETE

    error: BaseException | None = None
    started = time.monotonic()
    try:
        info = pipeline.run(ref_domains_resource([fetch], keep=keep, deduplicate_in_merge=False,
                                                 scoped_merge=destination_type(pipeline) in SCOPED_MERGE_DESTINATIONS),
                            loader_file_format=loader_file_format(pipeline))
    except Exception as raised:  # classified below; every path is recorded
        error = _finish_load(pipeline, spec.key, raised, may_write)
    else:
        if retried_jobs(info):  # a job run again may have written its rows twice
            _repair_replayed(pipeline, spec.key)
    stats = fetch.stats
    logger.info("%s: %s, %d rows, %d credits, %.2fs", spec.key, stats.status, stats.rows_loaded,
                stats.credits_spent, time.monotonic() - started)
    result = SnapshotResult(spec.target, spec.kind, spec.snapshot_date, stats.status, rows=stats.rows_loaded,
                            expected_total=stats.expected_total, credits=stats.credits_spent,
                            requests=stats.requests, error=stats.error,
                            note=describe_nulled(stats.metrics_nulled, stats.nulled_values))
    if error is None:
        if stats.rows_loaded == 0:
            # a delete-insert merge with no staged rows deletes nothing: a snapshot replaced by an
            # empty result loses its old rows here; rows a crash before this left are another
            # pull's, which no model reads and the next plan of the day deletes
            reconnecting(pipeline, lambda: ledger.delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date))
        return result, None
    if isinstance(error, SnapshotNotCommitted):
        result.error = f"ended {stats.status} ({stats.error}); the complete snapshot already loaded is kept"
        ledger.write_outcome(pipeline, [], [ledger.attempt_row(spec, stats, error=result.error, rows_loaded=0)],
                             may_write=may_write)
        return result, None
    status, message, fatal = classify(error)
    result.status, result.error, result.rows = status, message, 0
    if was_complete:
        result.error = f"{message}; the complete snapshot already loaded is kept"
    ledger.record_unloaded(pipeline, spec, stats, status, message, complete_kept=was_complete, may_write=may_write)
    return result, fatal


def _finish_load(pipeline: dlt.Pipeline, key: str, raised: Exception, may_write: Callable[[], None]
                 ) -> BaseException | None:
    """What became of a `pipeline.run` that raised: None when its package was committed after all,
    else the error that decides the snapshot's outcome.

    Failed at the load step, dlt keeps the package pending: every job that committed stays
    committed, and the package is whole (the rows with their ledger and attempt rows). It is loaded
    again on fresh connections (reconnect.finish_pending_loads). If the connection keeps
    dropping, the run stops (ServiceUnavailable) with the package kept for the next run, which
    loads it first (recovery.finish_interrupted_load): reporting the snapshot failed would be
    false once that happens. A package that can never load (a terminal error) is aborted, so no
    later `pipeline.run` loads it in place of its own data, and the snapshot fails as it did.
    """
    if not (load_step_failed(raised) and pipeline.has_pending_data):
        return unwrap(raised)
    logger.warning("%s: its load failed (%s); finishing it on a fresh connection", key,
                   first_line(unwrap(raised)))
    try:
        finish_pending_loads(pipeline, may_write)
    except LockLost:
        raise
    except Exception as error:
        if is_transient(error) or isinstance(error, ServiceUnavailable):
            raise ServiceUnavailable(
                f"the load of {key} could not be finished ({first_line(unwrap(error))}): its package is kept "
                "and the next run loads it first (the snapshot may already read as loaded; that run's report "
                "says so); completed snapshots are kept") from error
        logger.warning("%s: its load cannot finish (%s); the package is aborted", key, first_line(unwrap(error)))
        reconnecting(pipeline, pipeline.abort_packages)
        return unwrap(error)
    _repair_replayed(pipeline, key)
    return None


def _repair_replayed(pipeline: dlt.Pipeline, key: str) -> None:
    """Collapse what a load job run again wrote twice: the snapshot's rows, its attempt row."""
    reconnecting(pipeline, lambda: repair_replayed_snapshots(pipeline))
    reconnecting(pipeline, lambda: ledger.repair_replayed_attempts(pipeline, [key]))


def record_without_fetch(pipeline: dlt.Pipeline, planned: PlannedSnapshot, status: str, reason: str,
                          fetch: Prefetcher | None = None, may_write: Callable[[], None] = lambda: None,
                          ) -> SnapshotResult:
    """A snapshot the run does not load: skipped for budget, or stopped by an error that dooms the
    run. A look-ahead fetch of it may already have sent requests; they are counted and recorded."""
    if fetch is not None:
        fetch.cancel()
    spec = planned.spec
    stats = ledger.record_unfetched(pipeline, spec, fetch.stats if fetch is not None else None, status, reason,
                                    complete_kept=planned.was_complete, present=planned.present,
                                    may_write=may_write)
    return SnapshotResult(spec.target, spec.kind, spec.snapshot_date, status, credits=stats.credits_spent,
                          requests=stats.requests, error=stats.error)
