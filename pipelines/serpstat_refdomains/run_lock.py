"""One run at a time per destination dataset, so two runs never fetch and pay for the same
snapshots nor interleave their loads (README: Operations, "Locking")."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

import dlt

from .errors import ConcurrentRunError
from .warehouse import destination_type


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
