"""Run orchestration: the due snapshots fetched and loaded one at a time, under one credit budget.

Why one load per snapshot: dlt commits a load package whole, so a failure mid-extract would drop
every target of the run and their credits would be spent again on rerun. Here a snapshot that
fails is recorded and the others are kept; a crash costs at most the snapshot in flight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.destination import Destination

from . import alerts, competitor_table, ledger, models
from .budget import Budget, account_balance, may_fetch_together, run_budget
from .client import SerpstatClient
from .config import Settings, parse_kind
from .constants import (
    DEPTH_CAP,
    RUN_KINDS,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_SKIPPED_BUDGET,
    STATUS_SUSPECT_EMPTY,
)
from .duckdb_session import build_within_memory, duckdb_held_open
from .errors import SnapshotNotCommitted, UsageError, first_line, unwrap
from .paging import SnapshotFetcher
from .planning import PlannedSnapshot, due_snapshots
from .prefetch import Prefetcher
from .progress import Progress
from .recovery import finish_interrupted_load
from .results import RunReport, SnapshotResult, already_complete, classify
from .rows import describe_nulled
from .run_lock import run_lock
from .source import SCOPED_MERGE_DESTINATIONS, ref_domains_resource
from .warehouse import (
    destination_errors,
    destination_type,
    ensure_snapshot_key_index,
    loader_file_format,
    make_pipeline,
    resolve_destination,
)

logger = logging.getLogger(__name__)

# Snapshots fetched ahead of the one being loaded, each at most Prefetcher.max_tables batches ahead.
PREFETCH_SNAPSHOTS = 1


@dataclass(frozen=True)
class RunOptions:
    """What one run does, beside the configuration: `refdomains run`'s flags and a few knobs."""

    snapshot_date: dt.date
    kind: str = "auto"  # auto, full or last_week (README: Command line)
    force: bool = False  # refetch snapshots already complete; accept a result empty twice
    destination: str | Destination | None = None  # default: DuckDB in the working folder
    dataset_name: str | None = None
    pipelines_dir: str | None = None  # dlt's working folders
    build_models: bool = True
    depth_cap: int = DEPTH_CAP
    max_workers: int = 4  # threads sending one snapshot's page requests
    progress: Callable[[SnapshotFetcher], None] | None = None  # default: Progress on stderr

    def __post_init__(self) -> None:
        parse_kind(self.kind, RUN_KINDS, "--kind", UsageError)


def run(settings: Settings, api_token: str, options: RunOptions | None = None, *,
        client: SerpstatClient | None = None, **flags: Any) -> RunReport:
    """Fetch every due snapshot, each in its own load, and rebuild the models.

    `flags` are RunOptions' fields (`snapshot_date=...`, `kind=...`), alone or over `options`.
    Raises ConfigError (nothing fetched, nothing written) when the API refuses the token or the
    account has no credits, found by the free getStats preflight before the destination is touched;
    ServiceUnavailable when Serpstat or the destination cannot be reached (run again later).
    """
    options = RunOptions(**flags) if options is None else dataclasses.replace(options, **flags)
    resolved = resolve_destination(options.destination)
    with (nullcontext(client) if client is not None  # a client passed in stays open
          else SerpstatClient(api_token, api_url=settings.api_url,
                              requests_per_second=settings.requests_per_second)) as client:
        left = account_balance(client)  # before the destination is touched: a bad token writes nothing
        pipeline = make_pipeline(resolved, options.dataset_name, options.pipelines_dir)
        with destination_errors(pipeline), run_lock(pipeline), \
                duckdb_held_open(pipeline, settings.duckdb_memory_limit):
            return _run(settings, options, client, pipeline, left)


def _run(settings: Settings, options: RunOptions, client: SerpstatClient, pipeline: dlt.Pipeline,
         left: int | None) -> RunReport:
    finish_interrupted_load(pipeline)
    ensure_snapshot_key_index(pipeline)
    todo, done = due_snapshots(pipeline, settings, options.snapshot_date, options.kind, options.force)
    report = RunReport(results=already_complete(done))
    budget = run_budget(settings.max_credits_per_run, left, [p.estimate for p in todo])
    reporter = options.progress or Progress()
    aborted: str | None = None  # why the run stopped fetching, once an error doomed it
    with ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="serpstat-page") as pool:
        def start(planned: PlannedSnapshot) -> Prefetcher:
            return Prefetcher(SnapshotFetcher(client, planned.spec, budget, depth_cap=options.depth_cap,
                                              executor=pool, progress=reporter))

        with closing(_look_ahead(todo, budget, start, stopped=lambda: aborted is not None)) as fetches:
            for planned, fetch in fetches:
                if fetch is not None and (not aborted or fetch.stats.finished_at is not None):
                    # after a stop, only a look-ahead that fetched its snapshot whole: paid for, so loaded
                    try:
                        result, fatal = _load_snapshot(pipeline, planned, fetch, accept_empty=options.force)
                    finally:
                        fetch.cancel()  # a load that failed early must not leave its fetch running
                    aborted = aborted or fatal
                elif aborted:  # a look-ahead may have sent requests before the run stopped: they are recorded
                    result = _record_without_fetch(pipeline, planned, STATUS_FAILED, aborted, fetch)
                else:
                    result = _record_without_fetch(
                        pipeline, planned, STATUS_SKIPPED_BUDGET,
                        f"needs about {planned.estimate} credits, {budget.left} left in this run's budget: "
                        "raise max_credits_per_run or run again next period")
                report.results.append(result)
        if isinstance(reporter, Progress):
            reporter.done()

    report.credits_spent = budget.spent
    report.credits_left = client.last_left_lines
    competitor_table.record_for_run(pipeline, settings)  # what link_gap and alerts read; never raises
    if options.build_models:
        try:
            report.models_built = bool(build_models(pipeline, settings))
        except Exception as error:  # the snapshots are loaded; say why the models are not
            logger.debug("models build failed", exc_info=True)
            report.models_error = (f"the models could not be rebuilt ({first_line(unwrap(error))}): "
                                   "the snapshots are loaded; fix the cause, then run `refdomains models`")
        if report.models_built:
            report.alerts = alerts.after_run(pipeline, settings)  # never raises
    return report


def _look_ahead(todo: list[PlannedSnapshot], budget: Budget, start: Callable[[PlannedSnapshot], Prefetcher],
                stopped: Callable[[], bool]) -> Generator[tuple[PlannedSnapshot, Prefetcher | None], None, None]:
    """Each planned snapshot with its fetch, begun when its turn comes or earlier, as the
    look-ahead of the snapshot before it: while dlt loads one snapshot, the next ones' requests go
    out, so a rate-limited plan keeps using its whole rate.

    The fetch is None when none was begun: the budget cannot cover the snapshot, or the run has
    `stopped()`. Once stopped nothing new begins and the look-aheads are cancelled at once (no
    more paid requests), but still handed out with what they fetched and cost.
    """
    ahead: dict[int, Prefetcher] = {}
    try:
        for index, planned in enumerate(todo):
            fetch = ahead.pop(index, None)
            if fetch is None and not stopped() and (planned.estimate is None or budget.fits(planned.estimate)):
                fetch = start(planned)
            if fetch is not None and not stopped():
                for later in range(index + 1, min(index + 1 + PREFETCH_SNAPSHOTS, len(todo))):
                    if later not in ahead and may_fetch_together(budget, planned.estimate, todo[later].estimate):
                        ahead[later] = start(todo[later])
            yield planned, fetch
            if stopped():
                for waiting in ahead.values():
                    waiting.cancel()
    finally:
        for waiting in ahead.values():
            waiting.cancel()


def _load_snapshot(pipeline: dlt.Pipeline, planned: PlannedSnapshot, fetch: Prefetcher,
                   accept_empty: bool = False) -> tuple[SnapshotResult, str | None]:
    """Fetch and load one snapshot; returns its result and, for errors that doom the rest of the
    run (token, credits), the reason to stop.

    `accept_empty` (--force): a full snapshot that came back empty twice is recorded complete,
    so that a target that really lost every donor shows them as lost.
    """
    spec, was_complete = planned.spec, planned.was_complete
    if not was_complete and planned.present:
        # rows of an earlier attempt the ledger does not vouch for: the ledger and the rows must agree
        ledger.delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date)

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
            # empty result must lose its old rows here (a crash before this is caught by planning)
            ledger.delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date)
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


def _record_without_fetch(pipeline: dlt.Pipeline, planned: PlannedSnapshot, status: str, reason: str,
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


def build_models(pipeline: dlt.Pipeline, settings: Settings, *, full_refresh: bool = False) -> list[str]:
    """The models build of a run and of `refdomains models`; returns the models built. On DuckDB
    within `duckdb_memory_limit`, built again with more if it runs out (duckdb_session).
    `full_refresh` compares every pair of snapshots again."""
    return build_within_memory(pipeline, settings.duckdb_memory_limit, lambda: models.build(
        pipeline, lost_confirmation_snapshots=settings.lost_confirmation_snapshots, full_refresh=full_refresh))
