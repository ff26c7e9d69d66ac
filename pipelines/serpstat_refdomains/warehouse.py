"""The destination: which one, the dlt pipeline on it and its working folder, and how its
failures read (docs/configuration.md, "Destination and dataset"; docs/operations.md).

DuckDB (`serpstat_refdomains.duckdb` in the project folder) unless configured otherwise; any dlt
destination works, with PostgreSQL as the tested warehouse. Everything here that depends on the
kind of destination asks `destination_type(pipeline)`.

Isolation: dlt keeps a pipeline's working state (pending load packages, schema, state) in one
folder per pipeline name, by default shared by every project on the machine. Here each project
folder gets one working folder per destination and dataset, inside the project (`.dlt/pipelines/`),
so nothing one project left is ever read or loaded by another; the data itself, the ledger and
dlt's state live in the destination, so a fresh runner starts from there.
"""

from __future__ import annotations

import hashlib
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

from .constants import (
    DATASET_NAME,
    DEFAULT_DESTINATION,
    PIPELINE_NAME,
    REF_DOMAINS_TABLE,
)
from .errors import ConfigError, RefdomainsError, ServiceUnavailable, first_line, unwrap

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
        return _duckdb_in_project() or resolved
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


def _duckdb_in_project() -> Destination | None:
    """DuckDB at `serpstat_refdomains.duckdb` in the project folder, unless configured.

    Left to itself, dlt places a relative DuckDB file in the folder where the pipeline first ran
    (its `initial_cwd`): a `refdomains report` run elsewhere would silently read another database.
    """
    try:
        for key in ("destination.duckdb.credentials", "destination.credentials"):
            if dlt.secrets.get(key) is not None or dlt.config.get(key) is not None:
                return None
    except (ConfigurationException, ValueError, TypeError):
        return None  # dlt's own resolution reports what is wrong
    return Destination.from_reference("duckdb", credentials=os.path.join(project_dir(), f"{PIPELINE_NAME}.duckdb"))


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
def project_dir() -> str:
    """The project folder: where `.dlt/` is read from (dlt's run dir: DLT_PROJECT_DIR, else the
    working directory)."""
    return os.path.abspath(dlt.current.run_context().run_dir)


@contextmanager
def in_project(folder: str | None) -> Iterator[None]:
    """The block runs as if started in the project `folder` (None: where it is): dlt reads that
    folder's .dlt/ and `project_dir()` names it. DLT_PROJECT_DIR still wins, as for a command."""
    if folder is None:
        yield
        return
    from dlt.common.runtime.run_context import RunContext, switched_run_context

    with switched_run_context(RunContext(os.path.abspath(folder))):
        yield


def working_folder(destination: Destination, dataset_name: str, project: str | None = None) -> str:
    """dlt's pipelines folder for this project's (destination, dataset):
    `<project>/.dlt/pipelines/<kind>__<dataset>__<key>`, the key naming where the data lives (the
    DuckDB file, the server and database), so a changed location starts a folder of its own, which
    restores its state from the destination. With DLT_DATA_DIR set, or a project folder that is
    not writable (a read-only DAG folder), it lies under dlt's data folder, one per project."""
    project = os.path.abspath(project or project_dir())
    identity = "|".join((destination.destination_type, destination.destination_name or "", _data_location(destination),
                         dataset_name))
    name = f"{_short_type(destination.destination_type)}__{dataset_name}__{_digest(identity)}"
    data_dir = os.environ.get("DLT_DATA_DIR")
    if data_dir or not os.access(project, os.W_OK):
        base = data_dir or dlt.current.run_context().data_dir
        return os.path.join(base, "refdomains", _digest(project), name)
    return os.path.join(project, ".dlt", "pipelines", name)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def _data_location(destination: Destination) -> str:
    """Where the destination keeps its data (a path, or host:port/database; never a password);
    empty when its configuration is incomplete (the run then stops on it anyway)."""
    try:
        return destination.configuration(None, accept_partial=True).data_location() or ""
    except Exception:  # any incomplete or unknown configuration: the location is only part of a name
        return ""


def check_configured(destination: Destination) -> None:
    """ConfigError, naming where the credentials go, when the destination's configuration is
    incomplete: found before anything is fetched or a working folder created."""
    try:
        credentials = destination.configuration(None, accept_partial=True).credentials
        missing = credentials is not None and not credentials.is_resolved()
    except ConfigurationException as error:
        raise ConfigError(f"destination {destination.destination_name!r} is not configured ({first_line(error)}): "
                          f"{credentials_hint(destination)}") from None
    if missing:
        raise ConfigError(f"destination {destination.destination_name!r} is not configured (its credentials are "
                          f"missing or incomplete): {credentials_hint(destination)}")


def duckdb_file(destination: Destination) -> str | None:
    """The database file of a DuckDB destination; None for any other."""
    if _short_type(destination.destination_type) != "duckdb":
        return None
    return _data_location(destination) or None


def make_pipeline(destination: str | Destination | None = None, dataset_name: str | None = None,
                  pipelines_dir: str | None = None, project: str | None = None) -> dlt.Pipeline:
    """The pipeline `serpstat_refdomains` on the destination's dataset, in this project's working
    folder for them (`working_folder`) unless `pipelines_dir` says otherwise."""
    resolved = resolve_destination(destination)
    dataset = dataset_name or DATASET_NAME
    return dlt.pipeline(pipeline_name=PIPELINE_NAME, destination=resolved, dataset_name=dataset,
                        pipelines_dir=pipelines_dir or working_folder(resolved, dataset, project))


def open_dataset(destination: str | Destination | None = None, dataset_name: str | None = None) -> Any:
    """The loaded tables and the models, as dlt's dataset: exactly what `refdomains run` writes
    for this project's configuration (the same destination resolution), read-only and without
    touching any working folder."""
    resolved = resolve_destination(destination)
    return dlt.dataset(resolved, dataset_name or DATASET_NAME, schema=PIPELINE_NAME)


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


# --- what the dataset holds ----------------------------------------------------------------
# information_schema keeps names as the warehouse stores them: dlt folds identifiers to lower case
# on DuckDB and PostgreSQL and to upper case on Snowflake, so every lookup folds the same way.
def stored_name(client: Any, name: str) -> str:
    """`name` (a dataset, table or column) as the destination stores it; as it is for a client
    without dlt's capabilities (the models' runner also takes a plain DB-API-like client)."""
    capabilities = getattr(client, "capabilities", None)
    return capabilities.casefold_identifier(name) if capabilities is not None else name


def table_type(client: Any, table: str) -> str | None:
    """"TABLE" or "VIEW" for a table or view of the client's dataset; None if there is none."""
    schema, name = stored_name(client, client.dataset_name), stored_name(client, table)
    rows = client.execute_sql(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = %s AND table_name = %s", schema, name)
    if rows:
        return "VIEW" if "VIEW" in str(rows[0][0]).upper() else "TABLE"
    # information_schema.views is standard SQL too: the Snowflake emulator CI runs (fakesnow) lists
    # views there only, where Snowflake, DuckDB and PostgreSQL list them in both
    views = client.execute_sql(
        "SELECT count(*) FROM information_schema.views WHERE table_schema = %s AND table_name = %s", schema, name)
    return "VIEW" if views and views[0][0] else None


def table_exists(client: Any, table: str) -> bool:
    return table_type(client, table) is not None


def has_column(client: Any, table: str, column: str) -> bool:
    """Whether the dataset's `table` has `column` (a table loaded by an earlier version may not)."""
    found = client.execute_sql(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND column_name = %s", stored_name(client, client.dataset_name), stored_name(client, table),
        stored_name(client, column))
    return bool(found and found[0][0])


def loader_file_format(pipeline: dlt.Pipeline) -> TLoaderFileFormat:
    """Arrow pages load fastest into PostgreSQL as CSV (COPY); elsewhere dlt's default (parquet).

    None is what `Pipeline.run(loader_file_format=None)` defaults to (its default); dlt annotates
    the parameter without Optional, hence the cast."""
    return "csv" if destination_type(pipeline) == "postgres" else cast(TLoaderFileFormat, None)


@contextmanager
def destination_errors(pipeline: dlt.Pipeline, kept: str = "completed snapshots are kept") -> Iterator[None]:
    """The destination's failures as one line each: ConfigError when its credentials are missing
    (nothing was fetched), ServiceUnavailable when it cannot be reached or refuses to work (`kept`
    says what stays as it was)."""
    name = pipeline.destination.destination_name
    where = _data_location(pipeline.destination)
    try:
        yield
    except ConfigurationException as error:
        raise ConfigError(f"destination {name!r} is not configured ({first_line(error)}): "
                          f"{credentials_hint(pipeline.destination)}") from None
    except Exception as error:
        if not _is_destination_error(error):
            raise
        raise ServiceUnavailable(
            f"destination {name!r}{f' at {where}' if where else ''} failed ({first_line(unwrap(error))}): "
            f"check that it runs, accepts connections and lets this user write, then run again ({kept})"
        ) from error


def credentials_hint(destination: Destination) -> str:
    """Where a destination's credentials go, and their form."""
    name = destination.destination_name
    example = {"postgres": "postgresql://loader:password@db.example.com:5432/analytics (for trust, peer or "
                           ".pgpass authentication leave the password empty: postgresql://loader:@host:5432/db)",
               "snowflake": "snowflake://loader:password@account/database?warehouse=wh&role=loader"}.get(
        _short_type(destination.destination_type), "see dlt's documentation of the destination")
    return (f"set [destination.{name}] credentials in .dlt/secrets.toml or the environment variable "
            f"DESTINATION__{name.upper()}__CREDENTIALS, e.g. {example}")


def _is_destination_error(error: BaseException) -> bool:
    """dlt's destination errors, and the database driver's own (DB-API), which dlt lets through
    when a connection cannot even be opened (matched by name: each driver has its own classes)."""
    if isinstance(error, RefdomainsError):
        return False  # ours already says what failed
    if isinstance(error, (DestinationException, DltException)):
        return True
    return any(cls.__name__ in ("OperationalError", "InterfaceError", "DatabaseError")
               for cls in type(error).__mro__)
