"""DuckDB's side of a run, in one place: the database held open, its memory and threads for the
loads and for the models build, where it spills, and a build that runs out built again with more.

The policy (docs/operations.md, "Memory"):
- `duckdb_memory_limit` (default 256MB, at least 128MB) is what the models build may hold; loads
  stream on one thread in a quarter of it (at least 128MB). Past a limit DuckDB spills to
  `<database>.tmp` instead of failing. A smaller limit is not a smaller need: what a build holds
  that grows with the history (the marts it writes inside its one transaction, the pages it
  reads) fills whatever limit it has, so a low default keeps a year of weekly runs flat.
- DuckDB does not spill every operator: a build that still runs out is rolled back (it is one
  transaction) and built again at twice the limit, up to DuckDB's own default of 80% of the
  machine's memory, with a warning naming the limit that fitted. No setting here can fail a run
  that more memory would have let through.

Everything here is a no-op on other destinations.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dlt

from .errors import ConfigError, first_line, unwrap

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_DUCKDB_MEMORY_LIMIT = "256MB"
# DuckDB's stated minimum per thread (about 125MB): the build gets a thread per this much of the
# limit, up to the cores; also the smallest duckdb_memory_limit accepted.
MIN_DUCKDB_MEMORY_MB = 128
# Loads stream on one thread in this share of the limit, and at least LOAD_MEMORY_MB.
LOAD_MEMORY_SHARE = 4
LOAD_MEMORY_MB = 128

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$", re.IGNORECASE)
_MEMORY_MB = {"KB": 1e-3, "MB": 1.0, "GB": 1e3, "TB": 1e6, "KIB": 1.024e-3, "MIB": 1.048576, "GIB": 1073.741824,
              "TIB": 1099511.627776}


# --- the setting -------------------------------------------------------------------------
def parse_memory_megabytes(value: Any) -> float | None:
    """Megabytes in a DuckDB memory size ("512MB", "2GB", "1.5GiB"); None if it is not one."""
    match = _MEMORY.match(value) if isinstance(value, str) else None
    return float(match.group(1)) * _MEMORY_MB[match.group(2).upper()] if match else None


def parse_memory_limit(value: Any) -> str:
    """`duckdb_memory_limit` in the form DuckDB's SET memory_limit takes; ConfigError if it is not
    a size of at least MIN_DUCKDB_MEMORY_MB."""
    megabytes = parse_memory_megabytes(value)
    match = _MEMORY.match(value) if megabytes is not None else None
    if match is None or megabytes is None or megabytes < MIN_DUCKDB_MEMORY_MB:
        raise ConfigError(f"duckdb_memory_limit {value!r} is not a memory size of at least "
                          f"{MIN_DUCKDB_MEMORY_MB}MB: write e.g. \"{DEFAULT_DUCKDB_MEMORY_LIMIT}\" or \"2GB\"")
    return f"{match.group(1)}{match.group(2).upper()}"


def _megabytes(memory_limit: str) -> float:
    megabytes = parse_memory_megabytes(memory_limit)
    assert megabytes is not None  # parse_memory_limit validated the setting
    return megabytes


def load_memory_limit(memory_limit: str) -> str:
    """DuckDB's buffer pool while snapshots load: a quarter of the run's limit, at least 128MB.
    Loads stream (copy, then delete and insert by snapshot key) on one thread, so a small pool
    costs only re-reads, where a large one fills with pages (bench/memory.py)."""
    return f"{max(LOAD_MEMORY_MB, int(_megabytes(memory_limit) / LOAD_MEMORY_SHARE))}MB"


def doubled_memory_limit(memory_limit: str) -> str:
    return f"{int(_megabytes(memory_limit) * 2)}MB"


def within_machine_memory(memory_limit: str) -> bool:
    """At most DuckDB's own default limit, 80% of the machine's memory (64GB where it is unknown)."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        physical = 80 * 1024
    return _megabytes(memory_limit) <= 0.8 * physical


# --- the database held open for a run ------------------------------------------------------
def _is_duckdb(pipeline: dlt.Pipeline) -> bool:
    return pipeline.destination.destination_type.rsplit(".", 1)[-1] == "duckdb"


# The DuckDB databases held open by this process.
_HELD_OPEN: set[str] = set()


@contextmanager
def duckdb_held_open(pipeline: dlt.Pipeline, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> Iterator[None]:
    """On DuckDB, keep the database open for the whole run, in the loads' memory and threads.

    dlt opens and closes the database around every load, and closing the last connection
    checkpoints the file: with a load per snapshot that cost more than the loads. A second
    connection held here keeps DuckDB's instance (shared by every connection to the file in this
    process) alive, so the file is checkpointed once. dlt keeps its own path-based credentials:
    handing it this connection would make every configuration lookup query the database. Inside
    a run that already holds it (the run's models build) it does nothing.
    """
    if not _is_duckdb(pipeline):
        yield
        return
    credentials = pipeline.sql_client().credentials
    database = str(credentials.database)
    if credentials.external_conn() is not None or database in _HELD_OPEN:  # the user's live connection, or ours
        yield
        return
    import duckdb

    keeper = duckdb.connect(database)
    _HELD_OPEN.add(database)
    try:
        # Without a limit DuckDB's buffer pool keeps every page a run touched (up to 80% of RAM).
        keeper.execute(f"SET memory_limit = '{load_memory_limit(memory_limit)}'")
        _spill_beside(keeper, f"{database}.tmp")
        # One thread: a snapshot's copy and merge is no faster on two, and the other core stays
        # with the threads fetching the next snapshot.
        keeper.execute("SET threads = 1")
        # DuckDB's allocator keeps what a statement freed for the next one; its background threads
        # hand it back to the system, so a run's peak does not hold every statement's leftovers.
        if keeper.execute("SELECT name FROM duckdb_settings() WHERE name = 'allocator_background_threads'").fetchall():
            keeper.execute("SET allocator_background_threads = true")
        yield
    finally:
        _HELD_OPEN.discard(database)
        keeper.close()


def _spill_beside(connection: Any, directory: str) -> None:
    """Spill into `directory`. DuckDB refuses to switch directories once it has spilled ("Cannot
    switch temporary directory after the current one has been used"), so one already set stays."""
    import duckdb

    if connection.execute("SELECT current_setting('temp_directory')").fetchone() == (directory,):
        return
    try:
        connection.execute("SET temp_directory = ?", [directory])
    except duckdb.NotImplementedException as error:  # this process's instance already spilled elsewhere
        logger.warning("DuckDB keeps spilling where it began (%s), not beside the database", first_line(error))


# --- the models build ----------------------------------------------------------------------
def _for_models(pipeline: dlt.Pipeline, memory_limit: str) -> None:
    """Give the models build the whole limit and a thread per 128MB of it, up to the cores (at
    less, two threads of a join could not pin their blocks and failed instead of spilling).
    Never RESET: in DuckDB 1.5 `RESET memory_limit` reads back as reset but leaves the pool at
    the loads' limit."""
    threads = max(1, min(os.cpu_count() or 1, int(_megabytes(memory_limit) // MIN_DUCKDB_MEMORY_MB)))
    with pipeline.sql_client() as client:
        # The run's loads are committed but, with the database held open, still in-memory table
        # data the build could not evict; checkpointed, they are file pages it may.
        client.execute_sql("CHECKPOINT")
        client.execute_sql(f"SET memory_limit = '{memory_limit}'")
        client.execute_sql(f"SET threads = {threads}")


def out_of_duckdb_memory(error: BaseException) -> bool:
    """DuckDB ran out of its memory limit: what it held could not be spilled."""
    import duckdb

    return isinstance(unwrap(error), duckdb.OutOfMemoryException)


def build_within_memory(pipeline: dlt.Pipeline, memory_limit: str, build: Callable[[], T]) -> T:
    """Run `build` (one transaction) with the database held open at the models' settings; on
    DuckDB, a build that runs out of memory is built again at twice the limit, and again, up to
    80% of the machine's memory. Elsewhere `build` runs once, as it is."""
    on_duckdb = _is_duckdb(pipeline)
    with duckdb_held_open(pipeline, memory_limit):
        tried = memory_limit
        while True:
            if on_duckdb:
                _for_models(pipeline, tried)
            started, cpu, before = time.monotonic(), time.process_time(), peak_rss_mb()
            try:
                built = build()
            except Exception as error:
                larger = doubled_memory_limit(tried)
                if not on_duckdb or not out_of_duckdb_memory(error) or not within_machine_memory(larger):
                    raise
                logger.warning("the models build ran out of duckdb_memory_limit %s (%s): building it again with %s",
                               tried, first_line(unwrap(error)), larger)
                tried = larger
                continue
            # the process's peak memory before the build (the loads') and after it: which one grows
            logger.info("models built in %.2fs (%.2fs of CPU); peak RSS %s MB before the build, %s MB after",
                        time.monotonic() - started, time.process_time() - cpu, before, peak_rss_mb())
            if tried != memory_limit:
                logger.warning("the models build fitted in %s: set duckdb_memory_limit to %s to spare the attempts "
                               "at %s", tried, tried, memory_limit)
            return built


def peak_rss_mb() -> int | None:
    """The process's peak resident memory so far, in MB; None where the platform does not say."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 2**20 if sys.platform == "darwin" else peak / 2**10)  # bytes there, KiB on Linux
