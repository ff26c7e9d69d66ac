"""A warehouse dataset's run lock is a lease row, not a database session: a managed PostgreSQL that
closes idle sessions, restarts or fails over never fails a run that succeeded, never lets a
second writer in, and never leaves a ledger that disagrees with its rows."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import socket
import threading
import time
import uuid

import dlt
import psycopg2
import psycopg2.errors
import pytest

from serpstat_refdomains.constants import PIPELINE_NAME
from serpstat_refdomains.errors import ConcurrentRunError
from serpstat_refdomains.run_lock import LEASE_TABLE, Lease, LockLost, host_identity
from serpstat_refdomains.warehouse import make_pipeline
from tests.helpers import PG_URL, cli_env, needs_postgres, run_cli

pytestmark = needs_postgres

TERMINATION_ROUNDS = int(os.environ.get("TERMINATION_ROUNDS", "2"))


def database_url(database: str) -> str:
    return PG_URL.rsplit("/", 1)[0] + "/" + database


def database(name: str, *settings: str) -> str:
    """A database of this server for one kind of test (created once), with `settings` (ALTER
    DATABASE ... SET) for every session opened on it."""
    con = psycopg2.connect(PG_URL)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                with contextlib.suppress(psycopg2.errors.DuplicateDatabase):  # another test process made it
                    cur.execute(f"CREATE DATABASE {name}")
            for setting in settings:
                cur.execute(f"ALTER DATABASE {name} SET {setting}")
    finally:
        con.close()
    return database_url(name)


@pytest.fixture(scope="module")
def idle_database():
    """A database whose sessions the server closes after 2 idle seconds, as managed services do."""
    return database("refdomains_idle", "idle_session_timeout = '2s'")


@pytest.fixture(scope="module")
def cut_database():
    """A database of its own whose sessions a test terminates at random (no other test's)."""
    return database("refdomains_cut")


def drop_dataset(url: str, dataset: str) -> None:
    with psycopg2.connect(url) as con, con.cursor() as cur:
        for schema in (dataset, f"{dataset}_staging"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def consistent(url: str, dataset: str) -> None:
    """The ledger agrees with the rows: a complete snapshot holds exactly its pull's rows, once
    (nothing loaded yet agrees too)."""
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
                    "AND table_name IN ('snapshots', 'ref_domains')", (dataset,))
        if cur.fetchone()[0] < 2:
            return
        cur.execute(f'SELECT s.snapshot_key, s.rows_loaded, count(r.ref_domain), count(DISTINCT r.ref_domain) '
                    f'FROM "{dataset}".snapshots s LEFT JOIN "{dataset}".ref_domains r '
                    f'ON r.snapshot_key = s.snapshot_key AND r.pulled_at = s.started_at '
                    f"WHERE s.status = 'complete' GROUP BY 1, 2")
        for key, promised, held, distinct in cur.fetchall():
            assert promised == held == distinct, (key, promised, held, distinct)


def test_a_run_longer_than_the_servers_idle_timeout_exits_0(tmp_path, today_emulator, idle_database):
    """With idle_session_timeout = 2s, a run of several seconds used to load everything, build the
    models and exit 1 ("server closed the connection unexpectedly") on its idle lock session."""
    emulator = today_emulator
    # 15 pages a target at 0.4 s each: over 6 s even when the two targets are fetched at once
    emulator.api.latency = 0.4
    for name in ("slow-a.com", "slow-b.com"):
        emulator.set_profile(name, 1500)
    url, dataset = idle_database, f"idle_{uuid.uuid4().hex[:8]}"
    env = cli_env(tmp_path, emulator, "slow-a.com,slow-b.com", DESTINATION__POSTGRES__CREDENTIALS=url,
                  SOURCES__SERPSTAT__PAGE_SIZE="100")
    try:
        started = time.monotonic()
        done = run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", dataset, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert time.monotonic() - started > 5, "the run outlasted the idle timeout"
        consistent(url, dataset)
    finally:
        drop_dataset(url, dataset)


def test_a_second_run_is_refused_while_the_lease_is_held_and_not_after(tmp_path, today_emulator, pg_dataset):
    emulator = today_emulator
    emulator.set_profile("leased.com", 30)
    pipeline = make_pipeline(dlt.destinations.postgres(PG_URL), pg_dataset, str(tmp_path / "first"))
    lease = Lease(pipeline)
    lease.acquire()
    env = cli_env(tmp_path, emulator, "leased.com", DESTINATION__POSTGRES__CREDENTIALS=PG_URL)
    try:
        done = run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", pg_dataset)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
        assert "another refdomains run is loading into dataset" in done.stderr
        assert f"lease held by {socket.gethostname()} pid {os.getpid()}" in done.stderr
        assert not any(e.method.endswith("getRefDomains") for e in emulator.log)
    finally:
        lease.release()
    assert run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", pg_dataset).returncode == 0
    # a models rebuild replaces the tables a run's build writes: it waits its turn the same way
    lease.acquire()
    try:
        done = run_cli(tmp_path, env, "models", "--destination", "postgres", "--dataset-name", pg_dataset)
        assert done.returncode == 2 and "another refdomains run is loading into dataset" in done.stderr
    finally:
        lease.release()
    done = run_cli(tmp_path, env, "models", "--destination", "postgres", "--dataset-name", pg_dataset)
    assert done.returncode == 0 and done.stdout.startswith("built "), done.stdout + done.stderr


def _lease_row(dataset: str, **values: object) -> None:
    assignments = ", ".join(f"{column} = %s" for column in values)
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        cur.execute(f'UPDATE "{dataset}".{LEASE_TABLE} SET {assignments} WHERE name = %s',
                    (*values.values(), PIPELINE_NAME))


def test_a_lease_taken_over_stops_the_run_before_its_next_write(tmp_path, pg_dataset):
    pipeline = make_pipeline(dlt.destinations.postgres(PG_URL), pg_dataset, str(tmp_path / "p"))
    lease = Lease(pipeline, seconds=5, renew_every=0.2)
    lease.acquire()
    try:
        lease.check()
        _lease_row(pg_dataset, holder="someone-else", generation=lease.generation + 1)  # another run took it
        deadline = time.monotonic() + 5
        with pytest.raises(LockLost, match="another run took its lease"):
            while time.monotonic() < deadline:
                lease.check()
                time.sleep(0.1)
    finally:
        lease.release()


def test_an_expired_lease_or_a_dead_local_holder_is_taken_over_a_live_one_is_not(tmp_path, pg_dataset):
    pipeline = make_pipeline(dlt.destinations.postgres(PG_URL), pg_dataset, str(tmp_path / "p"))
    first = Lease(pipeline)
    first.acquire()
    first._stop.set()  # a run killed: no more renewals, no release
    # renewed moments ago on another machine: held
    _lease_row(pg_dataset, host="elsewhere", pid=1)
    with pytest.raises(ConcurrentRunError, match="lease held by elsewhere pid 1"):
        Lease(pipeline).acquire()
    # not renewed for longer than a lease lasts: expired
    _lease_row(pg_dataset, renewed_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    taken = Lease(pipeline)
    taken.acquire()
    taken._stop.set()
    # held by a process of this machine and PID namespace that is gone: taken at once
    dead = _a_dead_pid()
    _lease_row(pg_dataset, host=host_identity(), pid=dead, renewed_at=dt.datetime.now(dt.UTC))
    again = Lease(pipeline)
    again.acquire()
    again.release()


@pytest.mark.parametrize("holder", [
    f"{socket.gethostname()} boot=00000000-another-machine pidns=4026531836",  # same name, another machine
    f"{socket.gethostname()} boot=BOOT pidns=1",  # this machine, another container (PID namespace)
    socket.gethostname(),  # a row with the hostname alone (an older version): nothing proven
])
def test_a_fresh_lease_of_the_same_hostname_but_another_machine_or_namespace_is_not_taken_over(
        tmp_path, pg_dataset, holder):
    """Two containers named alike (a fixed `hostname:`, `unshare -p`) took the lease from a live
    run renewed 8 s earlier: its pid, dead here, was alive in its own namespace; both paid."""
    pipeline = make_pipeline(dlt.destinations.postgres(PG_URL), pg_dataset, str(tmp_path / "p"))
    first = Lease(pipeline)
    first.acquire()
    first._stop.set()
    boot = host_identity().split("boot=", 1)[-1].split(" ", 1)[0]
    dead = _a_dead_pid()
    _lease_row(pg_dataset, host=holder.replace("BOOT", boot), pid=dead,
               renewed_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=8))
    with pytest.raises(ConcurrentRunError) as refused:
        Lease(pipeline).acquire()
    line = str(refused.value)
    assert f"lease held by {socket.gethostname()} pid {dead} (same hostname, another machine" in line, line
    # once it expires, it is taken
    _lease_row(pg_dataset, renewed_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10))
    taken = Lease(pipeline)
    taken.acquire()
    taken.release()


def test_the_host_identity_tells_machines_and_pid_namespaces_apart():
    identity = host_identity()
    assert identity.split(" ")[0] == socket.gethostname()
    if os.path.exists("/proc/self/ns/pid"):
        assert f"pidns={os.stat('/proc/self/ns/pid').st_ino}" in identity and " boot=" in identity


def _a_dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_sessions_terminated_at_random_never_corrupt_and_a_rerun_completes(tmp_path, today_emulator, cut_database):
    """A thread ends the database's other sessions (pg_terminate_backend) at random moments while
    runs load: a run may fail (one line, exit 1) but never leaves a complete snapshot whose rows
    disagree with its ledger row; a clean rerun then completes everything."""
    emulator = today_emulator
    emulator.api.latency = 0.01
    for name in ("cut-a.com", "cut-b.com", "cut-c.com"):
        emulator.set_profile(name, 700)
    url, dataset = cut_database, f"cut_{uuid.uuid4().hex[:8]}"
    env = cli_env(tmp_path, emulator, "cut-a.com,cut-b.com,cut-c.com", DESTINATION__POSTGRES__CREDENTIALS=url,
                  SOURCES__SERPSTAT__PAGE_SIZE="100")
    rng = random.Random(11)
    try:
        for round_ in range(TERMINATION_ROUNDS):
            stop = threading.Event()
            killer = threading.Thread(target=_terminate_sessions, args=(url, stop, rng), daemon=True)
            killer.start()
            try:
                done = run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", dataset,
                               *(["--force"] if round_ else []), timeout=300)
            finally:
                stop.set()
                killer.join()
            assert done.returncode in (0, 1), done.stderr
            assert "Traceback" not in done.stderr, done.stderr
            consistent(url, dataset)
            rerun = run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", dataset)
            assert rerun.returncode == 0, rerun.stdout + rerun.stderr
            consistent(url, dataset)
    finally:
        drop_dataset(url, dataset)


def _terminate_sessions(url: str, stop: threading.Event, rng: random.Random) -> None:
    con = psycopg2.connect(url)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            while not stop.wait(rng.uniform(0.3, 1.2)):
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    finally:
        con.close()
