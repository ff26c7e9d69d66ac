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
from tests.helpers import PG_URL, cli_env, drop_dataset, needs_postgres, pg_url_of, run_cli, run_pipeline

pytestmark = needs_postgres

# `make test` terminates sessions through one run; `make chaos` through more (TERMINATION_ROUNDS)
TERMINATION_ROUNDS = int(os.environ.get("TERMINATION_ROUNDS", "1"))


def database_url(database: str) -> str:
    return pg_url_of(database)


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


@pytest.fixture(autouse=True)
def short_retry_waits():
    """The tries on a dropped destination wait 0.5 s, 1 s, then 2 s each (a failover's length):
    these tests count the tries and check what they leave, so they wait a hundredth of that (a
    patch of its own, which a test's `monkeypatch.undo()` leaves in place)."""
    from serpstat_refdomains import reconnect

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reconnect, "RETRY_WAIT_SECONDS", 0.005)
        patch.setattr(reconnect, "RETRY_WAIT_MAX_SECONDS", 0.02)
        yield


@pytest.fixture(scope="module")
def idle_database():
    """A database whose sessions the server closes after 2 idle seconds, as managed services do."""
    return database("refdomains_idle", "idle_session_timeout = '2s'")


@pytest.fixture(scope="module")
def cut_database():
    """A database of its own whose sessions a test terminates at random (no other test's; a name of
    its own in TERMINATION_DATABASE for trials run side by side)."""
    return database(os.environ.get("TERMINATION_DATABASE", "refdomains_cut"))


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
        drop_dataset(dataset, url)


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
    disagree with its ledger row; what it prints and its exit code are what the database holds (a
    forced refetch printed complete is the pull loaded, one printed failed left the previous one);
    every credit paid is in snapshot_attempts once; a clean rerun then completes everything."""
    emulator = today_emulator
    emulator.api.latency = 0.1
    names = ("cut-a.com", "cut-b.com", "cut-c.com")
    rng = random.Random(int(os.environ.get("TERMINATION_SEED", "11")))
    for name in names:
        emulator.set_profile(name, rng.randint(1300, 2700))
    url, dataset = cut_database, f"cut_{uuid.uuid4().hex[:8]}"
    env = cli_env(tmp_path, emulator, ",".join(names), DESTINATION__POSTGRES__CREDENTIALS=url,
                  SOURCES__SERPSTAT__PAGE_SIZE="100")
    try:
        for round_ in range(TERMINATION_ROUNDS):
            before = _ledger_rows(url, dataset)
            charged = emulator.api.credits_charged
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
            _printed_is_held(done, before, _ledger_rows(url, dataset))
            if "error:" not in done.stderr:  # the run went to its end: what it paid is recorded
                assert _attempt_credits(url, dataset) == emulator.api.credits_charged, (round_, done.stdout)
                assert f"credits spent: {emulator.api.credits_charged - charged}," in done.stdout, done.stdout
            rerun = run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", dataset)
            assert rerun.returncode == 0, rerun.stdout + rerun.stderr
            consistent(url, dataset)
            assert _attempt_credits(url, dataset) <= emulator.api.credits_charged
    finally:
        drop_dataset(dataset, url)


def _ledger_rows(url: str, dataset: str) -> dict[str, tuple]:
    """target_domain -> (status, rows_loaded, started_at) of the dataset's ledger (empty before the first load)."""
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = 'snapshots'",
                    (dataset,))
        if not cur.fetchone():
            return {}
        cur.execute(f'SELECT target_domain, status, rows_loaded, started_at FROM "{dataset}".snapshots')
        held = {row[0]: tuple(row[1:]) for row in cur.fetchall()}
    con.close()
    return held


def _attempt_credits(url: str, dataset: str) -> int:
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute(f'SELECT coalesce(sum(credits_spent), 0) FROM "{dataset}".snapshot_attempts')
        credits = int(cur.fetchone()[0])
    con.close()
    return credits


def _printed_is_held(done, before: dict[str, tuple], after: dict[str, tuple]) -> None:
    """Each line `refdomains run` printed says what the ledger holds now, and the exit code agrees."""
    lines = done.stdout.splitlines()
    results = []
    for line in lines[1:]:
        cells = line.split()
        if len(cells) < 6 or not cells[-1].isdigit() or not cells[-2].isdigit():
            break
        results.append((cells[0], cells[-3], int(cells[-2])))
    if not results:  # stopped before its report (one line on stderr): exit 1
        assert done.returncode == 1 and "error:" in done.stderr, done.stdout + done.stderr
        return
    for target, status, rows in results:
        held = after.get(target)
        if status in ("complete", "suspect_empty"):  # loaded by this run: the new pull
            assert held is not None and held[:2] == (status, rows), (target, status, rows, held, done.stdout)
            assert target not in before or held[2] != before[target][2], (target, "the previous pull", done.stdout)
        elif status == "already_complete":
            assert held is not None and held[:2] == ("complete", rows), (target, held, done.stdout)
        elif before.get(target, (None,))[0] == "complete":  # a forced refetch not committed: the previous one kept
            assert held == before[target], (target, status, held, before[target], done.stdout)
        else:
            assert held is not None and held[:2] == (status, 0), (target, status, held, done.stdout)
    ok = all(status in ("complete", "suspect_empty", "already_complete") for _, status, _ in results)
    assert done.returncode == (0 if ok and "error:" not in done.stderr else 1), done.stdout + done.stderr


def _terminate_sessions(url: str, stop: threading.Event, rng: random.Random) -> None:
    con = psycopg2.connect(url)
    con.autocommit = True
    try:
        with con.cursor() as cur:
            while not stop.wait(rng.uniform(0.0, 0.9)):
                cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    finally:
        con.close()


# --- a session dropped at a chosen moment of a load ----------------------------------------------
@pytest.fixture(scope="module")
def hook_database():
    """A database of its own whose sessions a test terminates from inside a load (no other test's)."""
    return database("refdomains_hook")


def _terminate_others(url: str) -> None:
    """End every session of the database but this one's: what a failover does to a run."""
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'")
    con.close()


def _drop_sessions_at_complete_load(monkeypatch, url: str, times: int) -> list[int]:
    """The next `times` loads lose their session just before dlt marks their package loaded (every
    job committed, the package not): dlt raises at the load step and keeps the package pending."""
    from dlt.destinations.job_client_impl import SqlJobClientBase

    original = SqlJobClientBase.complete_load
    dropped: list[int] = []

    def complete_load(self, load_id: str) -> None:
        if len(dropped) < times:
            dropped.append(1)
            _terminate_others(url)
        return original(self, load_id)

    monkeypatch.setattr(SqlJobClientBase, "complete_load", complete_load)
    return dropped


def _ledger_agrees_with_report(url: str, dataset: str, report, emulator) -> None:
    """What the run reports is what the database holds: each snapshot's status and rows as its
    ledger row says, and every credit the API charged recorded once in snapshot_attempts."""
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute(f'SELECT target_domain, status, rows_loaded FROM "{dataset}".snapshots')
        held = {row[0]: (row[1], row[2]) for row in cur.fetchall()}
        cur.execute(f'SELECT target_domain, count(*) FROM "{dataset}".ref_domains GROUP BY 1')
        rows = dict(cur.fetchall())
        cur.execute(f'SELECT coalesce(sum(credits_spent), 0) FROM "{dataset}".snapshot_attempts')
        recorded = cur.fetchone()[0]
    con.close()
    for result in report.results:
        domain = result.target.domain
        assert held.get(domain) == (result.status, result.rows), (domain, result, held.get(domain))
        if result.status == "complete":
            assert rows.get(domain, 0) == result.rows, (domain, rows.get(domain), result.rows)
    charged = sum(e.charge for e in emulator.log if e.method.endswith("getRefDomains"))
    assert recorded == report.credits_spent == charged, (recorded, report.credits_spent, charged)


@pytest.mark.parametrize("drops", [1, 3])
def test_a_session_dropped_while_a_package_completes_is_reported_as_committed(
        tmp_path, emulator, hook_database, monkeypatch, drops):
    """A load whose session drops once every job has committed, before dlt marks the package loaded,
    is finished on a fresh connection: the run reports it complete as the database holds it, and
    the next snapshot's rows are loaded, not dropped for the pending package (the reviewer's
    "printed complete, still the old pull; its attempt and credits missing")."""
    for name, size in (("hook-a.com", 600), ("hook-b.com", 450)):
        emulator.set_profile(name, size)
    dataset = f"hook_{uuid.uuid4().hex[:8]}"
    dropped = _drop_sessions_at_complete_load(monkeypatch, hook_database, drops)
    try:
        report = run_pipeline(tmp_path, emulator, ["hook-a.com", "hook-b.com"], kind="full",
                              destination=dlt.destinations.postgres(hook_database), dataset_name=dataset,
                              settings_options={"page_size": 100})
        assert len(dropped) == drops
        assert [r.status for r in report.results] == ["complete", "complete"], report.lines()
        _ledger_agrees_with_report(hook_database, dataset, report, emulator)
        consistent(hook_database, dataset)
    finally:
        drop_dataset(dataset, hook_database)


def test_an_attempt_whose_commit_lost_its_answer_is_recorded_once(tmp_path, emulator, hook_database, monkeypatch):
    """The COPY of snapshot_attempts commits, then its connection drops before the answer (a lost
    acknowledgement): dlt runs the job again, appending the attempt twice. The run collapses it,
    so the credits recorded are the credits paid, once."""
    from dlt.destinations.exceptions import DatabaseTransientException
    from dlt.destinations.impl.postgres.postgres import PostgresCsvCopyJob

    original = PostgresCsvCopyJob.run
    lost: list[str] = []

    def run(self) -> None:
        original(self)
        if self.load_table_name == "snapshot_attempts" and len(lost) < 2:
            lost.append(self.load_table_name)
            raise DatabaseTransientException(psycopg2.OperationalError("server closed the connection unexpectedly"))

    monkeypatch.setattr(PostgresCsvCopyJob, "run", run)
    emulator.set_profile("twice-a.com", 300)
    emulator.set_profile("twice-b.com", 0)  # fails: its attempt is recorded through the ledger's own load
    dataset = f"hook_{uuid.uuid4().hex[:8]}"
    try:
        report = run_pipeline(tmp_path, emulator, ["twice-a.com", "twice-b.com"], kind="full",
                              destination=dlt.destinations.postgres(hook_database), dataset_name=dataset,
                              settings_options={"page_size": 100})
        assert len(lost) == 2, lost
        with psycopg2.connect(hook_database) as con, con.cursor() as cur:
            cur.execute(f'SELECT target_domain, count(*) FROM "{dataset}".snapshot_attempts GROUP BY 1')
            assert dict(cur.fetchall()) == {"twice-a.com": 1, "twice-b.com": 1}
        con.close()
        _ledger_agrees_with_report(hook_database, dataset, report, emulator)
    finally:
        drop_dataset(dataset, hook_database)


def test_a_load_the_connection_keeps_failing_stops_the_run_and_the_next_one_finishes_it(
        tmp_path, emulator, hook_database, monkeypatch):
    """A package whose load cannot be finished (its session dropped on every try) stops the run,
    saying so, and stays pending; the next run finishes it first, also through a dropped session,
    and reports the snapshot complete: its rows, ledger row and attempt, recorded once."""
    from serpstat_refdomains.errors import ServiceUnavailable

    emulator.set_profile("stuck.com", 500)
    dataset = f"hook_{uuid.uuid4().hex[:8]}"
    destination = dlt.destinations.postgres(hook_database)
    try:
        dropped = _drop_sessions_at_complete_load(monkeypatch, hook_database, 9)  # the run's load and 8 tries
        with pytest.raises(ServiceUnavailable, match=r"could not be finished .* its package is kept"):
            run_pipeline(tmp_path, emulator, ["stuck.com"], kind="full", destination=destination,
                         dataset_name=dataset, settings_options={"page_size": 100})
        assert len(dropped) == 9
        charged = emulator.api.credits_charged
        monkeypatch.undo()
        dropped = _drop_sessions_at_complete_load(monkeypatch, hook_database, 1)  # while the next run finishes it
        report = run_pipeline(tmp_path, emulator, ["stuck.com"], kind="full", destination=destination,
                              dataset_name=dataset, settings_options={"page_size": 100})
        assert len(dropped) == 1
        assert [(r.status, r.rows) for r in report.results] == [("already_complete", 500)], report.lines()
        assert emulator.api.credits_charged == charged  # nothing fetched again
        assert _attempt_credits(hook_database, dataset) == charged
        consistent(hook_database, dataset)
    finally:
        drop_dataset(dataset, hook_database)


def test_a_dropped_load_is_not_finished_once_the_lease_is_lost(tmp_path, emulator, hook_database, monkeypatch):
    """Finishing a load is a write: each try asks the lease first. Lost meanwhile, the run stops
    (LockLost) without loading anything more; the package stays for the next run."""
    emulator.set_profile("lost.com", 300)
    dataset = f"hook_{uuid.uuid4().hex[:8]}"
    dropped = _drop_sessions_at_complete_load(monkeypatch, hook_database, 1)
    loads_after_the_drop: list[int] = []
    original_load, original_check = dlt.Pipeline.load, Lease.check

    def load(self, *args, **kwargs):
        if dropped:
            loads_after_the_drop.append(1)
        return original_load(self, *args, **kwargs)

    def check(self) -> None:
        if dropped:
            self._lost = "another run took its lease (the test)"
        original_check(self)

    monkeypatch.setattr(dlt.Pipeline, "load", load)
    monkeypatch.setattr(Lease, "check", check)
    try:
        with pytest.raises(LockLost, match="another run took its lease"):
            run_pipeline(tmp_path, emulator, ["lost.com"], kind="full", destination=dlt.destinations.postgres(
                hook_database), dataset_name=dataset, settings_options={"page_size": 100})
        assert dropped and loads_after_the_drop == []
    finally:
        drop_dataset(dataset, hook_database)
