"""A run: the due snapshots fetched and loaded one at a time (loading.py) under one credit budget
and the run's locks, then the competitors recorded, the models rebuilt and the alerts sent."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.destination import Destination

from . import alerts, competitor_table, ledger, models
from .budget import account_balance, run_budget
from .client import SerpstatClient
from .config import Settings, parse_kind, resolve_settings
from .constants import (
    DEPTH_CAP,
    RUN_KINDS,
    STATUS_FAILED,
    STATUS_SKIPPED_BUDGET,
)
from .duckdb_session import build_within_memory, duckdb_held_open
from .errors import UsageError, first_line, unwrap
from .loading import load_snapshot, record_without_fetch
from .paging import SnapshotFetcher
from .planning import PlannedSnapshot, check_history, check_today, due_snapshots
from .prefetch import Prefetcher, look_ahead
from .progress import Progress
from .reconnect import reconnecting
from .recovery import finish_interrupted_load
from .results import RunReport, already_complete
from .run_lock import run_lock
from .targets import competitor_only
from .warehouse import (
    check_configured,
    destination_errors,
    ensure_snapshot_key_index,
    in_project,
    make_pipeline,
    resolve_destination,
)

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class RunOptions:
    """What one run does, beside the configuration: `refdomains run`'s flags and a few knobs."""

    snapshot_date: dt.date | None = None  # default: today, UTC
    kind: str = "auto"  # auto, full or last_week (docs/operations.md)
    force: bool = False  # refetch the named snapshots already complete; accept a result empty twice
    destination: str | Destination | None = None  # default: DuckDB in the project folder
    dataset_name: str | None = None
    pipelines_dir: str | None = None  # dlt's working folder; default: the project's for the dataset
    build_models: bool = True
    depth_cap: int = DEPTH_CAP
    max_workers: int = 4  # threads sending one snapshot's page requests
    progress: Callable[[SnapshotFetcher], None] | None = None  # default: Progress on stderr
    # the moment Serpstat's index describes: now (the emulator's day in tests and the demo)
    now: dt.datetime | None = None

    def __post_init__(self) -> None:
        parse_kind(self.kind, RUN_KINDS, "--kind", UsageError)

    @property
    def day(self) -> dt.date:
        return self.snapshot_date or (self.now or dt.datetime.now(dt.UTC)).date()


def run(settings: Settings, api_token: str, options: RunOptions | None = None, *,
        client: SerpstatClient | None = None, **flags: Any) -> RunReport:
    """Fetch every due snapshot, each in its own load, and rebuild the models.

    `flags` are RunOptions' fields (`snapshot_date=...`, `kind=...`), alone or over `options`.
    Raises UsageError (nothing fetched, nothing written) for a snapshot date that would file
    today's index under another day; ConfigError when the API refuses the token or the account has
    no credits, found by the free getStats preflight before the destination is touched;
    ServiceUnavailable when Serpstat or the destination cannot be reached (run again later).
    """
    options = RunOptions(**flags) if options is None else dataclasses.replace(options, **flags)
    check_today(options.day, options.now)
    today = (options.now or dt.datetime.now(dt.UTC)).date()
    if options.day > today:
        logger.warning("filing under %s, ahead of today's UTC date %s (today in UTC+14): until %s a run "
                       "without --snapshot-date is refused for these series", options.day, today, options.day)
    resolved = resolve_destination(options.destination)
    check_configured(resolved)
    with (nullcontext(client) if client is not None  # a client passed in stays open
          else SerpstatClient(api_token, api_url=settings.api_url,
                              requests_per_second=settings.requests_per_second)) as client:
        left = account_balance(client)  # before the destination is touched: a bad token writes nothing
        pipeline = make_pipeline(resolved, options.dataset_name, options.pipelines_dir)
        with destination_errors(pipeline), run_lock(pipeline) as lease, \
                duckdb_held_open(pipeline, settings.duckdb_memory_limit):
            return _run(settings, options, client, pipeline, left, lease.check)


def run_configured(options: RunOptions | None = None, *, domains: Sequence[str] | None = None,
                   project_dir: str | None = None, **flags: Any) -> RunReport:
    """Exactly what `refdomains run` does, for code that schedules it (an Airflow task): the
    configuration resolved from the project's .dlt/ and the environment as the command resolves
    it, every setting honoured, the due snapshots loaded, the models built and the alerts sent.

    `flags` are RunOptions' fields, as for `run`; `domains` picks configured domains (with their
    competitors) as `--domain` does; `project_dir` is the folder whose .dlt/ is read and whose
    working folders are used (default: dlt's, DLT_PROJECT_DIR or the working directory). Raises
    UsageError or ConfigError (the command's exit 2: nothing fetched, nothing written) and
    ServiceUnavailable like `run`; `RunReport.failure` is the command's exit 1 and its message.
    """
    options = RunOptions(**flags) if options is None else dataclasses.replace(options, **flags)
    with in_project(project_dir):
        settings, token = resolve_settings(domains_override=list(domains) if domains else None)
        assert token is not None  # resolve_settings requires one
        return run(settings, token, options)


def _run(settings: Settings, options: RunOptions, client: SerpstatClient, pipeline: dlt.Pipeline,
         left: int | None, may_write: Callable[[], None]) -> RunReport:
    """The run inside its locks; `may_write()` raises once this run may no longer write."""
    check_history(reconnecting(pipeline, lambda: ledger.read_ledger(pipeline)), settings, options.day,
                  given=options.snapshot_date is not None)
    may_write()
    finish_interrupted_load(pipeline)
    reconnecting(pipeline, lambda: ensure_snapshot_key_index(pipeline))
    todo, done = reconnecting(pipeline, lambda: due_snapshots(pipeline, settings, options.day, options.kind,
                                                               options.force))
    report = RunReport(results=already_complete(done), competitors=competitor_only(settings.competitors))
    budget = run_budget(settings.max_credits_per_run, left, [p.estimate for p in todo])
    reporter = options.progress or Progress()
    aborted: str | None = None  # why the run stopped fetching, once an error doomed it
    with ThreadPoolExecutor(max_workers=options.max_workers, thread_name_prefix="serpstat-page") as pool:
        def start(planned: PlannedSnapshot) -> Prefetcher:
            return Prefetcher(SnapshotFetcher(client, planned.spec, budget, depth_cap=options.depth_cap,
                                              executor=pool, progress=reporter))

        fetches = look_ahead(todo, [p.estimate for p in todo], budget, start, stopped=lambda: aborted is not None)
        with closing(fetches):
            for planned, fetch in fetches:
                may_write()
                if fetch is not None and (not aborted or fetch.stats.finished_at is not None):
                    # after a stop, only a look-ahead that fetched its snapshot whole: paid for, so loaded
                    try:
                        result, fatal = load_snapshot(pipeline, planned, fetch, accept_empty=options.force,
                                                      may_write=may_write)
                    finally:
                        fetch.cancel()  # a load that failed early must not leave its fetch running
                    aborted = aborted or fatal
                elif aborted:  # a look-ahead may have sent requests before the run stopped: they are recorded
                    result = record_without_fetch(pipeline, planned, STATUS_FAILED, aborted, fetch, may_write)
                else:
                    result = record_without_fetch(
                        pipeline, planned, STATUS_SKIPPED_BUDGET,
                        f"needs about {planned.estimate} credits, {budget.left} left in this run's budget: "
                        "raise max_credits_per_run or run again next period", may_write=may_write)
                report.results.append(result)
        if isinstance(reporter, Progress):
            reporter.done()

    report.credits_spent = budget.spent
    report.credits_left = client.last_left_lines
    may_write()
    competitor_table.record_for_run(pipeline, settings)  # what link_gap and alerts read; never raises
    if options.build_models:
        may_write()
        try:
            report.models_built = bool(build_models(pipeline, settings))
        except Exception as error:  # the snapshots are loaded; say why the models are not
            logger.debug("models build failed", exc_info=True)
            report.models_error = (f"the models could not be rebuilt ({first_line(unwrap(error))}): "
                                   "the snapshots are loaded; fix the cause, then run `refdomains models`")
        if report.models_built:
            may_write()
            report.alerts = alerts.after_run(pipeline, settings)  # never raises
    return report


def build_models(pipeline: dlt.Pipeline, settings: Settings, *, full_refresh: bool = False) -> list[str]:
    """The models build of a run and of `refdomains models`; returns the models built. On DuckDB
    within `duckdb_memory_limit`, built again with more if it runs out (duckdb_session).
    `full_refresh` compares every pair of snapshots again."""
    def build() -> list[str]:
        return models.build(pipeline, lost_confirmation_snapshots=settings.lost_confirmation_snapshots,
                            full_refresh=full_refresh)

    return build_within_memory(pipeline, settings.duckdb_memory_limit, lambda: reconnecting(pipeline, build))
