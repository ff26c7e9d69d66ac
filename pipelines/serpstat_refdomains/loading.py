"""One snapshot's load and its ledger outcome: the rows of a fetch loaded with its ledger and
attempt rows, or, when it failed or was skipped, what it cost and why (docs/data.md).

Why one load per snapshot: dlt commits a load package whole, so a failure mid-extract would drop
every snapshot of the run and their credits would be spent again on rerun. Here a snapshot that
fails is recorded and the others are kept; a crash costs at most the snapshot in flight.
"""

from __future__ import annotations

import logging
import time

import dlt

from . import ledger
from .constants import STATUS_COMPLETE, STATUS_SUSPECT_EMPTY
from .errors import SnapshotNotCommitted, unwrap
from .planning import PlannedSnapshot
from .prefetch import Prefetcher
from .results import SnapshotResult, classify
from .rows import describe_nulled
from .source import SCOPED_MERGE_DESTINATIONS, ref_domains_resource
from .warehouse import destination_type, loader_file_format, reconnecting

logger = logging.getLogger(__name__)


def load_snapshot(pipeline: dlt.Pipeline, planned: PlannedSnapshot, fetch: Prefetcher,
                   accept_empty: bool = False) -> tuple[SnapshotResult, str | None]:
    """Fetch and load one snapshot; returns its result and, for errors that doom the rest of the
    run (token, credits), the reason to stop.

    `accept_empty` (--force): a full snapshot that came back empty twice is recorded complete,
    so that a target that really lost every donor shows them as lost.
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
        pipeline.run(ref_domains_resource([fetch], keep=keep, deduplicate_in_merge=False,
                                          scoped_merge=destination_type(pipeline) in SCOPED_MERGE_DESTINATIONS),
                     loader_file_format=loader_file_format(pipeline))
    except Exception as raised:  # classified below; every path is recorded
        error = unwrap(raised)
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
        ledger.write_outcome(pipeline, [], [ledger.attempt_row(spec, stats, error=result.error, rows_loaded=0)])
        return result, None
    status, message, fatal = classify(error)
    result.status, result.error, result.rows = status, message, 0
    if was_complete:
        result.error = f"{message}; the complete snapshot already loaded is kept"
    ledger.record_unloaded(pipeline, spec, stats, status, message, complete_kept=was_complete)
    return result, fatal


def record_without_fetch(pipeline: dlt.Pipeline, planned: PlannedSnapshot, status: str, reason: str,
                          fetch: Prefetcher | None = None) -> SnapshotResult:
    """A snapshot the run does not load: skipped for budget, or stopped by an error that dooms the
    run. A look-ahead fetch of it may already have sent requests; they are counted and recorded."""
    if fetch is not None:
        fetch.cancel()
    spec = planned.spec
    stats = ledger.record_unfetched(pipeline, spec, fetch.stats if fetch is not None else None, status, reason,
                                    complete_kept=planned.was_complete, present=planned.present)
    return SnapshotResult(spec.target, spec.kind, spec.snapshot_date, status, credits=stats.credits_spent,
                          requests=stats.requests, error=stats.error)
