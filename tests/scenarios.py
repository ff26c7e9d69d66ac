"""The golden timeline, replayed into any destination: tests compare its models with the truth
(DuckDB) and with each other (DuckDB vs PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from serpstat_refdomains.emulator import Fault, Profile, SerpstatEmulator
from serpstat_refdomains.normalize import normalize_domain
from serpstat_refdomains.paging import PARTITION_ATTEMPTS
from tests.helpers import TOKEN, fast_client, run_pipeline
from tests.model_reference import Row

START = dt.date(2026, 2, 2)  # a Monday
WEEKS = 8
TARGET = "golden.com"


def day_set(emulator, target: str, day: dt.date, last_week: bool = False) -> dict[str, Row]:
    donors = emulator.graph.active(target, day)
    names = emulator.graph.truth(target, day, last_week=last_week)
    return {normalize_domain(d.name): Row(d.rank, d.ref_pages) for d in donors if d.name in names}


def replay_golden(workdir: Path, destination: Any = None, dataset_name: str | None = None):
    """Eight weekly runs (full, then last_week) of one churning target, with an incomplete and a suspect_empty
    full snapshot and a failed last_week pull along the way. Returns the readable truth (full
    snapshots and last_week pulls as {domain: Row}) and every snapshot's status."""
    with SerpstatEmulator(token=TOKEN, seed=11, today=START) as emulator:
        emulator.graph.set_profile(TARGET, Profile(base_size=300))
        client = fast_client(emulator)
        fulls, pulls, statuses = [], [], {}
        for week in range(WEEKS):
            day = START + dt.timedelta(weeks=week)
            emulator.today = day
            if week == 3:  # the total moves on every try: incomplete, must be ignored
                emulator.faults.add(Fault("insert_rows", query=TARGET, page=2, last_week=False, count=2,
                                          times=PARTITION_ATTEMPTS))
            if week == 5:  # an empty answer twice after a non-empty history: suspect_empty
                emulator.faults.add(Fault("empty", query=TARGET, last_week=False, times=2))
            if week == 6:  # the last_week pull fails: that week's newcomers are seen by the diff only
                emulator.faults.add(Fault("api_error", query=TARGET, last_week=True, times=-1))
            # full, then last_week, as two runs: the rows inserted under the full pull (week 3)
            # are then surely in that day's last_week pull, so the truth read after the runs is
            # what each pull saw (one `auto` run would fetch both at once)
            results = []
            for kind in ("full", "last_week"):
                report = run_pipeline(workdir, emulator, [TARGET], day, client=client, build_models=True,
                                      settings_options={"page_size": 100}, destination=destination,
                                      dataset_name=dataset_name, kind=kind)
                results += report.results
            emulator.faults.clear()
            for result in results:
                statuses[(result.kind, day)] = result.status
                if result.status != "complete":
                    continue
                if result.kind == "full":
                    fulls.append((day, day_set(emulator, TARGET, day)))
                else:
                    pulls.append((day, day_set(emulator, TARGET, day, last_week=True)))
        client.close()
    return fulls, pulls, statuses


def golden_duckdb(tmp_path_factory) -> tuple[Path, list, list, dict]:
    """replay_golden into DuckDB once a test session, by whichever test process (xdist worker)
    asks first, the others waiting for it; each caller gets a copy of the folder of its own (a
    DuckDB file is opened by one process at a time) and the truth replay_golden returned."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "golden-duckdb"
    shared.mkdir(exist_ok=True)
    truth = shared / "truth.pickle"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not truth.exists():
            shutil.rmtree(shared / "replayed", ignore_errors=True)
            replayed = replay_golden(shared / "replayed")
            truth.write_bytes(pickle.dumps(replayed))  # last: there only once the replay finished
    fulls, pulls, statuses = pickle.loads(truth.read_bytes())
    workdir = tmp_path_factory.mktemp("golden")
    shutil.copytree(shared / "replayed", workdir, dirs_exist_ok=True)
    return workdir, fulls, pulls, statuses
