"""One writer at a time (docs/operations.md, "Locking").

Two locks, both held for a whole run (and for `refdomains alerts` and `refdomains models`, which
write what a run's own alerts and build write):
- the working folder: an exclusive file lock beside this project's dlt working folder for the
  destination and dataset, so two commands never share pending load packages, schema or state;
- the dataset, so two projects or machines never fetch, pay for and load the same snapshots:
  on DuckDB a file lock beside the database; on a warehouse a lease row in the dataset
  (`_refdomains_lock`).

Why a lease and not a database session lock: managed PostgreSQL closes idle sessions, restarts
and fails over, and a session-held lock then either fails the run or silently lets a second run
in. The lease lives in a row, not a session: it is taken by compare-and-swap on a generation
number, renewed every few seconds on a fresh connection, and valid while its renewals keep
coming; time is the server's, so clocks of the machines do not matter. A run checks its lease
before every write (`Lease.check`) and stops when it was taken over or could not be renewed for
longer than the lease lasts: never two writers. A run killed without releasing it blocks the
next for at most LEASE_SECONDS; at once only when its holder is provably this machine and PID
namespace (`host_identity`: hostname, boot id, PID namespace) and its pid is dead. A hostname alone
proves nothing: machines and containers share names (default hostnames, a fixed `hostname:`), and a
pid dead here may be a live run there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlt
from sqlglot import exp

from .constants import PIPELINE_NAME
from .errors import ConcurrentRunError, ServiceUnavailable, first_line
from .warehouse import destination_dialect, destination_type

logger = logging.getLogger(__name__)

LEASE_TABLE = "_refdomains_lock"
# A lease is valid this long after its last renewal; renewals come every RENEW_SECONDS, so a run
# keeps it through several failed renewals (a dropped session, a failover) before it must stop.
LEASE_SECONDS = 120.0
RENEW_SECONDS = 10.0


class LockLost(ServiceUnavailable):
    """This run no longer holds the dataset: another run took it over, or the lease could not be
    renewed for longer than it lasts. The run stops before its next write."""


def _busy(pipeline: dlt.Pipeline, detail: str) -> ConcurrentRunError:
    return ConcurrentRunError(f"another refdomains run is loading into dataset {pipeline.dataset_name!r}: nothing "
                              f"was fetched; run again once it has finished ({detail})")


@contextmanager
def _file_lock(path: str, busy: ConcurrentRunError) -> Iterator[None]:
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Lease:
    """A warehouse dataset's lease, held by this run (see the module's docstring)."""

    def __init__(self, pipeline: dlt.Pipeline, seconds: float = LEASE_SECONDS, renew_every: float = RENEW_SECONDS):
        self.pipeline = pipeline
        self.seconds = seconds
        self.renew_every = renew_every
        self.holder = uuid.uuid4().hex
        self.host, self.pid = host_identity(), os.getpid()
        self.generation: int | None = None
        self._renewed = time.monotonic()
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- SQL -----------------------------------------------------------------------------
    def _read(self, client: Any) -> tuple[str | None, int, str | None, int | None, float | None]:
        """(holder, generation, host, pid, seconds since its renewal by the server's clock)."""
        table = client.make_qualified_table_name(LEASE_TABLE)
        rows = client.execute_sql(f"SELECT holder, generation, host, pid, renewed_at, CURRENT_TIMESTAMP FROM {table} "
                                  "WHERE name = %s", PIPELINE_NAME)
        if not rows:
            return None, 0, None, None, None
        holder, generation, host, pid, renewed, now = max(rows, key=lambda row: int(row[1] or 0))
        age = None if renewed is None or now is None else (_aware(now) - _aware(renewed)).total_seconds()
        return holder, int(generation or 0), host, None if pid is None else int(pid), age

    def _ensure_table(self, client: Any) -> None:
        if not client.has_dataset():
            client.create_dataset()
        table = client.make_qualified_table_name(LEASE_TABLE)
        dialect = destination_dialect(self.pipeline)
        text, integer, stamp = (exp.DataType.build(kind).sql(dialect=dialect)
                                for kind in ("text", "bigint", "timestamptz"))
        client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} (name {text} NOT NULL, holder {text}, "
                           f"generation {integer}, host {text}, pid {integer}, renewed_at {stamp})")
        if not client.execute_sql(f"SELECT 1 FROM {table} WHERE name = %s", PIPELINE_NAME):
            client.execute_sql(f"INSERT INTO {table} (name, generation) VALUES (%s, 0)", PIPELINE_NAME)

    # --- acquire, renew, release ---------------------------------------------------------
    def acquire(self) -> None:
        with self.pipeline.sql_client() as client:
            try:
                self._ensure_table(client)
            except Exception:  # two first runs creating it at once: the other one's table is there now
                self._ensure_table(client)
            holder, generation, host, pid, age = self._read(client)
            if holder is not None and not self._expired(host, pid, age):
                raise _busy(self.pipeline, f"lease held by {_hostname(host)} pid {pid}{self._elsewhere(host)}, "
                                           f"renewed {age or 0:.0f} s ago; it expires "
                                           f"{max(self.seconds - (age or 0), 0):.0f} s after its last renewal")
            table = client.make_qualified_table_name(LEASE_TABLE)
            client.execute_sql(f"UPDATE {table} SET holder = %s, generation = %s, host = %s, pid = %s, "
                               "renewed_at = CURRENT_TIMESTAMP WHERE name = %s AND generation = %s",
                               self.holder, generation + 1, self.host, self.pid, PIPELINE_NAME, generation)
            won, now_generation, *_ = self._read(client)
            if won != self.holder:
                raise _busy(self.pipeline, "another run took the lease at the same moment")
        self.generation = now_generation
        self._renewed = time.monotonic()
        self._thread = threading.Thread(target=self._keep, name="refdomains-lease", daemon=True)
        self._thread.start()

    def _expired(self, host: str | None, pid: int | None, age: float | None) -> bool:
        if age is None or age > self.seconds:
            return True
        # a killed run of this machine and PID namespace: only there does a dead pid prove it
        return host == self.host and pid is not None and not _alive(pid)

    def _elsewhere(self, host: str | None) -> str:
        """A note when the holder has this hostname but is not provably this machine."""
        if host is None or host == self.host or _hostname(host) != _hostname(self.host):
            return ""
        return " (same hostname, another machine, boot or container: its pid cannot be checked from here)"

    def _keep(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.renew()
            except Exception as error:  # a dropped session, a failover: the next renewal tries again
                logger.info("could not renew the lease on dataset %s (%s)", self.pipeline.dataset_name,
                            first_line(error))
            if self._lost is None and time.monotonic() - self._renewed > self.seconds:
                self._lost = f"its lease could not be renewed for {self.seconds:.0f} s"
            if self._lost is not None:
                return

    def renew(self) -> None:
        """Renew the lease on a fresh connection; notes it lost when another run holds it now."""
        with self.pipeline.sql_client() as client:
            table = client.make_qualified_table_name(LEASE_TABLE)
            client.execute_sql(f"UPDATE {table} SET renewed_at = CURRENT_TIMESTAMP "
                               "WHERE name = %s AND holder = %s AND generation = %s",
                               PIPELINE_NAME, self.holder, self.generation)
            holder, generation, host, pid, _ = self._read(client)
        if holder == self.holder and generation == self.generation:
            self._renewed = time.monotonic()
        else:
            self._lost = f"another run took its lease ({_hostname(host)} pid {pid})"

    def check(self) -> None:
        """Before a write: raise LockLost if this run may no longer write."""
        if self._lost is None and time.monotonic() - self._renewed > self.seconds:
            self._lost = f"its lease could not be renewed for {self.seconds:.0f} s"
        if self._lost is not None:
            raise LockLost(f"this run stopped writing to dataset {self.pipeline.dataset_name!r}: {self._lost}; what "
                           "it loaded is kept, and the next run fetches what it did not")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.generation is None or self._lost is not None:
            return
        try:
            with self.pipeline.sql_client() as client:
                client.execute_sql(f"UPDATE {client.make_qualified_table_name(LEASE_TABLE)} SET holder = NULL "
                                   "WHERE name = %s AND holder = %s AND generation = %s",
                                   PIPELINE_NAME, self.holder, self.generation)
        except Exception as error:  # it expires on its own
            logger.warning("could not release the lease on dataset %s (%s): it expires within %.0f s",
                           self.pipeline.dataset_name, first_line(error), self.seconds)


class _NoLease:
    """Where the dataset lock is a file lock: held as long as the process lives."""

    def check(self) -> None:
        return None


def _aware(moment: Any) -> dt.datetime:
    moment = moment if isinstance(moment, dt.datetime) else dt.datetime.fromisoformat(str(moment))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def host_identity() -> str:
    """Who this process's pids belong to: `hostname boot=<id> pidns=<inode>`, the boot id (or
    /etc/machine-id) telling machines and boots apart and the PID namespace's inode containers on
    one machine; the hostname alone where /proc is missing. Stored in the lease row's `host`."""
    name = socket.gethostname()
    boot = None
    for path in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        with contextlib.suppress(OSError):
            with open(path, encoding="ascii", errors="replace") as handle:
                boot = handle.read().strip() or None
        if boot:
            break
    try:
        namespace: int | None = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = None
    if boot is None or namespace is None:
        return name
    return f"{name} boot={boot} pidns={namespace}"


def _hostname(host: str | None) -> str | None:
    """The hostname of a lease row's `host` (an identity from `host_identity`, or a plain name)."""
    return host.split(" ", 1)[0] if host else host


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextmanager
def run_lock(pipeline: dlt.Pipeline) -> Iterator[Lease | _NoLease]:
    """Hold this project's working folder and the destination dataset for one run; yields what
    the run checks before each write. ConcurrentRunError when another run holds either."""
    folder = os.path.join(pipeline.pipelines_dir, f"{PIPELINE_NAME}.lock")
    with _file_lock(folder, _busy(pipeline, f"lock {folder}")):
        if destination_type(pipeline) == "duckdb":
            path = f"{pipeline.sql_client().credentials.database}.lock"
            with _file_lock(path, _busy(pipeline, f"lock {path}")):
                yield _NoLease()
            return
        lease = Lease(pipeline)
        lease.acquire()
        try:
            yield lease
        finally:
            with contextlib.suppress(Exception):
                lease.release()
