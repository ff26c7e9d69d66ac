"""The models on randomized histories of several series (gaps, returns, `last_week` pulls on and
between full snapshot dates, incomplete and inconsistent snapshots, IDN names, a filter change),
against the one oracle of their meaning, tests/model_reference.py (docs/data.md's rules in Python, over
the loaded tables); and their incremental builds, load after load (backfills, `--force` reloads,
cut and mended loads), against the same oracle and a build from nothing, row for row.
"""

from __future__ import annotations

import datetime as dt
import os
import random

import duckdb
import pyarrow as pa
import pytest

from serpstat_refdomains import models
from serpstat_refdomains.models import load_models
from tests.model_reference import COLUMNS, CONFIRM, Loaded, expected_models, readable

# `make test` checks a few random histories; `make chaos` many (MODEL_SEEDS)
SEEDS = int(os.environ.get("MODEL_SEEDS", "4"))
START = dt.date(2026, 1, 5)
WEEKS = range(12)
# (target, search type, filter, weeks): two series of a.com side by side. Their snapshots share dates,
# which no dataset can hold (a snapshot's key names its target, search type, kind and date, not its
# filter): the marts' keys, which are a target's, do not hold, so their data tests are not run on them.
SERIES = [("a.com", "domain_with_subdomains", "none", WEEKS), ("a.com", "domain_with_subdomains", "f1", WEEKS),
          ("a.com", "domain", "none", WEEKS), ("b.com", "domain_with_subdomains", "none", WEEKS)]
# as a run makes them: a target's filter changes, and a new series starts where the old one stops
# (one full snapshot a target and date, so "the latest full snapshot" of a target is one)
SERIES_WITH_FILTER_CHANGE = [("a.com", "domain_with_subdomains", "none", range(0, 6)),
                             ("a.com", "domain_with_subdomains", "f1", range(6, 12)),
                             ("a.com", "domain", "none", WEEKS), ("b.com", "domain_with_subdomains", "none", WEEKS)]


def random_history(seed: int, series: list[tuple] = SERIES) -> tuple[list[tuple], list[tuple]]:
    """Ledger rows and ref_domains rows of a random history: each series has its own donor pool,
    donors come and go with their own odds (so they return), weeks are skipped, pulls land on and
    between full snapshot dates, and some snapshots are not readable."""
    rng = random.Random(seed)
    ledger, rows = [], []
    for target, search_type, filter_hash, weeks in series:
        pool = [f"d{n}.{target}.example" for n in range(25)] + ["xn--bcher-kva.de", "xn--mnchen-3ya.de"]
        odds = {name: rng.choice((0.1, 0.5, 0.8, 0.95)) for name in pool}
        odds["xn--bcher-kva.de"] = 0.5  # it comes and goes in every history: a change shows its display name
        pulled: list[tuple[str, dt.date]] = []
        for week in weeks:
            day = START + dt.timedelta(weeks=week)
            pulls = []
            if rng.random() < 0.8:  # a skipped week is a gap between full snapshots
                pulls.append(("full", day, [d for d in pool if rng.random() < odds[d]]))
            if rng.random() < 0.7:
                pull_day = day + dt.timedelta(days=rng.choice((0, 0, 3)))
                pulls.append(("last_week", pull_day, rng.sample(pool, rng.randint(0, 8))))
            for kind, when, names in pulls:
                key = f"{target}|{search_type}|{filter_hash}|{kind}|{when}"
                status = rng.choices(("complete", "incomplete", "failed"), (0.85, 0.1, 0.05))[0]
                if kind == "full" and not any(k == kind for k, *_ in pulled):
                    status = "complete"  # every series is read at least once: the filters side by side
                pulled.append((kind, when))
                rows_loaded = len(names)
                if status == "complete" and names and rng.random() < 0.05:
                    rows_loaded += 1  # a load cut between its two tables: unreadable
                ledger.append((key, target, search_type, filter_hash, kind, when, status, rows_loaded))
                rows += [(key, name, name.split(".", 1)[-1] if name.count(".") > 1 else name,
                          rng.randint(0, 100), rng.randint(1, 50)) for name in names]
    return ledger, rows


def _warehouse(ledger: list[tuple], rows: list[tuple], data_tests: bool = True) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE snapshots (snapshot_key VARCHAR, target_domain VARCHAR, search_type VARCHAR, "
                "filter_hash VARCHAR, snapshot_kind VARCHAR, snapshot_date DATE, status VARCHAR, rows_loaded BIGINT, "
                "rows_rejected BIGINT DEFAULT 0, finished_at TIMESTAMP WITH TIME ZONE, "
                "started_at TIMESTAMP WITH TIME ZONE)")
    con.execute("CREATE TABLE ref_domains (snapshot_key VARCHAR, ref_domain VARCHAR, registrable_domain VARCHAR, "
                "domain_rank BIGINT, ref_pages BIGINT, snapshot_date DATE, snapshot_kind VARCHAR, "
                "pulled_at TIMESTAMP WITH TIME ZONE)")
    con.execute("CREATE TABLE stg_ref_domain_names (ref_domain VARCHAR, ref_domain_unicode VARCHAR)")
    con.execute("CREATE TABLE target_competitors (target_domain VARCHAR, search_type VARCHAR, "
                "competitor_domain VARCHAR, competitor_search_type VARCHAR)")  # the link gap's input: none here
    if ledger:
        _insert(con, "snapshots", ledger, "*, 0, NULL, NULL")
    if rows:
        _insert(con, "ref_domains", rows, "*, NULL, NULL, NULL")
        con.execute("UPDATE ref_domains SET snapshot_date = snapshots.snapshot_date, snapshot_kind = "
                    "snapshots.snapshot_kind FROM snapshots WHERE snapshots.snapshot_key = ref_domains.snapshot_key")
    con.execute("INSERT INTO stg_ref_domain_names VALUES ('xn--bcher-kva.de', 'bücher.de')")
    build_in(con, data_tests=data_tests)
    return con


def _insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[tuple] | pa.Table, select: str = "*") -> None:
    """`INSERT INTO table SELECT <select> FROM rows`, the rows read as one Arrow table: DuckDB's
    executemany binds parameters row by row (a third of the incremental test's time went there)."""
    if not isinstance(rows, pa.Table):
        if not rows:
            return
        rows = pa.table({f"c{i}": list(column) for i, column in enumerate(zip(*rows, strict=True))})
    con.register("inserted_rows", rows)
    try:
        con.execute(f"INSERT INTO {table} SELECT {select} FROM inserted_rows")
    finally:
        con.unregister("inserted_rows")


class DuckDBClient:
    """The little of dlt's sql client that models.materialize uses, on a bare DuckDB connection."""
    dataset_name = "main"

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def execute_sql(self, sql: str, *args) -> list[tuple]:
        cursor = self.con.execute(sql.replace("%s", "?"), list(args))
        return cursor.fetchall() if cursor.description else []

    def make_qualified_table_name(self, name: str) -> str:
        return f"main.{name}"

    def escape_column_name(self, name: str) -> str:
        return f'"{name}"'


def build_in(con: duckdb.DuckDBPyConnection, *, full_refresh: bool = False, step_rows: int | None = None,
             data_tests: bool = True) -> None:
    """Every model, as the runner materializes them (incremental ones keep their rows), and their
    data tests, as a build runs them."""
    client, params = DuckDBClient(con), models.model_params(CONFIRM)
    built = load_models()
    models.materialize_all(client, built, "duckdb", params, full_refresh=full_refresh, step_rows=step_rows)
    if data_tests:
        names = [models.NAMES_TABLE, *(m.name for m in built)]
        models.run_data_tests(client, names, "duckdb", params, models.SOURCE_TABLES | set(names))


def _rows(con: duckdb.DuckDBPyConnection, select: str) -> list[tuple]:
    return sorted(con.execute(select).fetchall(), key=repr)


PUBLIC_MODELS = tuple(COLUMNS)
NAMES = {"xn--bcher-kva.de": "bücher.de"}  # the display names _warehouse knows; other names show as they are


def _loaded(con: duckdb.DuckDBPyConnection) -> list[Loaded]:
    """Every snapshot as the loaded tables hold it: the oracle's input."""
    rows: dict[str, list] = {}
    for key, *row in con.execute("SELECT snapshot_key, ref_domain, registrable_domain, domain_rank, ref_pages, "
                                 "pulled_at FROM main.ref_domains").fetchall():
        rows.setdefault(key, []).append(tuple(row))
    return [Loaded(*entry, rows.get(entry[0], [])) for entry in con.execute(
        "SELECT snapshot_key, target_domain, search_type, filter_hash, snapshot_kind, snapshot_date, status, "
        "rows_loaded, rows_rejected, started_at FROM main.snapshots").fetchall()]


def _assert_models_equal_the_reference(con: duckdb.DuckDBPyConnection, public: tuple[str, ...] = PUBLIC_MODELS,
                                       what: str = "") -> dict[str, set]:
    """Each public model's rows equal the oracle's over the loaded tables, row for row (no row twice),
    and every donor shows its display name."""
    expected = expected_models(_loaded(con))
    for model in public:
        got = _rows(con, f"SELECT {', '.join(COLUMNS[model])} FROM main.{model}")
        assert got == sorted(expected[model], key=repr), f"{model} {what}"
        shown = set(con.execute(f"SELECT ref_domain, ref_domain_unicode FROM main.{model}").fetchall()) \
            if "ref_domain" in COLUMNS[model] else set()
        assert all(unicode == NAMES.get(name, name) for name, unicode in shown), f"{model} {what}"
    return expected


@pytest.mark.parametrize("seed", range(SEEDS))
@pytest.mark.parametrize("series", [SERIES, SERIES_WITH_FILTER_CHANGE], ids=["side_by_side", "filter_change"])
def test_models_equal_the_reference_on_random_histories(seed, series):
    ledger, rows = random_history(seed, series)
    con = _warehouse(ledger, rows, data_tests=series is not SERIES)
    # side by side, a target's latest full snapshot and a week's size are two series' (see SERIES)
    public = PUBLIC_MODELS if series is SERIES_WITH_FILTER_CHANGE else ("new_ref_domains", "lost_ref_domains",
                                                                        "ref_domain_changes")
    expected = _assert_models_equal_the_reference(con, public)
    for model in public:
        assert expected[model], f"{model} is empty: the comparison proves nothing"
    # the history exercises what the models could get wrong
    new, lost = expected["new_ref_domains"], expected["lost_ref_domains"]
    assert {"snapshot_diff", "last_week"} <= {r.detected_by for r in new}
    assert any(r.is_returning for r in new)
    assert any(r.returned_on is not None for r in lost) and any(r.confirmed for r in lost)
    loaded = _loaded(con)
    assert any(not readable(s) for s in loaded), "every snapshot readable: nothing is left out"
    full_days = {(s.target_domain, s.search_type, s.filter_hash, s.snapshot_date) for s in loaded
                 if s.snapshot_kind == "full"}
    pull_days = [(s.target_domain, s.search_type, s.filter_hash, s.snapshot_date) in full_days for s in loaded
                 if s.snapshot_kind == "last_week"]
    assert any(pull_days) and not all(pull_days), "pulls on and between full snapshot dates"
    assert ("xn--bcher-kva.de", "bücher.de") in set(con.execute(
        "SELECT ref_domain, ref_domain_unicode FROM main.ref_domain_changes").fetchall()), "no IDN donor shown"
    # both of a.com's filters are read: side by side, or one after the other
    filters = con.execute("SELECT DISTINCT filter_hash FROM main.stg_snapshots WHERE target_domain = 'a.com' "
                          "AND search_type = 'domain_with_subdomains' AND snapshot_kind = 'full'").fetchall()
    assert sorted(filters) == [("f1",), ("none",)]


# --- incremental: int_snapshot_pair_changes keeps its comparisons between builds -----------------
EVERY_MODEL = [m.name for m in load_models() if m.materialized != "view"] + \
    [m.name for m in load_models() if m.materialized == "view"]


def _empty_warehouse() -> duckdb.DuckDBPyConnection:
    return _warehouse([], [])


def _put(con: duckdb.DuckDBPyConnection, entry: tuple, names: list[tuple], pulled: int) -> None:
    """Load one snapshot as a run does: its ledger row and rows replace whatever the key held."""
    key, day = entry[0], entry[5]
    con.execute("DELETE FROM snapshots WHERE snapshot_key = ?", [key])
    con.execute("DELETE FROM ref_domains WHERE snapshot_key = ?", [key])
    pulled_at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=pulled)
    con.execute("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                [*entry[:7], len(names), pulled_at, pulled_at])
    _insert(con, "ref_domains", [(*row, day, entry[4], pulled_at) for row in names])


def _state(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    return {name: _rows(con, f"SELECT * FROM main.{name}") for name in EVERY_MODEL}


def _rebuilt(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every model built from nothing over the same loaded tables, in a database of its own."""
    fresh = _empty_warehouse()
    for table in ("snapshots", "ref_domains"):
        _insert(fresh, table, con.execute(f"SELECT * FROM {table}").to_arrow_table())
    build_in(fresh)
    return _state(fresh)


@pytest.mark.parametrize("seed", range(max(1, SEEDS // 8)))  # a dozen loads and builds each
def test_incremental_builds_equal_a_full_rebuild_after_every_load(seed):
    """Week by week, as runs load them, with what a real history does besides: a snapshot that
    arrives after later ones (a backfill), one pulled again with other rows (--force), one that
    stops being readable (cut load) and one that becomes readable again. After every load, every
    model equals the models built from nothing over the same tables, row for row."""
    rng = random.Random(1000 + seed)
    ledger, rows = random_history(seed, SERIES_WITH_FILTER_CHANGE)
    by_key: dict[str, list[tuple]] = {}
    for row in rows:
        by_key.setdefault(row[0], []).append(row[1:])
    fulls = [e for e in ledger if e[4] == "full" and e[6] == "complete" and len(by_key.get(e[0], [])) == e[7]]
    late = set(e[0] for e in rng.sample(fulls[1:], 2))  # loaded two weeks after their date
    con = _empty_warehouse()
    pulled = 0
    days = sorted({e[5] for e in ledger})
    events = {"reloaded": 0, "cut": 0, "mended": 0, "backfilled": 0}
    for step, day in enumerate(days):
        todays = [e for e in ledger if e[5] == day and e[0] not in late]
        todays += [e for e in ledger if e[0] in late and e[5] == day - dt.timedelta(weeks=2)]
        events["backfilled"] += sum(e[0] in late for e in todays)
        for entry in todays:
            pulled += 1
            _put(con, entry, [(entry[0], *r) for r in by_key.get(entry[0], [])], pulled)
            if entry[7] != len(by_key.get(entry[0], [])):  # the history's cut loads stay cut
                con.execute("UPDATE snapshots SET rows_loaded = ? WHERE snapshot_key = ?", [entry[7], entry[0]])
        loaded = [r[0] for r in con.execute("SELECT snapshot_key FROM snapshots WHERE snapshot_kind = 'full' "
                                            "AND status = 'complete'").fetchall()]
        if step % 3 == 2 and loaded:  # pulled again: one donor fewer, one more, other metrics
            key = rng.choice(loaded)
            names = con.execute("SELECT * FROM ref_domains WHERE snapshot_key = ?", [key]).fetchall()
            entry = con.execute("SELECT * FROM snapshots WHERE snapshot_key = ?", [key]).fetchone()
            kept = [(*n[:3], (n[3] or 0) + 1, n[4]) for n in names[1:]] + [(key, f"again{step}.example",
                                                                             "again.example", 5, 1)]
            pulled += 1
            _put(con, entry[:7], kept, pulled)
            events["reloaded"] += 1
        if step % 4 == 3 and loaded:  # a load cut between its tables: the snapshot is not readable
            key = rng.choice(loaded)
            con.execute("UPDATE snapshots SET rows_loaded = rows_loaded + 1 WHERE snapshot_key = ?", [key])
            events["cut"] += 1
        if step % 4 == 1:  # and mended: readable again
            mended = con.execute("UPDATE snapshots SET rows_loaded = (SELECT count(*) FROM ref_domains r WHERE "
                                 "r.snapshot_key = snapshots.snapshot_key) WHERE snapshot_kind = 'full' AND "
                                 "status = 'complete' AND snapshot_key IN (SELECT snapshot_key FROM snapshots "
                                 "WHERE snapshot_kind = 'full' ORDER BY snapshot_key LIMIT 3)").fetchall()
            events["mended"] += int(mended[0][0]) if mended else 0
        build_in(con)
        assert _state(con) == _rebuilt(con), f"after loading {day}"
        _assert_models_equal_the_reference(con, what=f"after loading {day}")
    assert all(events.values()), events
    # the comparisons were kept, not redone: one marker row per pair listed now, none of pairs gone
    pairs = con.execute("SELECT count(*) FROM int_snapshot_pairs").fetchone()[0]
    assert con.execute("SELECT count(*) FROM int_snapshot_pair_changes WHERE change = 'compared'").fetchone() \
        == (pairs,)
    assert pairs > 10


def test_a_build_compares_only_the_pairs_a_load_added():
    """The incremental model runs its SELECT over pending pairs only: a build after one more week
    compares one pair a series, and a build with nothing new compares none."""
    ledger, rows = random_history(3)
    con = _warehouse(ledger, rows, data_tests=False)
    compared = set(con.execute("SELECT pair_key FROM int_snapshot_pair_changes WHERE change = 'compared'")
                   .fetchall())
    before = {r[0] for r in con.execute("SELECT pair_key FROM int_snapshot_pairs").fetchall()}
    assert {k for (k,) in compared} == before
    # tag the kept rows: a build that recompared them would replace their tags' rows
    con.execute("UPDATE int_snapshot_pair_changes SET registrable_domain = 'kept' WHERE change = 'compared'")
    build_in(con, data_tests=False)
    assert con.execute("SELECT count(*) FROM int_snapshot_pair_changes WHERE change = 'compared' AND "
                       "registrable_domain = 'kept'").fetchone() == (len(before),)
    day = START + dt.timedelta(weeks=20)
    for target, search_type, filter_hash, _ in SERIES:
        latest = con.execute("SELECT snapshot_key FROM stg_snapshots WHERE target_domain = ? AND search_type = ? "
                             "AND filter_hash = ? AND snapshot_kind = 'full' ORDER BY snapshot_date DESC LIMIT 1",
                             [target, search_type, filter_hash]).fetchone()
        names = con.execute("SELECT * FROM ref_domains WHERE snapshot_key = ?", [latest[0]]).fetchall()
        key = f"{target}|{search_type}|{filter_hash}|full|{day}"
        _put(con, (key, target, search_type, filter_hash, "full", day, "complete"),
             [(key, *n[1:5]) for n in names[1:]], 10_000)
    build_in(con, data_tests=False)
    assert con.execute("SELECT count(*) FROM int_snapshot_pair_changes WHERE change = 'compared' AND "
                       "registrable_domain = 'kept'").fetchone() == (len(before),)
    assert con.execute("SELECT count(*) FROM int_snapshot_pair_changes WHERE change = 'compared' AND "
                       "registrable_domain IS NULL").fetchone() == (len(SERIES),)
    # the week's one lost donor a series, seen through the kept comparisons and the new ones
    assert con.execute("SELECT count(*) FROM lost_ref_domains WHERE lost_on = ?", [day]).fetchone() == (len(SERIES),)
    _assert_models_equal_the_reference(con, ("new_ref_domains", "lost_ref_domains", "ref_domain_changes"))
    build_in(con, full_refresh=True, data_tests=False)
    assert con.execute("SELECT count(*) FROM int_snapshot_pair_changes WHERE registrable_domain = 'kept'") \
        .fetchone() == (0,)


def test_rows_of_another_pull_under_a_ledger_row_are_not_read():
    """dlt merges a snapshot's ledger row and its rows in two transactions: a load cut between them
    can leave the rows of one pull under the ledger row of another, as many rows (a --force reload
    killed between the two). Such a snapshot is not read, so nothing is compared
    with rows the ledger does not describe; once they agree, the comparison is made, and the
    incremental models equal a build from nothing at every step."""
    con = _empty_warehouse()
    target = ("a.com", "domain_with_subdomains", "none")

    def load(day: dt.date, donors: range, pulled: int) -> str:
        key = f"{target[0]}|{target[1]}|{target[2]}|full|{day}"
        _put(con, (key, *target, "full", day, "complete"),
             [(key, f"d{i}.example", "example", 1, 1) for i in donors], pulled)
        return key

    load(START, range(10), 1)
    second = load(START + dt.timedelta(weeks=1), range(10), 2)
    build_in(con)
    # the ledger row of a third pull of week 1 (d2..d11) landed; its rows did not
    con.execute("UPDATE snapshots SET started_at = started_at + INTERVAL 1 HOUR, "
                "finished_at = finished_at + INTERVAL 1 HOUR WHERE snapshot_key = ?", [second])
    build_in(con)
    assert con.execute("SELECT count(*) FROM stg_snapshots WHERE snapshot_key = ?", [second]).fetchone() == (0,)
    assert _state(con) == _rebuilt(con)
    _assert_models_equal_the_reference(con)
    # the cut load is finished: the rows of that pull arrive under its ledger row
    stamp = con.execute("SELECT started_at FROM snapshots WHERE snapshot_key = ?", [second]).fetchone()[0]
    con.execute("DELETE FROM ref_domains WHERE snapshot_key = ?", [second])
    _insert(con, "ref_domains", [(second, f"d{i}.example", "example", 1, 1, START + dt.timedelta(weeks=1), "full",
                                  stamp) for i in range(2, 12)])
    build_in(con)
    assert _state(con) == _rebuilt(con)
    _assert_models_equal_the_reference(con)
    assert sorted(r[0] for r in con.execute("SELECT ref_domain FROM lost_ref_domains").fetchall()) == \
        ["d0.example", "d1.example"]
    assert sorted(r[0] for r in con.execute("SELECT ref_domain FROM new_ref_domains").fetchall()) == \
        ["d10.example", "d11.example"]


@pytest.mark.parametrize("batch_rows", [1, 40])
def test_a_build_in_small_steps_equals_one_step(batch_rows):
    """The runner compares the pending pairs in steps, each over the next pairs whose pair_rows add
    up to step_rows (at least one): steps of one pair, or of a few, give the rows one step gives."""
    ledger, rows = random_history(5, SERIES_WITH_FILTER_CHANGE)
    con = _warehouse(ledger, rows)
    expected = _state(con)
    build_in(con, full_refresh=True, step_rows=batch_rows)
    assert _state(con) == expected
    assert con.execute("SELECT count(*) FROM int_snapshot_pairs").fetchone()[0] > 20
