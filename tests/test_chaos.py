"""Randomized fault runs: sequences of days over the emulator with random faults, each followed by
a clean rerun, checking after every step that nothing wrong is ever loaded or modelled.

`make test` runs two seeded sequences; `make chaos` runs CHAOS_EXAMPLES=200. At the end of a
session the counts of sequences, faults by type and invariants checked are printed.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import dlt
import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serpstat_refdomains.contract import snapshot_key
from serpstat_refdomains.emulator import Fault, Profile, SerpstatEmulator
from serpstat_refdomains.normalize import normalize_domain
from tests.helpers import TOKEN, fast_client, refdomains_on, run_pipeline
from tests.model_reference import LOST_COLUMNS, NEW_COLUMNS, Row, reference

EXAMPLES = int(os.environ.get("CHAOS_EXAMPLES", "2"))
START = dt.date(2026, 4, 6)
TARGETS = ("chaos-a.com", "chaos-b.org")
FAULTS = ("none", "http_5xx", "rate_limit", "http_429", "timeout", "drop", "malformed", "insert_rows",
          "credits_out", "kill")
STATS: collections.Counter = collections.Counter()

step = st.tuples(
    st.integers(min_value=0, max_value=9),        # days since the previous step
    st.sampled_from(FAULTS),
    st.sampled_from(TARGETS),
    st.integers(min_value=1, max_value=4),        # page the fault hits
    st.integers(min_value=1, max_value=3),        # how many times it fires
)


def fault_for(kind: str, target: str, page: int, times: int) -> Fault | None:
    return {
        "http_5xx": Fault("http_error", query=target, page=page, status=503, times=times + 5),  # past the retries
        "rate_limit": Fault("rate_limit", query=target, page=page, times=times),
        "http_429": Fault("http_429", query=target, page=page, times=times, retry_after=0),
        "timeout": Fault("delay", query=target, page=page, seconds=0.8, times=times),
        "drop": Fault("drop", query=target, page=page, times=times),
        "malformed": Fault("malformed", query=target, page=page, times=times),
        "insert_rows": Fault("insert_rows", query=target, page=page, last_week=False, count=3, times=times),
    }.get(kind)


def loaded_snapshots(db: Path) -> tuple[dict, dict, list]:
    """The ledger, each snapshot's rows and any row loaded twice; nothing for a database a run
    killed before its first load left empty."""
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'serpstat' "
                             "AND table_name IN ('snapshots', 'ref_domains')").fetchone()[0]
        if tables != 2:
            return {}, collections.defaultdict(set), []
        ledger = {r[0]: r[1:] for r in con.execute(
            "SELECT snapshot_key, status, rows_loaded, target_domain, snapshot_kind, snapshot_date "
            "FROM serpstat.snapshots").fetchall()}
        rows = collections.defaultdict(set)
        dupes = con.execute("SELECT snapshot_key, ref_domain, count(*) FROM serpstat.ref_domains "
                            "GROUP BY 1, 2 HAVING count(*) > 1").fetchall()
        for key, name in con.execute("SELECT snapshot_key, ref_domain FROM serpstat.ref_domains").fetchall():
            rows[key].add(name)
    return ledger, rows, dupes


def model_rows(db: Path) -> tuple[set, set]:
    with duckdb.connect(str(db), read_only=True) as con:
        new = set(con.execute(f"SELECT {NEW_COLUMNS} FROM serpstat.new_ref_domains").fetchall())
        lost = set(con.execute(f"SELECT {LOST_COLUMNS} FROM serpstat.lost_ref_domains").fetchall())
    return new, lost


def killed_run(workdir: Path, emulator, day: dt.date, kind: str, after: float) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({"DLT_DATA_DIR": str(workdir), "DESTINATION__DUCKDB__CREDENTIALS": str(workdir / "refdomains.duckdb"),
                "SOURCES__SERPSTAT__API_TOKEN": TOKEN, "SOURCES__SERPSTAT__API_URL": emulator.url,
                "SOURCES__SERPSTAT__DOMAINS": ",".join(TARGETS), "SOURCES__SERPSTAT__PAGE_SIZE": "100",
                "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "1000"})
    proc = subprocess.Popen([*refdomains_on(day), "run", "--kind", kind], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.timeout(max(300, EXAMPLES * 120))  # one test, EXAMPLES sequences of up to 5 days
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(steps=st.lists(step, min_size=2, max_size=5), kill_after=st.floats(min_value=0.8, max_value=2.5))
def test_random_fault_sequences_never_load_or_model_anything_wrong(steps, kill_after):
    STATS["sequences"] += 1
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    db = workdir / "refdomains.duckdb"
    with SerpstatEmulator(token=TOKEN, seed=len(steps), today=START) as emulator:
        for target in TARGETS:
            emulator.graph.set_profile(target, Profile(base_size=250))
        truth_at: dict[str, dict[str, Row]] = {}  # snapshot_key -> what that pull saw
        client = fast_client(emulator, timeout=0.5, max_attempts=3)
        day = START
        for advance, kind, target, page, times in steps:
            day += dt.timedelta(days=advance)
            emulator.today = day
            STATS[f"fault:{kind}"] += 1
            for pull in ("full", "last_week"):
                complete_before = _paid_complete(db) if db.exists() else set()
                # the faulty attempt
                fault = fault_for(kind, target, page, times)
                if fault:
                    emulator.faults.add(fault)
                if kind == "credits_out":
                    emulator.api.set_balance(150 * page)
                if kind == "kill":
                    killed_run(workdir, emulator, day, pull, kill_after)
                else:
                    run_pipeline(workdir, emulator, list(TARGETS), day, client=client, kind=pull,
                                 settings_options={"page_size": 100}, destination=dlt.destinations.duckdb(str(db)),
                                 build_models=True)
                emulator.faults.clear()
                emulator.api.set_balance(10_000_000)
                record_truth(emulator, day, pull, truth_at, complete_before)
                check_invariants(db, truth_at, models_fresh=kind != "kill")
                # the clean rerun completes everything and pays nothing for what was complete
                emulator.api.clear_log()
                complete_before = _paid_complete(db) if db.exists() else set()
                report = run_pipeline(workdir, emulator, list(TARGETS), day, client=client, kind=pull,
                                      settings_options={"page_size": 100},
                                      destination=dlt.destinations.duckdb(str(db)), build_models=True)
                assert all(r.status in ("complete", "already_complete") for r in report.results), report.results
                refetched = {e.query for e in emulator.log if e.method.endswith("getRefDomains")}
                for result in report.results:
                    key = snapshot_key(result.target.domain, "domain_with_subdomains", pull, day)
                    if key in complete_before:
                        assert result.status == "already_complete" and result.target.domain not in refetched
                        STATS["invariant:no double payment"] += 1
                record_truth(emulator, day, pull, truth_at, complete_before)
                check_invariants(db, truth_at, models_fresh=True, all_complete_for=(day, pull))
        client.close()


def _paid_complete(db: Path) -> set[str]:
    ledger, _, _ = loaded_snapshots(db)
    return {key for key, (status, *_rest) in ledger.items() if status == "complete"}


def record_truth(emulator, day: dt.date, pull: str, truth_at: dict, complete_before: set[str]) -> None:
    """What a pull of `day` must hold: the graph right after it was fetched (insertions included).
    A snapshot already complete keeps the truth of when it was fetched."""
    for target in TARGETS:
        key = snapshot_key(target, "domain_with_subdomains", pull, day)
        if key in complete_before:
            continue
        donors = emulator.graph.active(target, day)
        names = emulator.graph.truth(target, day, last_week=pull == "last_week")
        truth_at[key] = {normalize_domain(d.name): Row(d.rank, d.ref_pages) for d in donors if d.name in names}


def check_invariants(db: Path, truth_at: dict, models_fresh: bool, all_complete_for: tuple | None = None) -> None:
    if not db.exists():
        return
    ledger, rows, dupes = loaded_snapshots(db)
    assert dupes == [], f"duplicate rows: {dupes[:3]}"
    STATS["invariant:no duplicates"] += 1
    complete = {k: v for k, v in ledger.items() if v[0] == "complete"}
    for key, (_status, rows_loaded, *_rest) in complete.items():
        assert rows[key] == set(truth_at[key]), f"complete snapshot {key} differs from the truth"
        assert rows_loaded == len(rows[key])
        STATS["invariant:complete equals truth"] += 1
    if all_complete_for:
        day, pull = all_complete_for
        for target in TARGETS:
            assert ledger[snapshot_key(target, "domain_with_subdomains", pull, day)][0] == "complete"
    # models equal the reference computed from the complete snapshots alone
    try:
        new, lost = model_rows(db)
    except duckdb.CatalogException:
        return  # models not built yet (the first run was killed)
    expected_new, expected_lost = set(), set()
    for target in TARGETS:
        fulls = sorted((v[4], truth_at[k]) for k, v in complete.items() if v[2] == target and v[3] == "full")
        pulls = sorted((v[4], truth_at[k]) for k, v in complete.items() if v[2] == target and v[3] == "last_week")
        n, lo = reference(fulls, pulls, target)
        expected_new |= n
        expected_lost |= lo
    if not models_fresh:
        return  # a killed run never rebuilt the models: the clean rerun that follows is checked
    assert new == expected_new, "new_ref_domains differ from the reference"
    assert lost == expected_lost, "lost_ref_domains differ from the reference"
    STATS["invariant:models equal reference"] += 1


def teardown_module(module) -> None:
    print("\nchaos:", dict(sorted(STATS.items())))
