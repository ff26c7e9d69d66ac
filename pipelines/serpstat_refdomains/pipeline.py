"""Run orchestration: which snapshots are due, one load per snapshot, the ledger, the budget.

Why one load per snapshot: dlt commits a load package whole, so a failure mid-extract would drop
every target of the run and their credits would be spent again on rerun. Here a snapshot that
fails is recorded and the others are kept; a crash costs at most the snapshot in flight.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import logging
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Callable, Iterator, TextIO

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationException
from dlt.common.exceptions import DltException
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.pipeline.exceptions import PipelineStepFailed

from . import alerts, competitors, models
from . import constants as S
from .budget import Budget, BudgetExhausted
from .client import (
    AuthenticationError,
    CreditsExhaustedError,
    EndpointError,
    InvalidRequestError,
    SerpstatClient,
    SerpstatError,
    TransientError,
    redact,
)
from .config import ConfigError, Settings, Target, parse_memory_megabytes
from .paging import FetchStats, SnapshotFetcher, SnapshotSpec, snapshot_key
from .prefetch import Prefetcher
from .rows import describe_nulled
from .source import (
    SCOPED_MERGE_DESTINATIONS,
    SnapshotNotCommitted,
    attempt_row,
    ledger_row,
    ref_domains_resource,
    snapshots_resource,
)

logger = logging.getLogger(__name__)

ALREADY_COMPLETE = "already_complete"
# Snapshots fetched ahead of the one being loaded, each at most Prefetcher.max_tables batches ahead.
PREFETCH_SNAPSHOTS = 1
OK_STATUSES = {S.STATUS_COMPLETE, S.STATUS_SUSPECT_EMPTY, ALREADY_COMPLETE}


@dataclass
class SnapshotResult:
    """One line of a run's report."""

    target: Target
    kind: str
    snapshot_date: dt.date
    status: str
    rows: int = 0
    expected_total: int = 0
    credits: int = 0
    requests: int = 0
    error: str | None = None
    note: str | None = None  # about rows that loaded, e.g. unusable metric values loaded as NULL


@dataclass
class RunReport:
    results: list[SnapshotResult] = field(default_factory=list)
    credits_spent: int = 0
    credits_left: int | None = None
    models_built: bool = False
    # why the models could not be rebuilt (the snapshots stay loaded); None when they were, or
    # were not asked for
    models_error: str | None = None
    # issue 15: one line per alert channel (what was sent); failures are warnings, never the exit code
    alerts: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if all(r.status in OK_STATUSES for r in self.results) and self.models_error is None else 1


@dataclass(frozen=True)
class LedgerRow:
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


class OperationalError(Exception):
    """Something outside the user's configuration failed (network, destination, disk): exit 1.

    The message is one line: what failed, then what to do; what was loaded stays loaded."""


# --- destination -------------------------------------------------------------------------
def resolve_destination(destination: str | Destination | None) -> Destination:
    """The dlt destination, checked without creating anything; ConfigError if dlt does not know it."""
    if isinstance(destination, Destination):
        return destination
    try:
        resolved = Destination.from_reference(destination or S.DEFAULT_DESTINATION)
    except (DestinationException, ImportError) as error:
        raise ConfigError(f"destination {destination!r} is unknown or not installed "
                          f"({type(error).__name__}): use duckdb, postgres, bigquery, snowflake, "
                          "motherduck, ... and install its dlt extra") from None
    kind = resolved.destination_type.rsplit(".", 1)[-1]
    if kind == "postgres":
        return _passwordless_postgres() or resolved
    if kind == "duckdb":
        return _duckdb_in_working_folder() or resolved
    return resolved


def _duckdb_in_working_folder() -> Destination | None:
    """DuckDB at `serpstat_refdomains.duckdb` in the folder the command runs in, unless configured.

    Left to itself, dlt places a relative DuckDB file in the folder where the pipeline first ran
    (its `initial_cwd`, kept in the global pipelines folder): a project in a second folder, or a
    `refdomains report` run elsewhere, would silently read and write the first folder's database.
    """
    try:
        for key in ("destination.duckdb.credentials", "destination.credentials"):
            if dlt.secrets.get(key) is not None or dlt.config.get(key) is not None:
                return None
    except (ConfigurationException, ValueError, TypeError):
        return None  # dlt's own resolution reports what is wrong
    return Destination.from_reference("duckdb", credentials=os.path.abspath(f"{S.PIPELINE_NAME}.duckdb"))


def _passwordless_postgres() -> Destination | None:
    """PostgreSQL configured without a password (trust, peer or .pgpass authentication).

    dlt's PostgresCredentials requires a password field, so `postgresql://loader@host:5432/db`
    fails as "not configured". libpq reads an empty password as none given (it then asks
    .pgpass, or the server does not ask at all), which is what such a URL means; so the empty
    one is filled in, and only when no password is configured anywhere.
    """
    from dlt.destinations.impl.postgres.configuration import PostgresCredentials

    try:
        if dlt.secrets.get("destination.postgres.credentials.password") is not None:
            return None
        configured = dlt.secrets.get("destination.postgres.credentials")
        credentials = PostgresCredentials()
        if isinstance(configured, str) and configured.strip():
            credentials.parse_native_representation(configured.strip())
        elif isinstance(configured, Mapping) and configured:
            credentials.update(dict(configured))
        else:
            return None
    except (ConfigurationException, ValueError, TypeError):
        return None  # dlt's own resolution reports what is wrong
    if credentials.password is not None or not credentials.host:
        return None
    credentials.password = ""
    return Destination.from_reference("postgres", credentials=credentials)


def make_pipeline(destination: str | Destination | None = None, dataset_name: str | None = None,
                  pipelines_dir: str | None = None) -> dlt.Pipeline:
    """The pipeline `serpstat_refdomains` (this creates its working folder)."""
    return dlt.pipeline(
        pipeline_name=S.PIPELINE_NAME,
        destination=resolve_destination(destination),
        dataset_name=dataset_name or S.DATASET_NAME,
        pipelines_dir=pipelines_dir,
    )


class ConcurrentRunError(ConfigError):
    """Another run is writing to the same destination dataset; this one fetched nothing."""


def _is(pipeline: dlt.Pipeline, destination_type: str) -> bool:
    return pipeline.destination.destination_type.rsplit(".", 1)[-1] == destination_type


@contextmanager
def run_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Hold the destination for one run, so two runs never fetch and pay for the same snapshots.

    DuckDB: an exclusive lock on `<database>.lock` (DuckDB's own file lock is held only while a
    connection is open, so two runs could interleave between their loads). PostgreSQL: a session
    advisory lock named after the dataset. Other destinations: none (schedule one run at a time).
    """
    busy = (f"another refdomains run is loading into dataset {pipeline.dataset_name!r}: nothing was "
            "fetched; run again once it has finished")
    if _is(pipeline, "duckdb"):
        path = pipeline.sql_client().credentials.database
        with open(f"{path}.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConcurrentRunError(f"{busy} (lock {path}.lock)") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    elif _is(pipeline, "postgres"):
        key = f"serpstat_refdomains:{pipeline.dataset_name}"
        with pipeline.sql_client() as client:
            got = client.execute_sql("SELECT pg_try_advisory_lock(hashtext(%s))", key)
            if not got or not got[0][0]:
                raise ConcurrentRunError(busy)
            try:
                yield
            finally:
                client.execute_sql("SELECT pg_advisory_unlock(hashtext(%s))", key)
    else:
        yield


@contextmanager
def _duckdb_held_open(pipeline: dlt.Pipeline,
                      memory_limit: str = S.DEFAULT_DUCKDB_MEMORY_LIMIT) -> Iterator[None]:
    """On DuckDB, keep the database open for the whole run.

    dlt opens and closes the database around every load; closing the last connection
    checkpoints the file, which cost more than the load itself with one load per snapshot. A
    second connection held here keeps DuckDB's instance (shared by every connection to the same
    file in this process) alive, so the file is checkpointed once, at the end. dlt keeps its own
    path-based credentials: handing it this connection instead makes every configuration lookup
    query the database (about 170 lookups a run).
    """
    if not _is(pipeline, "duckdb"):
        yield
        return
    credentials = pipeline.sql_client().credentials
    if credentials.external_conn() is not None:  # the user already passed a live connection
        yield
        return
    import duckdb

    keeper = duckdb.connect(credentials.database)
    # DuckDB's buffer pool would otherwise keep every page the run touched (up to 80% of RAM):
    # a run's memory must not grow with its rows or its history. Loads stream on one thread in
    # a quarter of the configured limit; the models build gets all of it (_build_models). Past the
    # limit DuckDB spills to its temp directory beside the database instead of failing.
    keeper.execute(f"SET memory_limit = '{load_memory_limit(memory_limit)}'")
    keeper.execute("SET temp_directory = ?", [f"{credentials.database}.tmp"])
    # One DuckDB thread: a snapshot's copy and merge (55k rows) ran faster on one than on two,
    # and the other core stays with the Python threads fetching the next snapshot.
    keeper.execute("SET threads = 1")
    try:
        yield
    finally:
        keeper.close()


def load_memory_limit(memory_limit: str) -> str:
    """DuckDB's buffer pool while snapshots load: a quarter of the run's limit, at least 128MB
    (what DuckDB needs for one thread).

    Loads stream (copy, then delete and insert by snapshot key) on one thread, so a small pool
    only costs re-reads, while a large one fills with pages: a 1M-row run peaked 1.28x a 100k one
    at 128MB, 2.27x at 512MB (bench/memory.py)."""
    megabytes = parse_memory_megabytes(memory_limit)
    return f"{max(S.LOAD_MEMORY_MB, int(megabytes / S.LOAD_MEMORY_SHARE))}MB"


def loader_file_format(pipeline: dlt.Pipeline) -> str | None:
    """Arrow pages load fastest into PostgreSQL as CSV (COPY); elsewhere dlt's default (parquet)."""
    return "csv" if _is(pipeline, "postgres") else None


def finish_interrupted_load(pipeline: dlt.Pipeline) -> None:
    """Load what a killed run had already fetched and packaged, before planning.

    Otherwise dlt would load that package in place of the next snapshot's data (and drop the
    latter), and the snapshot it holds would be fetched and paid for again.
    """
    if pipeline.has_pending_data:
        logger.warning("finishing the load that an interrupted run left behind")
        if pipeline.list_normalized_load_packages():
            pipeline.load()  # whole packages first: a broken one below must not cost them
        if pipeline.list_extracted_load_packages():
            try:
                pipeline.normalize()
            except PipelineStepFailed as error:
                # killed while dlt was still writing the package: nothing of it can load, and a
                # snapshot without its ledger row is fetched again anyway
                logger.warning("dropping a package an interrupted run left half-written (%s)",
                               redact(_first_line(_innermost(error))))
                pipeline.abort_packages()
        pipeline.load()
        repair_replayed_snapshots(pipeline)


def repair_replayed_snapshots(pipeline: dlt.Pipeline) -> list[str]:
    """Collapse the rows a replayed load job wrote twice; returns the snapshot keys repaired.

    A job that ran before a crash but was not yet marked done runs again when its package is
    loaded; for ref_domains that copies the rows into staging a second time, and the merge (on
    the snapshot key alone, see source.REF_DOMAINS_HINTS) writes them twice. The copies are
    identical, so DISTINCT restores the snapshot exactly, one key per transaction.
    """
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(S.REF_DOMAINS_TABLE)
            doubled = [row[0] for row in client.execute_sql(
                f"SELECT snapshot_key FROM {table} GROUP BY snapshot_key "
                "HAVING count(*) > count(DISTINCT ref_domain)") or []]
            scratch = client.make_qualified_table_name("_ref_domains_repair")
            for key in doubled:
                logger.warning("%s: rows written twice by a replayed load job; collapsing them", key)
                with client.begin_transaction():
                    client.execute_sql(f"DROP TABLE IF EXISTS {scratch}")
                    client.execute_sql(f"CREATE TABLE {scratch} AS SELECT DISTINCT * FROM {table} "
                                       "WHERE snapshot_key = %s", key)
                    client.execute_sql(f"DELETE FROM {table} WHERE snapshot_key = %s", key)
                    client.execute_sql(f"INSERT INTO {table} SELECT * FROM {scratch}")
                    client.execute_sql(f"DROP TABLE {scratch}")
            return doubled
    except DatabaseUndefinedRelation:
        return []


def read_ledger(pipeline: dlt.Pipeline) -> dict[str, LedgerRow]:
    """The `snapshots` ledger as it is in the destination (the truth, whatever the local state)."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(S.SNAPSHOTS_TABLE)
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
            table = client.make_qualified_table_name(S.SNAPSHOTS_TABLE)
            return list(client.execute_sql(
                f"SELECT snapshot_key, partition_plan FROM {table} WHERE partition_plan IS NOT NULL") or [])
    except DatabaseUndefinedRelation:
        return []
    except DltException:
        return []  # no such column yet


def delete_snapshot_rows(pipeline: dlt.Pipeline, key: str, snapshot_date: dt.date | None = None) -> None:
    """Remove the rows of one snapshot (parameterized). The date, when given, lets the database
    skip the blocks of other days (DuckDB's zone maps) instead of reading the whole history."""
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(S.REF_DOMAINS_TABLE)
            if snapshot_date is None:
                client.execute_sql(f"DELETE FROM {table} WHERE snapshot_key = %s", key)
            else:
                client.execute_sql(f"DELETE FROM {table} WHERE snapshot_date = %s AND snapshot_key = %s",
                                   snapshot_date, key)
    except DatabaseUndefinedRelation:
        pass


def ensure_snapshot_key_index(pipeline: dlt.Pipeline) -> None:
    """PostgreSQL: an index on ref_domains.snapshot_key, so each snapshot's merge deletes its old
    rows by the key (source.SCOPED_WRITE_DISPOSITION) instead of scanning the whole history. dlt
    creates no secondary indexes; this runs before a run's loads (the first run creates the table,
    the second the index; an existing history gets it on its first run after an upgrade)."""
    if not _is(pipeline, "postgres"):
        return  # DuckDB filters the key column quickly and an ART index would slow its inserts
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(S.REF_DOMAINS_TABLE)
            index = client.escape_column_name(f"{S.REF_DOMAINS_TABLE}_snapshot_key")
            client.execute_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {table} (snapshot_key)")
    except DatabaseUndefinedRelation:
        pass


def rows_present(pipeline: dlt.Pipeline, day: dt.date, keys: list[str]) -> dict[str, int]:
    """Rows loaded per snapshot key of one day: one grouped count, restricted to that day (its
    blocks only, however long the history) and to the keys a run may fetch."""
    if not keys:
        return {}
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(S.REF_DOMAINS_TABLE)
            marks = ", ".join(["%s"] * len(keys))
            rows = client.execute_sql(
                f"SELECT snapshot_key, count(*) FROM {table} WHERE snapshot_date = %s "
                f"AND snapshot_key IN ({marks}) GROUP BY snapshot_key", day, *keys)
    except DatabaseUndefinedRelation:
        return {}
    return {row[0]: int(row[1]) for row in rows or []}


# --- planning ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannedSnapshot:
    spec: SnapshotSpec
    existing: LedgerRow | None
    # credits it will likely cost: the size of its series' latest complete pull of the same kind
    estimate: int | None
    # rows of this snapshot in the destination now (they must go unless it stays complete)
    present: int = 0

    @property
    def was_complete(self) -> bool:
        """Complete in the ledger AND with the rows the ledger promises: only then is it kept
        until a complete result replaces it."""
        return (self.existing is not None and self.existing.status == S.STATUS_COMPLETE
                and self.existing.rows_loaded == self.present)


def planned_keys(settings: Settings, day: dt.date) -> list[str]:
    """Every snapshot key a run for `day` may fetch."""
    return [snapshot_key(t.domain, t.search_type, k, day) for t in settings.targets for k in S.KINDS]


def plan_snapshots(settings: Settings, ledger: dict[str, LedgerRow], day: dt.date, kind: str,
                   force: bool, present: dict[str, int] | None = None
                   ) -> tuple[list[PlannedSnapshot], list[SnapshotResult]]:
    """Snapshots to fetch, and those already complete (reported, never paid for again).

    `present` (rows per key, see rows_present) is checked against the ledger: a snapshot recorded
    complete whose rows do not match (a crash between the two tables' merges) is fetched again.
    Without it the ledger is trusted.
    """
    series_rows: dict[tuple, list[LedgerRow]] = {}
    for row in ledger.values():
        series_rows.setdefault((row.target_domain, row.search_type, row.filter_hash), []).append(row)
    todo: list[PlannedSnapshot] = []
    done: list[SnapshotResult] = []
    for target in settings.targets:
        complete = sorted((r for r in series_rows.get((target.domain, target.search_type, settings.filter_hash), [])
                           if r.status == S.STATUS_COMPLETE), key=lambda r: r.snapshot_date)
        previous_full = [r for r in complete if r.snapshot_kind == "full" and r.snapshot_date <= day]
        kinds: list[str] = []
        if kind in ("full", "last_week"):
            kinds = [kind]
        else:
            if not previous_full or (day - previous_full[-1].snapshot_date).days >= settings.full_snapshot_every_days \
                    or previous_full[-1].snapshot_date == day:
                kinds.append("full")
            if settings.fetch_last_week:
                kinds.append("last_week")
        for snapshot_kind in kinds:
            key = snapshot_key(target.domain, target.search_type, snapshot_kind, day)
            existing = ledger.get(key)
            rows_now = existing.rows_loaded if present is None and existing else (present or {}).get(key, 0)
            agrees = existing is not None and existing.rows_loaded == rows_now
            if existing and existing.status == S.STATUS_COMPLETE and not agrees:
                logger.warning("%s: the ledger says complete with %d rows, %d are loaded: fetching it again",
                               key, existing.rows_loaded, rows_now)
            if existing and existing.status == S.STATUS_COMPLETE and existing.filter_hash == settings.filter_hash \
                    and agrees and not force:
                done.append(SnapshotResult(target, snapshot_kind, day, ALREADY_COMPLETE, rows=existing.rows_loaded,
                                           expected_total=existing.expected_total))
                continue
            spec = SnapshotSpec(
                target=target, kind=snapshot_kind, snapshot_date=day, user_filter=settings.complex_filter,
                filter_hash=settings.filter_hash, page_size=settings.page_size,
                previous_rows=previous_full[-1].rows_loaded if previous_full and snapshot_kind == "full" else None,
                **_what_the_ledger_knows([r for r in complete if r.snapshot_kind == snapshot_kind]),
            )
            same_kind = [r for r in complete if r.snapshot_kind == snapshot_kind]
            estimate = max(same_kind[-1].expected_total, 1) if same_kind else None
            todo.append(PlannedSnapshot(spec, existing, estimate, rows_now))
    return todo, done


def _what_the_ledger_knows(same_kind: list[LedgerRow]) -> dict:
    """The latest complete pull of the same kind: its total and leaf partitions (paging.py starts
    from them instead of paying for a root page that would be thrown away)."""
    if not same_kind:
        return {}
    return {"previous_total": same_kind[-1].expected_total, "partition_plan": same_kind[-1].partition_plan}


# --- progress ----------------------------------------------------------------------------
class Progress:
    """Per-snapshot progress: a live line on a terminal; otherwise (cron, CI) a plain line every
    `every` seconds, so a scheduler's log shows a long run is alive without flooding it."""

    def __init__(self, stream: TextIO | None = None, every: float = 15.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = every
        self._last = 0.0

    def __call__(self, fetcher: SnapshotFetcher) -> None:
        stats = fetcher.stats
        line = (f"{fetcher.spec.target} {fetcher.spec.kind}: {stats.rows_loaded} rows, "
                f"{stats.requests} requests, {stats.credits_spent} credits")
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif now - self._last >= self.every:
            self._last = now
            self.stream.write(line + "\n")
            self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


# --- the run -----------------------------------------------------------------------------
def run(
    settings: Settings,
    api_token: str,
    *,
    snapshot_date: dt.date,
    kind: str = "auto",
    force: bool = False,
    destination: str | Any | None = None,
    dataset_name: str | None = None,
    pipelines_dir: str | None = None,
    build_models: bool = True,
    depth_cap: int = S.DEPTH_CAP,
    max_workers: int = 4,
    progress: Callable[[SnapshotFetcher], None] | None = None,
    client: SerpstatClient | None = None,
) -> RunReport:
    """Fetch every due snapshot, each in its own load, and rebuild the models.

    Raises ConfigError (nothing fetched, nothing written) when the API refuses the token or the
    account has no credits, found by the free getStats preflight before the destination is touched;
    OperationalError when Serpstat or the destination cannot be reached (run again later).
    """
    if kind not in S.RUN_KINDS:
        raise ConfigError(f"--kind {kind!r} is unknown: use one of {', '.join(S.RUN_KINDS)}")
    resolved = resolve_destination(destination)
    own_client = client is None
    client = client or SerpstatClient(api_token, api_url=settings.api_url,
                                      requests_per_second=settings.requests_per_second)
    try:
        left = _preflight(client)  # before the destination is touched: a bad token writes nothing
        pipeline = make_pipeline(resolved, dataset_name, pipelines_dir)
        try:
            with run_lock(pipeline), _duckdb_held_open(pipeline, settings.duckdb_memory_limit):
                return _run(settings, client, pipeline, left, snapshot_date, kind, force, build_models,
                            depth_cap, max_workers, progress)
        except ConfigurationException as error:
            hint = (" (dlt needs a password field: for trust, peer or .pgpass authentication give an "
                    "empty one, postgresql://user:@host:5432/db)" if _is(pipeline, "postgres") else "")
            raise ConfigError(f"destination {resolved.destination_name!r} is not configured "
                              f"({_first_line(error)}): set its credentials in .dlt/secrets.toml or "
                              f"DESTINATION__<NAME>__CREDENTIALS{hint}") from None
        except Exception as error:
            # the destination could not be reached or refused to work before or between the
            # snapshots' loads (each snapshot's own failure is recorded, not raised)
            if not _is_destination_error(error):
                raise
            raise OperationalError(
                f"destination {resolved.destination_name!r} failed ({redact(_first_line(_innermost(error)))}): "
                "check that it is reachable and writable, then run again (completed snapshots are kept)"
            ) from error
    finally:
        if own_client:
            client.close()


def _preflight(client: SerpstatClient) -> int | None:
    """The account balance from the free getStats; ConfigError when a run cannot start at all."""
    try:
        stats = client.get_stats()
    except AuthenticationError as error:
        raise ConfigError(str(error)) from None
    except CreditsExhaustedError as error:
        raise ConfigError(f"nothing fetched: {error}") from None
    except TransientError as error:
        raise OperationalError(f"could not reach Serpstat for the credit preflight ({error}): nothing was "
                               "fetched; run again later") from None
    except SerpstatError as error:
        raise ConfigError(f"Serpstat refused the credit preflight ({error}): check api_url") from None
    if stats.left_lines is not None and stats.left_lines <= 0:
        raise ConfigError("Serpstat API credits are exhausted (0 left): wait for the next billing period "
                          "or buy credits")
    return stats.left_lines


def _run(settings: Settings, client: SerpstatClient, pipeline: dlt.Pipeline, left: int | None, day: dt.date,
         kind: str, force: bool, build_models: bool, depth_cap: int, max_workers: int,
         progress: Callable[[SnapshotFetcher], None] | None) -> RunReport:
    finish_interrupted_load(pipeline)
    ensure_snapshot_key_index(pipeline)
    ledger = read_ledger(pipeline)
    present = rows_present(pipeline, day, planned_keys(settings, day))
    todo, done = plan_snapshots(settings, ledger, day, kind, force, present)
    report = RunReport(results=list(done))
    limits = [x for x in (settings.max_credits_per_run, left) if x is not None]
    budget = Budget(min(limits) if limits else None)
    known = [p.estimate for p in todo if p.estimate is not None]
    if left is not None and sum(known) > left:
        logger.warning("Serpstat balance %d is below the estimated need of %d credits: snapshots that do "
                       "not fit are skipped_budget", left, sum(known))

    reporter = progress or Progress()
    aborted: str | None = None
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="serpstat-page") as pool:
        def start(planned: PlannedSnapshot) -> Prefetcher:
            fetcher = SnapshotFetcher(client, planned.spec, budget, depth_cap=depth_cap, executor=pool,
                                      progress=reporter)
            return Prefetcher(fetcher)

        started: dict[int, Prefetcher] = {}
        try:
            for index, planned in enumerate(todo):
                current = started.pop(index, None)
                if aborted and current is not None and current.stats.finished_at is not None:
                    # its look-ahead had fetched it whole before the run stopped: paid for, so loaded
                    try:
                        result, _ = _load_snapshot(pipeline, planned, current, accept_empty=force)
                    finally:
                        current.cancel()
                    report.results.append(result)
                    continue
                if aborted:
                    # a look-ahead may have sent requests before the run stopped: they are recorded
                    report.results.append(_record_without_fetch(pipeline, planned, S.STATUS_FAILED, aborted,
                                                                current))
                    continue
                estimate = planned.estimate
                if current is None and estimate is not None and not budget.fits(estimate):
                    report.results.append(_record_without_fetch(
                        pipeline, planned, S.STATUS_SKIPPED_BUDGET,
                        f"needs about {estimate} credits, {budget.left} left in this run's budget: "
                        "raise max_credits_per_run or run again next period"))
                    continue
                current = current or start(planned)
                # While dlt loads this snapshot, the next ones' requests go out: a rate-limited
                # plan keeps using its whole rate. Under a budget only when they surely fit.
                for ahead in range(index + 1, min(index + 1 + PREFETCH_SNAPSHOTS, len(todo))):
                    if ahead not in started and _may_overlap(budget, estimate, todo[ahead].estimate):
                        started[ahead] = start(todo[ahead])
                try:
                    result, fatal = _load_snapshot(pipeline, planned, current, accept_empty=force)
                finally:
                    current.cancel()  # a load that failed early must not leave its fetch running
                report.results.append(result)
                if fatal:
                    aborted = fatal
                    for ahead in started.values():  # stop the look-ahead now: no more paid requests
                        ahead.cancel()
        finally:
            for prefetcher in started.values():
                prefetcher.cancel()
        if isinstance(reporter, Progress):
            reporter.done()

    report.credits_spent = budget.spent
    report.credits_left = client.last_left_lines
    competitors.record_for_run(pipeline, settings)  # issue 15: what link_gap and alerts read; never raises
    if build_models:
        try:
            report.models_built = _build_models(pipeline, settings)
        except Exception as error:  # noqa: BLE001 - the snapshots are loaded; say why the models are not
            logger.debug("models build failed", exc_info=True)
            report.models_error = (f"the models could not be rebuilt ({redact(_first_line(_innermost(error)))}): "
                                   "the snapshots are loaded; fix the cause, then run `refdomains models`")
        if report.models_built:
            report.alerts = alerts.after_run(pipeline, settings)  # issue 15: never raises
    return report


def _may_overlap(budget: Budget, current: int | None, following: int | None) -> bool:
    """Fetch ahead only when the budget surely holds both: a snapshot started and then skipped for
    budget would waste what it had fetched. Unknown sizes count as a full 60,000-row window."""
    if budget.limit is None:
        return True
    need = (current if current is not None else S.DEPTH_CAP) + (following if following is not None else S.DEPTH_CAP)
    return budget.fits(need)


def _load_snapshot(pipeline: dlt.Pipeline, planned: PlannedSnapshot, fetcher: Prefetcher,
                   accept_empty: bool = False) -> tuple[SnapshotResult, str | None]:
    """Fetch and load one snapshot; returns its result and, for errors that doom the rest of the
    run (token, credits), the reason to stop.

    `accept_empty` (--force): a full snapshot that came back empty twice is recorded complete,
    so that a target that really lost every donor shows them as lost.
    """
    spec = planned.spec
    was_complete = planned.was_complete
    if not was_complete and planned.present:
        # rows of an earlier attempt the ledger does not vouch for: the ledger and the rows must agree
        delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date)

    def keep(f: Prefetcher) -> bool:
        if accept_empty and f.stats.status == S.STATUS_SUSPECT_EMPTY:
            f.stats.status = S.STATUS_COMPLETE
            f.stats.error = "empty on both tries; accepted as empty with --force"
        # A complete snapshot is only ever replaced by a complete one.
        return not was_complete or f.stats.status == S.STATUS_COMPLETE

    error: BaseException | None = None
    started = time.monotonic()
    try:
        scoped = any(_is(pipeline, name) for name in SCOPED_MERGE_DESTINATIONS)
        pipeline.run(ref_domains_resource([fetcher], keep=keep, deduplicate_in_merge=False, scoped_merge=scoped),
                     loader_file_format=loader_file_format(pipeline))
    except Exception as raised:  # noqa: BLE001 - classified below; every path is recorded
        error = _root_cause(raised)
    stats = fetcher.stats
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
            delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date)
        return result, None
    fatal = None
    if isinstance(error, SnapshotNotCommitted):
        result.error = f"ended {stats.status} ({stats.error}); the complete snapshot already loaded is kept"
        _write_ledger(pipeline, [], [attempt_row(spec, stats, error=result.error, rows_loaded=0)])
        return result, None
    if isinstance(error, BudgetExhausted):
        status, message = S.STATUS_SKIPPED_BUDGET, f"{error}: raise max_credits_per_run or run again later"
    elif isinstance(error, CreditsExhaustedError):
        status, message = S.STATUS_SKIPPED_BUDGET, str(error)
        fatal = "Serpstat credits are exhausted"
    elif isinstance(error, AuthenticationError):
        status, message = S.STATUS_FAILED, str(error)
        fatal = "Serpstat refused the token"
    elif isinstance(error, EndpointError):
        status, message = S.STATUS_FAILED, str(error)
        fatal = "api_url does not lead to Serpstat's API"
    elif isinstance(error, (SerpstatError, InvalidRequestError)):
        status, message = S.STATUS_FAILED, str(error)
    elif isinstance(error, (DltException, OSError)):
        status, message = S.STATUS_FAILED, f"loading failed: {redact(_first_line(error))}"
    else:
        status, message = S.STATUS_FAILED, f"{type(error).__name__}: {redact(_first_line(error))}"
    result.status, result.error = status, message
    result.rows = 0
    # Nothing of an aborted fetch is loaded: the ledger and the attempt say so, whatever was fetched.
    unloaded = dataclasses.replace(stats, rows_loaded=0, metrics_nulled=0, nulled_values=Counter(),
                                   finished_at=dt.datetime.now(dt.timezone.utc))
    attempts = [attempt_row(spec, unloaded, status=status, error=message)]
    if not was_complete:
        _write_ledger(pipeline, [ledger_row(spec, unloaded, status=status, error=message)], attempts)
    else:
        result.error = f"{message}; the complete snapshot already loaded is kept"
        _write_ledger(pipeline, [], attempts)
    return result, fatal


def _record_without_fetch(pipeline: dlt.Pipeline, planned: PlannedSnapshot, status: str, reason: str,
                          fetcher: Prefetcher | None = None) -> SnapshotResult:
    """A snapshot the run does not load: skipped for budget, or stopped by an error that dooms the
    run. A look-ahead fetch of it may already have sent requests; they are counted and recorded."""
    spec = planned.spec
    stats = FetchStats(status=status)
    if fetcher is not None:
        fetcher.cancel()
        stats = dataclasses.replace(fetcher.stats, status=status, rows_loaded=0)
    message = (f"not fetched: {reason}" if not stats.requests
               else f"stopped after {stats.requests} requests ({stats.credits_spent} credits): {reason}")
    stats.error, stats.finished_at = message, dt.datetime.now(dt.timezone.utc)
    attempts = [attempt_row(spec, stats)] if stats.requests else []
    if not planned.was_complete:
        if planned.present:
            delete_snapshot_rows(pipeline, spec.key, spec.snapshot_date)  # the ledger will say 0 rows
        _write_ledger(pipeline, [ledger_row(spec, stats)], attempts)
    elif attempts:
        _write_ledger(pipeline, [], attempts)
    return SnapshotResult(spec.target, spec.kind, spec.snapshot_date, status, credits=stats.credits_spent,
                          requests=stats.requests, error=message)


def _write_ledger(pipeline: dlt.Pipeline, rows: list[dict[str, Any]], attempts: list[dict[str, Any]] = ()) -> None:
    try:
        pipeline.run(snapshots_resource(rows, attempts), loader_file_format=loader_file_format(pipeline))
    except Exception as error:  # noqa: BLE001 - the ledger is best effort once the fetch failed
        logger.error("could not record the snapshot outcome in the ledger: %s", redact(_first_line(error)))


def _build_models(pipeline: dlt.Pipeline, settings: Settings) -> bool:
    if _is(pipeline, "duckdb"):
        with pipeline.sql_client() as client:
            # joins over the whole history: the whole configured limit, and every core that has
            # the 128MB DuckDB needs a thread (at 64MB, two threads of a join could not pin their
            # blocks and failed instead of spilling). Never RESET: in DuckDB 1.5 `RESET
            # memory_limit` reads back as reset but leaves the buffer pool at the loads' limit.
            limit = settings.duckdb_memory_limit
            threads = max(1, min(os.cpu_count() or 1, int(parse_memory_megabytes(limit) // S.MIN_DUCKDB_MEMORY_MB)))
            client.execute_sql(f"SET memory_limit = '{limit}'")
            client.execute_sql(f"SET threads = {threads}")
    started, cpu = time.monotonic(), time.process_time()
    built = bool(models.build(pipeline, lost_confirmation_snapshots=settings.lost_confirmation_snapshots))
    logger.info("models built in %.2fs (%.2fs of CPU)", time.monotonic() - started, time.process_time() - cpu)
    return built


def _root_cause(error: BaseException) -> BaseException:
    """The first of our own exceptions inside dlt's wrappers (PipelineStepFailed, ResourceExtractionError)."""
    seen: set[int] = set()
    queue = [error]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (SerpstatError, BudgetExhausted, SnapshotNotCommitted)):
            return current
        for nxt in (getattr(current, "exception", None), current.__cause__, current.__context__):
            if isinstance(nxt, BaseException):
                queue.append(nxt)
    # None of ours: the innermost exception, since dlt's wrappers put the cause after a line break
    return _innermost(error)


def _is_destination_error(error: BaseException) -> bool:
    """dlt's destination errors, and the database driver's own (DB-API), which dlt lets through
    when a connection cannot even be opened."""
    if isinstance(error, (DestinationException, DltException)):
        return True
    return any(cls.__name__ in ("OperationalError", "InterfaceError", "DatabaseError")
               for cls in type(error).__mro__)


def _innermost(error: BaseException) -> BaseException:
    """The deepest cause inside dlt's wrappers (PipelineStepFailed, DatabaseTransientException):
    the database's own words name the problem."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        inner = getattr(error, "exception", None) or error.__cause__ or getattr(error, "dbapi_exception", None)
        if not isinstance(inner, BaseException):
            break
        error = inner
    return error


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__

