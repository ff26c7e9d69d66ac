"""The models against the queries they replaced, row for row, on randomized histories of several
series (gaps, returns, `last_week` pulls on and between full snapshot dates, incomplete and
inconsistent snapshots, IDN names, a filter change).

Two rewrites are checked here, each against its predecessor kept verbatim as the reference:
- `new_ref_domains` and `lost_ref_domains` read each domain's full snapshots with `lag`/`lead`
  over its snapshot number (one sort) instead of anti-joining every snapshot against its
  neighbour (three to six times slower at a year of history). OLD_NEW_REF_DOMAINS and
  OLD_LOST_REF_DOMAINS below are the anti-join models.
- The models moved into layers (staging, intermediate, marts) with one series key and one table
  of full-snapshot changes read by both new and lost. tests/reference_sql/ holds every model as
  it was before (numbered files, DuckDB dialect), built beside the current ones in a schema of
  its own; every public model must give the same rows.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import duckdb
import pytest

from serpstat_refdomains.models import load_models, render

CONFIRM = 2

OLD_NEW_REF_DOMAINS = """\
with full_snapshots as (
    select * from stg_full_snapshots
),

full_rows as (
    select * from stg_full_ref_domains
),

-- in F(i+1) and not in F(i); F0 is the baseline and yields nothing
diff_candidates as (
    select
        cur.target_domain,
        cur.search_type,
        cur.filter_hash,
        cur.ref_domain,
        cur.registrable_domain,
        cur.domain_rank,
        cur.ref_pages,
        cur.snapshot_date as detected_on,
        prev_snapshot.snapshot_date as previous_snapshot_date,
        prev_snapshot.full_seq as previous_seq,
        'snapshot_diff' as detected_by
    from full_rows as cur
    inner join full_snapshots as prev_snapshot
        on prev_snapshot.target_domain = cur.target_domain
        and prev_snapshot.search_type = cur.search_type
        and prev_snapshot.filter_hash = cur.filter_hash
        and prev_snapshot.full_seq = cur.full_seq - 1
    where not exists (
        select 1
        from full_rows as prev
        where prev.target_domain = cur.target_domain
            and prev.search_type = cur.search_type
            and prev.filter_hash = cur.filter_hash
            and prev.full_seq = cur.full_seq - 1
            and prev.ref_domain = cur.ref_domain
    )
),

-- each last_week pull against the latest full snapshot dated strictly before it (if any)
last_week_pulls as (
    select
        pull.target_domain,
        pull.search_type,
        pull.filter_hash,
        pull.snapshot_date,
        max(prior.full_seq) as previous_seq
    from stg_snapshots as pull
    left join full_snapshots as prior
        on prior.target_domain = pull.target_domain
        and prior.search_type = pull.search_type
        and prior.filter_hash = pull.filter_hash
        and prior.snapshot_date < pull.snapshot_date
    where pull.snapshot_kind = 'last_week'
    group by pull.target_domain, pull.search_type, pull.filter_hash, pull.snapshot_date
),

last_week_candidates as (
    select
        lw.target_domain,
        lw.search_type,
        lw.filter_hash,
        lw.ref_domain,
        lw.registrable_domain,
        lw.domain_rank,
        lw.ref_pages,
        lw.snapshot_date as detected_on,
        prior.snapshot_date as previous_snapshot_date,
        pull.previous_seq,
        'last_week' as detected_by
    from stg_ref_domains as lw
    inner join last_week_pulls as pull
        on pull.target_domain = lw.target_domain
        and pull.search_type = lw.search_type
        and pull.filter_hash = lw.filter_hash
        and pull.snapshot_date = lw.snapshot_date
    left join full_snapshots as prior
        on prior.target_domain = pull.target_domain
        and prior.search_type = pull.search_type
        and prior.filter_hash = pull.filter_hash
        and prior.full_seq = pull.previous_seq
    where lw.snapshot_kind = 'last_week'
        and not exists (
            select 1
            from full_rows as known
            where known.target_domain = lw.target_domain
                and known.search_type = lw.search_type
                and known.filter_hash = lw.filter_hash
                and known.full_seq = pull.previous_seq
                and known.ref_domain = lw.ref_domain
        )
),

candidates as (
    select * from diff_candidates
    union all
    select * from last_week_candidates
),

-- one episode per (series, domain, preceding snapshot); the earliest detection describes it
episodes as (
    select
        candidates.*,
        row_number() over (
            partition by target_domain, search_type, filter_hash, ref_domain, previous_seq
            order by detected_on, case when detected_by = 'snapshot_diff' then 0 else 1 end
        ) as detection_order,
        min(detected_by) over (
            partition by target_domain, search_type, filter_hash, ref_domain, previous_seq
        ) as first_detector,
        max(detected_by) over (
            partition by target_domain, search_type, filter_hash, ref_domain, previous_seq
        ) as last_detector
    from candidates
),

first_full_appearance as (
    select target_domain, search_type, filter_hash, ref_domain, min(full_seq) as first_seq
    from full_rows
    group by target_domain, search_type, filter_hash, ref_domain
),

final as (
    select
        episodes.target_domain,
        episodes.search_type,
        episodes.ref_domain,
        coalesce(names.ref_domain_unicode, episodes.ref_domain) as ref_domain_unicode,
        episodes.registrable_domain,
        episodes.detected_on,
        episodes.previous_snapshot_date,
        case
            when episodes.first_detector <> episodes.last_detector then 'both'
            else episodes.first_detector
        end as detected_by,
        coalesce(first_full_appearance.first_seq < episodes.previous_seq, false) as is_returning,
        episodes.domain_rank,
        episodes.ref_pages
    from episodes
    left join first_full_appearance
        on first_full_appearance.target_domain = episodes.target_domain
        and first_full_appearance.search_type = episodes.search_type
        and first_full_appearance.filter_hash = episodes.filter_hash
        and first_full_appearance.ref_domain = episodes.ref_domain
    left join stg_ref_domain_names as names on names.ref_domain = episodes.ref_domain
    where episodes.detection_order = 1
)

select * from final
"""

OLD_LOST_REF_DOMAINS = """\
with full_snapshots as (
    select * from stg_full_snapshots
),

full_rows as (
    select * from stg_full_ref_domains
),

series_end as (
    select target_domain, search_type, filter_hash, max(full_seq) as last_seq
    from full_snapshots
    group by target_domain, search_type, filter_hash
),

-- in F(i), not in F(i+1)
lost as (
    select
        prev.target_domain,
        prev.search_type,
        prev.filter_hash,
        prev.ref_domain,
        prev.registrable_domain,
        prev.domain_rank,
        prev.ref_pages,
        prev.snapshot_date as last_seen_on,
        next_snapshot.snapshot_date as lost_on,
        next_snapshot.full_seq as lost_seq
    from full_rows as prev
    inner join full_snapshots as next_snapshot
        on next_snapshot.target_domain = prev.target_domain
        and next_snapshot.search_type = prev.search_type
        and next_snapshot.filter_hash = prev.filter_hash
        and next_snapshot.full_seq = prev.full_seq + 1
    where not exists (
        select 1
        from full_rows as cur
        where cur.target_domain = prev.target_domain
            and cur.search_type = prev.search_type
            and cur.filter_hash = prev.filter_hash
            and cur.full_seq = prev.full_seq + 1
            and cur.ref_domain = prev.ref_domain
    )
),

-- the first later full snapshot that holds the domain again
returns as (
    select
        lost.target_domain,
        lost.search_type,
        lost.filter_hash,
        lost.ref_domain,
        lost.lost_seq,
        min(later.full_seq) as return_seq
    from lost
    inner join full_rows as later
        on later.target_domain = lost.target_domain
        and later.search_type = lost.search_type
        and later.filter_hash = lost.filter_hash
        and later.ref_domain = lost.ref_domain
        and later.full_seq > lost.lost_seq
    group by lost.target_domain, lost.search_type, lost.filter_hash, lost.ref_domain, lost.lost_seq
),

absences as (
    select
        lost.*,
        returns.return_seq,
        coalesce(returns.return_seq, series_end.last_seq + 1) - lost.lost_seq as consecutive_absences
    from lost
    inner join series_end
        on series_end.target_domain = lost.target_domain
        and series_end.search_type = lost.search_type
        and series_end.filter_hash = lost.filter_hash
    left join returns
        on returns.target_domain = lost.target_domain
        and returns.search_type = lost.search_type
        and returns.filter_hash = lost.filter_hash
        and returns.ref_domain = lost.ref_domain
        and returns.lost_seq = lost.lost_seq
),

final as (
    select
        absences.target_domain,
        absences.search_type,
        absences.ref_domain,
        coalesce(names.ref_domain_unicode, absences.ref_domain) as ref_domain_unicode,
        absences.registrable_domain,
        absences.lost_on,
        absences.last_seen_on,
        absences.domain_rank,
        absences.ref_pages,
        returned.snapshot_date as returned_on,
        absences.consecutive_absences,
        (
            absences.return_seq is null
            and absences.consecutive_absences >= {lost_confirmation_snapshots}
        ) as confirmed
    from absences
    left join full_snapshots as returned
        on returned.target_domain = absences.target_domain
        and returned.search_type = absences.search_type
        and returned.filter_hash = absences.filter_hash
        and returned.full_seq = absences.return_seq
    left join stg_ref_domain_names as names on names.ref_domain = absences.ref_domain
)

select * from final
"""

START = dt.date(2026, 1, 5)
WEEKS = range(12)
# (target, search type, filter, weeks): two series of a.com side by side
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
                rows_loaded = len(names)
                if status == "complete" and names and rng.random() < 0.05:
                    rows_loaded += 1  # a load cut between its two tables: unreadable
                ledger.append((key, target, search_type, filter_hash, kind, when, status, rows_loaded))
                rows += [(key, name, name.split(".", 1)[-1] if name.count(".") > 1 else name,
                          rng.randint(0, 100), rng.randint(1, 50)) for name in names]
    return ledger, rows


def _warehouse(ledger: list[tuple], rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE snapshots (snapshot_key VARCHAR, target_domain VARCHAR, search_type VARCHAR, "
                "filter_hash VARCHAR, snapshot_kind VARCHAR, snapshot_date DATE, status VARCHAR, rows_loaded BIGINT, "
                "rows_rejected BIGINT DEFAULT 0)")
    con.execute("CREATE TABLE ref_domains (snapshot_key VARCHAR, ref_domain VARCHAR, registrable_domain VARCHAR, "
                "domain_rank BIGINT, ref_pages BIGINT)")
    con.execute("CREATE TABLE stg_ref_domain_names (ref_domain VARCHAR, ref_domain_unicode VARCHAR)")
    con.execute("CREATE TABLE target_competitors (target_domain VARCHAR, search_type VARCHAR, "
                "competitor_domain VARCHAR, competitor_search_type VARCHAR)")  # the link gap's input: none here
    con.executemany("INSERT INTO snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)", ledger)
    if rows:
        con.executemany("INSERT INTO ref_domains VALUES (?, ?, ?, ?, ?)", rows)
    con.execute("INSERT INTO stg_ref_domain_names VALUES ('xn--bcher-kva.de', 'bücher.de')")
    params = {"lost_confirmation_snapshots": CONFIRM}
    for model in load_models():
        kind = "VIEW" if model.materialized == "view" else "TABLE"
        con.execute(f"CREATE {kind} {model.name} AS {render(model, params)}")
    return con


def _rows(con: duckdb.DuckDBPyConnection, select: str) -> list[tuple]:
    return sorted(con.execute(select).fetchall(), key=repr)


REFERENCE_SQL = Path(__file__).resolve().parent / "reference_sql"
PUBLIC_MODELS = ("new_ref_domains", "lost_ref_domains", "ref_domain_changes", "ref_domains_weekly",
                 "ref_domains_current")


def _build_reference_models(con: duckdb.DuckDBPyConnection) -> None:
    """The models before layering, in schema `reference`, in their numbered order. DuckDB resolves
    a view's tables in its own schema first, so each reads the reference models it always read,
    and the loaded tables in main; queries run meanwhile see reference's models first too."""
    con.execute("CREATE SCHEMA reference")
    con.execute("SET search_path = 'reference,main'")
    for file in sorted(REFERENCE_SQL.glob("*.sql")):
        sql = file.read_text(encoding="utf-8").replace("{lost_confirmation_snapshots}", str(CONFIRM))
        kind = "VIEW" if "-- materialized: view" in sql else "TABLE"
        con.execute(f"CREATE {kind} reference.{file.stem.split('_', 1)[1]} AS {sql}")


@pytest.mark.parametrize("seed", range(8))
def test_new_and_lost_models_equal_the_anti_join_queries_they_replaced(seed):
    ledger, rows = random_history(seed)
    con = _warehouse(ledger, rows)
    _build_reference_models(con)  # the staging the anti-join queries read
    old_new = _rows(con, OLD_NEW_REF_DOMAINS)
    old_lost = _rows(con, OLD_LOST_REF_DOMAINS.replace("{lost_confirmation_snapshots}", str(CONFIRM)))
    assert _rows(con, "SELECT * FROM main.new_ref_domains") == old_new
    assert _rows(con, "SELECT * FROM main.lost_ref_domains") == old_lost
    # the history exercises what the rewrite could get wrong
    detectors = {row[7] for row in old_new}
    assert {"snapshot_diff", "last_week"} <= detectors
    assert any(row[8] for row in old_new)  # a returning domain
    assert any(row[9] is not None for row in old_lost) and any(row[11] for row in old_lost)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("series", [SERIES, SERIES_WITH_FILTER_CHANGE], ids=["side_by_side", "filter_change"])
def test_layered_models_equal_the_models_before_layering(seed, series):
    ledger, rows = random_history(seed, series)
    con = _warehouse(ledger, rows)
    _build_reference_models(con)
    models = PUBLIC_MODELS if series is SERIES_WITH_FILTER_CHANGE else ("new_ref_domains", "lost_ref_domains",
                                                                        "ref_domain_changes")
    for model in models:
        columns = [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                             "table_schema = 'reference' AND table_name = ? ORDER BY ordinal_position",
                                             [model]).fetchall()]
        assert columns == [r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                     "table_schema = 'main' AND table_name = ? "
                                                     "ORDER BY ordinal_position", [model]).fetchall()], model
        expected = _rows(con, f"SELECT * FROM reference.{model}")
        assert _rows(con, f"SELECT * FROM main.{model}") == expected, model
        assert expected, f"{model} is empty: the comparison proves nothing"
    # both of a.com's filters are read: the history has the series change the test is about
    filters = con.execute("SELECT DISTINCT filter_hash FROM main.stg_snapshots WHERE target_domain = 'a.com' "
                          "AND search_type = 'domain_with_subdomains' AND snapshot_kind = 'full'").fetchall()
    assert sorted(filters) == [("f1",), ("none",)]
