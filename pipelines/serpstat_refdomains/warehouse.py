"""The destination: which one, the pipeline on it, one run at a time, and DuckDB's session settings.

DuckDB (a file in the working folder) unless configured otherwise; any dlt destination works,
with PostgreSQL as the tested warehouse (README: Warehouses). Everything here that depends on the
kind of destination asks `destination_type(pipeline)`.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import dlt
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.destination import Destination
from dlt.common.destination.exceptions import DestinationException
from dlt.common.exceptions import DltException
from dlt.common.typing import TLoaderFileFormat
from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseUndefinedRelation

from .config import parse_memory_megabytes
from .constants import (
    DATASET_NAME,
    DEFAULT_DESTINATION,
    DEFAULT_DUCKDB_MEMORY_LIMIT,
    LOAD_MEMORY_MB,
    LOAD_MEMORY_SHARE,
    MIN_DUCKDB_MEMORY_MB,
    PIPELINE_NAME,
    REF_DOMAINS_TABLE,
)
from .errors import ConcurrentRunError, ConfigError, RefdomainsError, ServiceUnavailable, first_line, unwrap

logger = logging.getLogger(__name__)


# --- which destination -------------------------------------------------------------------
def resolve_destination(destination: str | Destination | None) -> Destination:
    """The dlt destination, checked without creating anything; ConfigError if dlt does not know it."""
    if isinstance(destination, Destination):
        return destination
    try:
        resolved = Destination.from_reference(destination or DEFAULT_DESTINATION)
        assert resolved is not None  # None only for no reference at all
    except (DestinationException, ImportError) as error:
        raise ConfigError(f"destination {destination!r} is unknown or not installed "
                          f"({type(error).__name__}): use duckdb, postgres, bigquery, snowflake, "
                          "motherduck, ... and install its dlt extra") from None
    kind = _short_type(resolved.destination_type)
    if kind == "postgres":
        return _passwordless_postgres() or resolved
    if kind == "duckdb":
        return _duckdb_in_working_folder() or resolved
    return resolved


def destination_type(pipeline: dlt.Pipeline) -> str:
    """The pipeline's kind of destination: "duckdb", "postgres", "bigquery", ..."""
    return _short_type(pipeline.destination.destination_type)


# dlt destination type -> the sqlglot dialect its SQL is written in
DIALECTS = {
    "duckdb": "duckdb",
    "motherduck": "duckdb",
    "postgres": "postgres",
    "redshift": "redshift",
    "bigquery": "bigquery",
    "snowflake": "snowflake",
    "mssql": "tsql",
    "synapse": "tsql",
    "databricks": "databricks",
    "clickhouse": "clickhouse",
    "athena": "athena",
}


def destination_dialect(pipeline: dlt.Pipeline) -> str:
    """The sqlglot dialect of the pipeline's destination; ConfigError for one the models cannot target."""
    kind = destination_type(pipeline)
    try:
        return DIALECTS[kind]
    except KeyError:
        raise ConfigError(f"destination {kind!r} has no SQL dialect the models can be written in: use one of "
                          f"{', '.join(sorted(DIALECTS))}") from None


def _short_type(destination_type: str) -> str:
    return destination_type.rsplit(".", 1)[-1]  # dlt names them "dlt.destinations.duckdb"


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
    return Destination.from_reference("duckdb", credentials=os.path.abspath(f"{PIPELINE_NAME}.duckdb"))


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
        configured: Any = dlt.secrets.get("destination.postgres.credentials")
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


# --- the pipeline on it ------------------------------------------------------------------
def make_pipeline(destination: str | Destination | None = None, dataset_name: str | None = None,
                  pipelines_dir: str | None = None) -> dlt.Pipeline:
    """The pipeline `serpstat_refdomains` (this creates its working folder)."""
    return dlt.pipeline(
        pipeline_name=PIPELINE_NAME,
        destination=resolve_destination(destination),
        dataset_name=dataset_name or DATASET_NAME,
        # None is dlt's default (its annotation lacks Optional)
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]
    )


def ensure_snapshot_key_index(pipeline: dlt.Pipeline) -> None:
    """PostgreSQL: an index on ref_domains.snapshot_key, so each snapshot's merge deletes its old
    rows by the key (source.SCOPED_WRITE_DISPOSITION) instead of scanning the whole history. dlt
    creates no secondary indexes; this runs before a run's loads (the first run creates the table,
    the second the index; an existing history gets it on its first run after an upgrade)."""
    if destination_type(pipeline) != "postgres":
        return  # DuckDB filters the key column quickly and an ART index would slow its inserts
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(REF_DOMAINS_TABLE)
            index = client.escape_column_name(f"{REF_DOMAINS_TABLE}_snapshot_key")
            client.execute_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {table} (snapshot_key)")
    except DatabaseUndefinedRelation:
        pass
    except DatabaseTerminalException as error:
        # only the table's owner may index it: a loader role that may write but not own the table
        # still loads correctly, by dlt's slower delete (a scan of the history per snapshot)
        logger.warning("could not create the index %s on %s (%s): loads stay correct but slower; "
                       "create it as the table's owner", f"{REF_DOMAINS_TABLE}_snapshot_key",
                       REF_DOMAINS_TABLE, first_line(unwrap(error)))


def has_column(client, table: str, column: str) -> bool:
    """Whether the dataset's `table` has `column` (a table loaded by an earlier version may not)."""
    found = client.execute_sql(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = %s", client.dataset_name, table, column)
    return bool(found and found[0][0])


def loader_file_format(pipeline: dlt.Pipeline) -> TLoaderFileFormat:
    """Arrow pages load fastest into PostgreSQL as CSV (COPY); elsewhere dlt's default (parquet).

    None is what `Pipeline.run(loader_file_format=None)` defaults to (its default); dlt annotates
    the parameter without Optional, hence the cast."""
    return "csv" if destination_type(pipeline) == "postgres" else cast(TLoaderFileFormat, None)


@contextmanager
def destination_errors(pipeline: dlt.Pipeline) -> Iterator[None]:
    """The destination's failures as one line each: ConfigError when its credentials are missing
    (nothing was fetched), ServiceUnavailable when it cannot be reached or refuses to work (what
    was loaded before stays loaded)."""
    name = pipeline.destination.destination_name
    try:
        yield
    except ConfigurationException as error:
        hint = (" (dlt needs a password field: for trust, peer or .pgpass authentication give an "
                "empty one, postgresql://user:@host:5432/db)" if destination_type(pipeline) == "postgres" else "")
        raise ConfigError(f"destination {name!r} is not configured ({first_line(error)}): set its "
                          f"credentials in .dlt/secrets.toml or DESTINATION__<NAME>__CREDENTIALS{hint}") from None
    except Exception as error:
        if not _is_destination_error(error):
            raise
        raise ServiceUnavailable(
            f"destination {name!r} failed ({first_line(unwrap(error))}): "
            "check that it is reachable and writable, then run again (completed snapshots are kept)"
        ) from error


def _is_destination_error(error: BaseException) -> bool:
    """dlt's destination errors, and the database driver's own (DB-API), which dlt lets through
    when a connection cannot even be opened (matched by name: each driver has its own classes)."""
    if isinstance(error, RefdomainsError):
        return False  # ours already says what failed
    if isinstance(error, (DestinationException, DltException)):
        return True
    return any(cls.__name__ in ("OperationalError", "InterfaceError", "DatabaseError")
               for cls in type(error).__mro__)


# --- one run at a time -------------------------------------------------------------------
@contextmanager
def run_lock(pipeline: dlt.Pipeline) -> Iterator[None]:
    """Hold the destination for one run, so two runs never fetch and pay for the same snapshots.

    DuckDB: an exclusive lock on `<database>.lock` (DuckDB's own file lock is held only while a
    connection is open, so two runs could interleave between their loads). PostgreSQL: a session
    advisory lock named after the dataset. Other destinations: none (schedule one run at a time).
    """
    busy = (f"another refdomains run is loading into dataset {pipeline.dataset_name!r}: nothing was "
            "fetched; run again once it has finished")
    kind = destination_type(pipeline)
    if kind == "duckdb":
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
    elif kind == "postgres":
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


# --- DuckDB's session settings -----------------------------------------------------------
@contextmanager
def duckdb_held_open(pipeline: dlt.Pipeline,
                     memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> Iterator[None]:
    """On DuckDB, keep the database open for the whole run.

    dlt opens and closes the database around every load; closing the last connection
    checkpoints the file, which cost more than the load itself with one load per snapshot. A
    second connection held here keeps DuckDB's instance (shared by every connection to the same
    file in this process) alive, so the file is checkpointed once, at the end. dlt keeps its own
    path-based credentials: handing it this connection instead makes every configuration lookup
    query the database (about 170 lookups a run). Inside a run that already holds it (the run's
    models build) it does nothing.
    """
    if destination_type(pipeline) != "duckdb":
        yield
        return
    credentials = pipeline.sql_client().credentials
    if credentials.external_conn() is not None:  # the user already passed a live connection
        yield
        return
    import duckdb

    database = str(credentials.database)
    if database in _HELD_OPEN:  # the run around this call holds it (build_models inside a run)
        yield
        return
    keeper = duckdb.connect(database)
    _HELD_OPEN.add(database)
    try:
        # DuckDB's buffer pool would otherwise keep every page the run touched (up to 80% of RAM):
        # a run's memory must not grow with its rows or its history. Loads stream on one thread in
        # a quarter of the configured limit; the models build gets all of it (duckdb_for_models).
        # Past the limit DuckDB spills to its temp directory beside the database instead of failing.
        keeper.execute(f"SET memory_limit = '{load_memory_limit(memory_limit)}'")
        _spill_beside(keeper, f"{database}.tmp")
        # One DuckDB thread: a snapshot's copy and merge (55k rows) ran faster on one than on two,
        # and the other core stays with the Python threads fetching the next snapshot.
        keeper.execute("SET threads = 1")
        # DuckDB's allocator (jemalloc, on Linux) keeps what a statement freed until a later one
        # reuses it, so a run's peak held the load's and each model's leftovers at once; its
        # background threads hand freed pages back to the system within a second (a year's table
        # build: 267 MB resident after it, 99 MB with them).
        if keeper.execute("SELECT name FROM duckdb_settings() WHERE name = 'allocator_background_threads'").fetchall():
            keeper.execute("SET allocator_background_threads = true")
        yield
    finally:
        _HELD_OPEN.discard(database)
        keeper.close()


# The DuckDB databases duckdb_held_open holds open in this process.
_HELD_OPEN: set[str] = set()


def _spill_beside(connection, directory: str) -> None:
    """Spill into `directory`. DuckDB refuses to switch the directory once it has spilled there
    ("Cannot switch temporary directory after the current one has been used"), which failed a
    run's models build after its loads had spilled, so a directory already set is left as it is."""
    import duckdb

    if connection.execute("SELECT current_setting('temp_directory')").fetchone() == (directory,):
        return
    try:
        connection.execute("SET temp_directory = ?", [directory])
    except duckdb.NotImplementedException as error:  # this process's instance already spilled elsewhere
        logger.warning("DuckDB keeps spilling where it began (%s), not beside the database", first_line(error))


def load_memory_limit(memory_limit: str) -> str:
    """DuckDB's buffer pool while snapshots load: a quarter of the run's limit, at least 128MB
    (what DuckDB needs for one thread).

    Loads stream (copy, then delete and insert by snapshot key) on one thread, so a small pool
    only costs re-reads, while a large one fills with pages: a 1M-row run peaked 1.28x a 100k one
    at 128MB, 2.27x at 512MB (bench/memory.py)."""
    megabytes = _megabytes(memory_limit)
    return f"{max(LOAD_MEMORY_MB, int(megabytes / LOAD_MEMORY_SHARE))}MB"


def _megabytes(memory_limit: str) -> float:
    megabytes = parse_memory_megabytes(memory_limit)
    assert megabytes is not None  # config.parse_memory_limit validated the setting
    return megabytes


def out_of_duckdb_memory(error: BaseException) -> bool:
    """DuckDB ran out of its memory limit: what it held could not be spilled."""
    import duckdb

    return isinstance(unwrap(error), duckdb.OutOfMemoryException)


def doubled_memory_limit(memory_limit: str) -> str:
    return f"{int(_megabytes(memory_limit) * 2)}MB"


def within_machine_memory(memory_limit: str) -> bool:
    """At most DuckDB's own default limit, 80% of the machine's memory (64GB where it is unknown)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        physical = 80 * 1024
    return _megabytes(memory_limit) <= 0.8 * physical


def duckdb_for_models(pipeline: dlt.Pipeline, memory_limit: str) -> None:
    """On DuckDB, give the models build the run's whole memory limit and the threads it can feed.

    The build runs after the fetching is done, so every core that has the 128MB DuckDB needs for
    a thread gets one (at 64MB, two threads of a join could not pin their blocks and failed
    instead of spilling). Never RESET: in DuckDB 1.5 `RESET memory_limit` reads back as reset but
    leaves the buffer pool at the loads' limit.
    """
    if destination_type(pipeline) != "duckdb":
        return
    threads = max(1, min(os.cpu_count() or 1, int(_megabytes(memory_limit) // MIN_DUCKDB_MEMORY_MB)))
    with pipeline.sql_client() as client:
        # The run's loads are committed but, with the database held open, not yet written to the
        # file: DuckDB holds them as in-memory table data (72 MB after week 2 of the year soak),
        # memory the build cannot evict. Written now, they are file pages it may; the same write
        # would otherwise happen when the run closes the database.
        client.execute_sql("CHECKPOINT")
        client.execute_sql(f"SET memory_limit = '{memory_limit}'")
        client.execute_sql(f"SET threads = {threads}")
