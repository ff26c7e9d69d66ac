"""SQL models against golden scenarios replayed through the emulator.

The expected rows come from the emulator's link graph (the truth of each day) through a small
reference of docs/data.md's Models rules written here in Python, never from the models themselves.
"""

from __future__ import annotations

import datetime as dt

import dlt
import pytest
import sqlglot
from sqlglot import exp

from serpstat_refdomains import models
from serpstat_refdomains.emulator import Profile, SerpstatEmulator
from serpstat_refdomains.errors import ModelGraphError, ModelTestFailed
from serpstat_refdomains.models import (
    NAMES_READ_TABLE,
    NAMES_TABLE,
    SOURCE_TABLES,
    catalog,
    load_models,
    model_names,
    model_params,
    render,
    run_data_tests,
    transpile,
)
from serpstat_refdomains.normalize import normalize_domain
from serpstat_refdomains.warehouse import make_pipeline
from tests.helpers import (
    TOKEN,
    fast_client,
    model_rows,
    needs_postgres,
    query,
    run_pipeline,
    warehouse_of,
    weekly_full_runs,
)
from tests.model_reference import (
    CONFIRM,
    LOST_COLUMNS,
    NEW_COLUMNS,
    ChangeRow,
    CurrentRow,
    WeekRow,
    changes,
    current,
    reference,
    weekly,
)
from tests.scenarios import START, WEEKS, golden_duckdb


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    return golden_duckdb(tmp_path_factory)  # replayed once a session, shared with test_warehouse


def test_scenario_has_the_cases_it_claims(golden):
    _workdir, fulls, pulls, statuses = golden
    week = dt.timedelta(weeks=1)
    assert statuses[("full", START + 3 * week)] == "incomplete"
    assert statuses[("full", START + 5 * week)] == "suspect_empty"
    assert statuses[("last_week", START + 6 * week)] == "failed"
    assert len(fulls) == WEEKS - 2 and len(pulls) == WEEKS - 1
    new, lost = reference(fulls, pulls, "golden.com")
    assert any(r.returned_on is not None for r in lost), "no domain lost and later returning"
    assert any(r.consecutive_absences == 1 and r.returned_on is not None for r in lost), \
        "no domain absent for one snapshot only"
    assert any(r.is_returning for r in new), "no returning new domain"
    assert any(r.previous_snapshot_date is None and r.detected_by == "last_week" for r in new), \
        "no last_week detection on the baseline date"
    assert any(r.detected_by == "both" for r in new) and any(r.detected_by == "snapshot_diff" for r in new)
    known = [name for day, pull in pulls[1:] for name in pull
             if any(name in f for d, f in fulls if d < day)]
    assert known, "no last_week row that was already known"


def test_new_ref_domains_match_the_truth(golden):
    workdir, fulls, pulls, _ = golden
    expected_new, _ = reference(fulls, pulls, "golden.com")
    got = set(query(workdir, f"SELECT {NEW_COLUMNS} FROM serpstat.new_ref_domains"))
    assert got == expected_new


def test_lost_ref_domains_match_the_truth(golden):
    workdir, fulls, pulls, _ = golden
    _, expected_lost = reference(fulls, pulls, "golden.com")
    got = set(query(workdir, f"SELECT {LOST_COLUMNS} FROM serpstat.lost_ref_domains"))
    assert got == expected_lost and expected_lost


def test_weekly_and_current_match_the_truth(golden):
    workdir, fulls, pulls, _ = golden
    new, lost = reference(fulls, pulls, "golden.com")
    got = {WeekRow(*r) for r in query(workdir, f"SELECT {', '.join(WeekRow._fields)} FROM serpstat.ref_domains_weekly")}
    assert got == weekly("golden.com", "domain_with_subdomains", fulls, pulls, new, lost)
    assert any(r.ref_domains is None for r in got), "the weeks of ignored full snapshots have no size"
    got_current = set(query(workdir, f"SELECT {', '.join(CurrentRow._fields)} FROM serpstat.ref_domains_current"))
    assert got_current == current("golden.com", "domain_with_subdomains", fulls, pulls)


# What the golden history can say beyond the data tests every build runs (sql/<layer>/<model>.toml):
# each query returns the rows that break it, and none may come back.
GOLDEN_ASSERTIONS = {
    "weekly monday": "SELECT * FROM serpstat.ref_domains_weekly WHERE isodow(week_start) <> 1",
    "no row from a non-complete snapshot": (
        "SELECT detected_on FROM serpstat.new_ref_domains WHERE detected_on IN "
        "(SELECT snapshot_date FROM serpstat.snapshots WHERE status <> 'complete' AND snapshot_kind = 'full') "
        "AND detected_by = 'snapshot_diff' UNION ALL "
        "SELECT lost_on FROM serpstat.lost_ref_domains WHERE lost_on IN "
        "(SELECT snapshot_date FROM serpstat.snapshots WHERE status <> 'complete' AND snapshot_kind = 'full') "
        "OR last_seen_on IN "
        "(SELECT snapshot_date FROM serpstat.snapshots WHERE status <> 'complete' AND snapshot_kind = 'full') "
        "UNION ALL "
        "SELECT detected_on FROM serpstat.new_ref_domains WHERE detected_by = 'last_week' AND detected_on IN "
        "(SELECT snapshot_date FROM serpstat.snapshots WHERE status <> 'complete' AND snapshot_kind = 'last_week') "
        "UNION ALL "
        "SELECT snapshot_date FROM serpstat.ref_domains_current WHERE snapshot_date IN "
        "(SELECT snapshot_date FROM serpstat.snapshots WHERE status <> 'complete' AND snapshot_kind = 'full')"),
}


@pytest.mark.parametrize("name", sorted(GOLDEN_ASSERTIONS))
def test_golden_assertions(golden, name):
    workdir = golden[0]
    assert query(workdir, GOLDEN_ASSERTIONS[name]) == []


def test_every_build_of_the_golden_history_ran_the_data_tests_and_they_pass(golden):
    """replay_golden builds the models after every run, each build running every model's data
    tests: the last one is run again here, and each kind of test is there to run."""
    workdir = golden[0]
    pipeline = make_pipeline(dlt.destinations.duckdb(str(workdir / "refdomains.duckdb")), None,
                             str(workdir / "pipelines"))
    names = [NAMES_TABLE, NAMES_READ_TABLE, *model_names()]
    with pipeline.sql_client() as client:
        ran = run_data_tests(client, names, "duckdb", model_params(CONFIRM), SOURCE_TABLES | set(names))
    docs = [catalog()[name] for name in names]
    assert ran > 50 and all(any(getattr(doc, kind) for doc in docs) for kind in ("unique_key", "assertions"))
    assert any(c.not_null for doc in docs for c in doc.columns) and any(c.accepted_values for doc in docs
                                                                          for c in doc.columns)


@pytest.mark.parametrize("warehouse", ["duckdb", pytest.param("postgres", marks=needs_postgres)])
def test_a_failing_data_test_undoes_the_whole_build_in_one_line(tmp_path, emulator, warehouse, request):
    """A donor's row deleted by hand from int_snapshot_pair_changes, which builds keep: its pair
    no longer adds up to the change in size between its snapshots. The next build's data test
    says so in one line (the model, the test, how many rows, one of them), the build's
    transaction is rolled back (every model as the last build left it), and `--full-refresh`
    compares the pairs again and passes."""
    dataset, destination = warehouse_of(warehouse, tmp_path, request)
    reports = weekly_full_runs(tmp_path, emulator, "tested.com", 120, 2, destination=destination,
                               dataset_name=dataset, build_models=True)
    assert [r.models_error for r in reports] == [None, None]
    pipeline = make_pipeline(destination, dataset, str(tmp_path / "pipelines"))
    with pipeline.sql_client() as client:
        changes = client.make_qualified_table_name("int_snapshot_pair_changes")
        pair, donor = client.execute_sql(f"SELECT pair_key, ref_domain FROM {changes} WHERE change = 'added' "
                                         "AND pair_key NOT LIKE ' > %%' ORDER BY pair_key, ref_domain LIMIT 1")[0]
        client.execute_sql(f"DELETE FROM {changes} WHERE pair_key = %s AND ref_domain = %s", pair, donor)
    before = model_rows(pipeline)

    with pytest.raises(ModelTestFailed) as failed:
        models.build(pipeline)
    message = str(failed.value)
    assert message.startswith("model int_snapshot_pair_changes fails its data test changes_add_up_to_the_size_change: "
                              f"1 row breaks it, e.g. pair_key={pair!r}, added=")
    assert "\n" not in message and "later_rows=" in message
    assert model_rows(pipeline) == before

    models.build(pipeline, full_refresh=True)
    rebuilt = model_rows(pipeline)
    assert (pair, donor) in {(row[0], row[1]) for row in rebuilt["int_snapshot_pair_changes"]}
    assert rebuilt["new_ref_domains"] == before["new_ref_domains"]


def test_filter_change_starts_a_new_series_without_mass_new_or_lost(tmp_path):
    with SerpstatEmulator(token=TOKEN, seed=5, today=START) as emulator:
        emulator.graph.set_profile("series.com", Profile(base_size=200))
        rank_filter = [[{"field": "domain_rank", "compareType": "gte", "value": [10]}]]
        with fast_client(emulator) as client:
            for week in range(6):
                day = START + dt.timedelta(weeks=week)
                emulator.today = day
                options = {"complex_filter": rank_filter} if week >= 3 else {}
                run_pipeline(tmp_path, emulator, ["series.com"], day, client=client, build_models=True,
                             kind="full", settings_options=options)
        switch = START + dt.timedelta(weeks=3)
        sizes = dict(query(tmp_path, "SELECT snapshot_date, rows_loaded FROM serpstat.snapshots"))
        assert sizes[switch] < sizes[switch - dt.timedelta(weeks=1)]  # the filter really narrowed it
        # the switch date is a new baseline: nothing new or lost on it
        assert query(tmp_path, "SELECT * FROM serpstat.new_ref_domains WHERE detected_on = ?", [switch]) == []
        assert query(tmp_path, "SELECT * FROM serpstat.lost_ref_domains WHERE lost_on = ?", [switch]) == []
        # after it, diffs happen within the new series only
        later = START + dt.timedelta(weeks=4)
        before = {normalize_domain(n) for n in emulator.graph.truth("series.com", switch)
                  if any(d.name == n and d.rank >= 10 for d in emulator.graph.active("series.com", switch))}
        now = {normalize_domain(d.name) for d in emulator.graph.active("series.com", later) if d.rank >= 10}
        got_new = {r[0] for r in query(tmp_path, "SELECT ref_domain FROM serpstat.new_ref_domains "
                                                 "WHERE detected_on = ?", [later])}
        assert got_new == now - before


@pytest.mark.parametrize("dialect", ["postgres", "bigquery", "snowflake", "spark", "duckdb"])
def test_every_model_transpiles(dialect):
    tables = {"ref_domains", "snapshots", "target_competitors"} | {m.name for m in load_models()}
    for model in load_models():
        sql = transpile(render(model, model_params(2)), dialect, "serpstat", tables)
        assert "serpstat" in sql and sql.lstrip().upper().startswith(("WITH", "SELECT"))
        # what we emit must read back in the target dialect
        sqlglot.parse_one(sql, read=dialect)


def test_postgres_reads_views_through_subqueries_and_joins_snapshots_by_key():
    """PostgreSQL plans a view whose query has a WITH on its own: every read of stg_ref_domains
    built the whole history's rows before the reader narrowed them. And it multiplies the
    selectivities of a key and its date into a 2% estimate that hashed the history. Its SQL
    inlines the CTEs read once and leaves the date out beside the key; DuckDB's keeps both."""
    tables = {"ref_domains", "snapshots", "target_competitors"} | {m.name for m in load_models()}
    models = {m.name: m for m in load_models()}

    def sql_of(name, dialect):
        return sqlglot.parse_one(transpile(render(models[name], model_params(2)), dialect, "serpstat", tables),
                                 read=dialect)

    def on_columns(join):
        return {c.name for c in join.args["on"].find_all(exp.Column)} if join.args.get("on") else set()

    def date_joins(tree):
        return [j for j in tree.find_all(exp.Join) if "snapshot_date" in on_columns(j)]

    for name in ("stg_ref_domains", "int_snapshot_pair_changes", "ref_domains_current"):
        duck, pg = sql_of(name, "duckdb"), sql_of(name, "postgres")
        assert date_joins(duck) and not date_joins(pg), name
        assert all("snapshot_key" in on_columns(j) for j in date_joins(duck))
    assert sql_of("stg_ref_domains", "duckdb").args.get("with_") is not None
    assert sql_of("stg_ref_domains", "postgres").args.get("with_") is None
    # a CTE read twice stays one: inlining it would compute it twice
    kept = {cte.alias for cte in sql_of("int_snapshot_pair_changes", "postgres").find_all(exp.CTE)}
    assert "numbered" in kept and "side_rows" not in kept
    # a list of column names on a CTE or on its read would be lost in a subquery: it stays a CTE
    for sql in ("with c(a, b) as (select b, a from t) select a, b from c",
                "with c as (select 1 as x, 2 as y) select * from c as z(y, x)"):
        assert transpile(sql, "postgres", "serpstat", {"t"}).startswith("WITH c")


def test_render_refuses_non_integer_parameters():
    model = next(m for m in load_models() if m.name == "lost_ref_domains")
    with pytest.raises(ModelGraphError, match="integer parameter"):
        render(model, {"lost_confirmation_snapshots": "2; DROP TABLE snapshots"})


def _join_blocks(model) -> list[str]:
    """Each join of a model as `<kind> join <what it reads> on <condition>`, with table aliases
    dropped and an import CTE (`x as (select * from model)`) read as the model it imports; and
    each NOT EXISTS anti-join likewise."""
    tree = sqlglot.parse_one(render(model, model_params(2)), read="duckdb")
    imports = {}
    for cte in tree.find_all(exp.CTE):
        select = cte.this
        tables = list(select.find_all(exp.Table))
        if [type(e) for e in select.expressions] == [exp.Star] and len(tables) == 1 and not select.args.get("where"):
            imports[cte.alias] = tables[0].name

    def bare(node):
        node = node.copy()
        for column in node.find_all(exp.Column):
            column.set("table", None)
        for table in node.find_all(exp.Table):
            table.set("alias", None)
            table.set("this", exp.to_identifier(imports.get(table.name, table.name)))
        return node

    blocks = []
    for join in tree.find_all(exp.Join):
        condition = join.args.get("on")
        conjuncts = sorted(bare(c).sql() for c in condition.flatten()) if isinstance(condition, exp.And) else \
            [bare(condition).sql() if condition is not None else f"using {join.args.get('using')}"]
        kind = " ".join(word for word in (join.side, join.kind) if word).lower() or "inner"
        blocks.append(f"{kind} join {imports.get(join.this.name, join.this.name)} on " + " and ".join(conjuncts))
    blocks += [f"anti-join {bare(node.this).sql()}" for node in tree.find_all(exp.Not)
               if isinstance(node.this, exp.Exists)]
    return blocks


def test_no_join_or_anti_join_is_written_twice_across_the_models():
    """The series is joined on series_key, computed once in staging; new and lost read one table of
    changes; the donor's display name is looked up once: nothing is copied from model to model."""
    seen: dict[str, str] = {}
    for model in load_models():
        for block in _join_blocks(model):
            assert block not in seen, f"{model.name} repeats a join of {seen[block]}: {block}"
            seen[block] = model.name
            # the three series columns are never joined on again: series_key stands for them
            assert "filter_hash = filter_hash" not in block, f"{model.name}: {block}"
    assert len(seen) > 10  # the parse found the models' joins


def test_models_import_what_they_read_at_the_top_and_read_only_lower_layers():
    """dbt's shape: each model opens with import CTEs (`x as (select * from model)`), one per
    relation it reads, and everything after reads those; staging reads the loaded tables, the layers
    above read the layers below (or beside), never the loaded tables."""
    layers = {m.name: m.layer for m in load_models()} | {"ref_domains": "loaded", "snapshots": "loaded",
                                                         "stg_ref_domain_names": "staging",
                                                         "target_competitors": "loaded"}
    allowed = {"staging": {"loaded", "staging"}, "intermediate": {"staging", "intermediate"},
               "marts": {"staging", "intermediate", "marts"}}
    for model in load_models():
        assert {layers[name] for name in model.depends_on} <= allowed[model.layer], model.name
        tree = sqlglot.parse_one(render(model, model_params(2)), read="duckdb")
        ctes = list(tree.args["with_"].expressions) if tree.args.get("with_") else []
        imports = [cte for cte in ctes if [type(e) for e in cte.this.expressions] == [exp.Star]
                   and [t.name for t in cte.this.find_all(exp.Table)] in ([name] for name in model.depends_on)]
        assert ctes[:len(imports)] == imports, f"{model.name}: import CTEs come first"
        read = [t.name for cte in imports for t in cte.this.find_all(exp.Table)]
        assert sorted(read) == sorted(set(read)) == sorted(model.depends_on), f"{model.name}: one import a relation"
        for cte in [*ctes[len(imports):], tree]:
            body = cte.this if cte is not tree else tree.copy()
            if cte is tree:
                body.set("with_", None)
            assert not {t.name for t in body.find_all(exp.Table)} & set(model.depends_on), \
                f"{model.name}: {getattr(cte, 'alias', 'the final select')} reads a model directly"


def _sql_folder(root, files: dict[str, str]):
    for path, sql in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(sql)
    return root


def test_models_build_in_the_order_their_references_give_not_by_name_or_folder(tmp_path):
    root = _sql_folder(tmp_path, {
        "marts/a_report.sql": "-- materialized: view\nwith source as (select * from z_step) select * from source",
        "intermediate/z_step.sql": "select * from b_clean where n > {limit}",
        "staging/b_clean.sql": "with ledger as (select * from snapshots) select * from ledger",
        "marts/m_other.sql": "select count(*) as n from a_report cross join stg_ref_domain_names",
    })
    models = load_models(root)
    assert [(m.layer, m.name, m.materialized) for m in models] == [
        ("staging", "b_clean", "table"), ("intermediate", "z_step", "table"), ("marts", "a_report", "view"),
        ("marts", "m_other", "table")]
    # a CTE is not a dependency; the loaded tables and the runner's names table are
    assert [m.depends_on for m in models] == [("snapshots",), ("b_clean",), ("z_step",),
                                              ("a_report", "stg_ref_domain_names")]


def test_the_shipped_models_build_after_everything_they_read():
    built: set[str] = set()
    for model in load_models():
        assert set(model.depends_on) - {"ref_domains", "snapshots", "stg_ref_domain_names",
                                        "target_competitors"} <= built, model.name
        built.add(model.name)


@pytest.mark.parametrize("files, message", [
    ({"marts/a.sql": "select * from b", "marts/b.sql": "select * from c", "staging/c.sql": "select * from a"},
     r"^SQL models read each other in a cycle: (a -> c -> b -> a|b -> a -> c -> b|c -> b -> a -> c)$"),
    ({"marts/a.sql": "select * from a"}, r"^SQL models read each other in a cycle: a -> a$"),
    ({"marts/a.sql": "with x as (select * from snapshots) select * from x join stg_snapshot using (k)"},
     r"^SQL model 'a' reads 'stg_snapshot', which is neither a model in sql/ nor a loaded table "
     r"\(ref_domains, snapshots, stg_ref_domain_names, target_competitors\)$"),
    ({"staging/a.sql": "select 1", "marts/a.sql": "select 2"},
     r"^two SQL models are named 'a' \((staging/ and marts/|marts/ and staging/)\): model names must be unique"),
    ({"marts/a.sql": "select from where"}, r"^SQL model 'a' does not parse: "),
])
def test_a_model_set_that_cannot_be_built_is_one_clear_error(tmp_path, files, message):
    with pytest.raises(ModelGraphError, match=message) as raised:
        load_models(_sql_folder(tmp_path, files))
    assert "\n" not in str(raised.value)


def test_ref_domain_changes_equal_new_and_lost(golden):
    workdir, fulls, pulls, _ = golden
    expected = changes(*reference(fulls, pulls, "golden.com"))
    got = query(workdir, f"SELECT {', '.join(ChangeRow._fields)} FROM serpstat.ref_domain_changes")
    assert len(got) == len(expected)  # one row per event, none merged away
    assert set(got) == expected
    assert {r.change for r in expected} == {"new", "returned", "lost"}


def test_ref_domain_unicode_is_the_display_form_of_the_key(golden):
    """The emulator's donors are Unicode names (bücher5.de); the models keep the punycode key and show
    the name the API gave, in new, lost and current alike."""
    workdir = golden[0]
    given = {normalize_domain(name): name.strip().rstrip(".").lower()
             for (name,) in query(workdir, "SELECT DISTINCT domain_from FROM serpstat.ref_domains")}
    for model in ("new_ref_domains", "lost_ref_domains", "ref_domains_current", "ref_domain_changes"):
        rows = query(workdir, f"SELECT ref_domain, ref_domain_unicode FROM serpstat.{model}")
        assert rows and all(unicode == given[key] for key, unicode in rows), model
        assert any(key.startswith("xn--") and not unicode.isascii() for key, unicode in rows), \
            f"{model} has no IDN donor: the test proves nothing"


WEEK_SQL = {
    "bigquery": "DATE_TRUNC(snapshot_date, ISOWEEK)",
    "snowflake": "DATEADD(DAY, 1 - DAYOFWEEKISO(snapshot_date), snapshot_date)",
    "postgres": "DATE_TRUNC('WEEK', snapshot_date)",
    "duckdb": "DATE_TRUNC('WEEK', snapshot_date)",
}


@pytest.mark.parametrize("dialect", sorted(WEEK_SQL))
def test_week_start_is_computed_once_and_on_monday_in_every_dialect(dialect):
    """stg_snapshots gives every snapshot its week; ref_domains_weekly and any later model read it."""
    computing = [m for m in load_models() if "date_trunc(" in m.sql.lower()]
    assert [m.name for m in computing] == ["stg_snapshots"]
    assert "week_start" in next(m for m in load_models() if m.name == "ref_domains_weekly").sql
    sql = transpile(render(computing[0], {}), dialect, "serpstat", {"snapshots", "ref_domains"})
    assert WEEK_SQL[dialect] in sql
    # neither BigQuery's Sunday WEEK nor Snowflake's WEEK_START-dependent truncation survives
    assert "TIMESTAMP_TRUNC" not in sql and "TRUNC(snapshot_date, WEEK)" not in sql
    if dialect == "snowflake":
        assert "DATE_TRUNC('WEEK'" not in sql


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery", "snowflake"])
def test_week_start_is_monday_when_executed(dialect):
    """The generated week expression, run on DuckDB over two weeks of days (every weekday, the
    year's turn): each day maps to the Monday on or before it. BigQuery's and Snowflake's SQL run
    here as sqlglot reads them back (no such warehouse at hand); PostgreSQL's runs in test_warehouse."""
    select = transpile("select cast(date_trunc('week', snapshot_date) as date) as week_start, snapshot_date "
                       "from days", dialect, "main", set())
    sql = sqlglot.transpile(select, read=dialect, write="duckdb")[0] if dialect != "duckdb" else select
    import duckdb
    with duckdb.connect() as con:
        con.execute("CREATE TABLE days AS SELECT CAST(d AS DATE) AS snapshot_date FROM "
                    "range(DATE '2026-12-25', DATE '2027-01-09', INTERVAL 1 DAY) t(d)")
        rows = con.execute(sql).fetchall()
    assert len(rows) == 15
    assert all(week == day - dt.timedelta(days=day.weekday()) for week, day in rows)


def test_bi_tiles_run_and_return_rows(golden):
    """The BI tiles of docs/reporting.md are SQL users paste into a tool: each query runs on the models."""
    import re
    from pathlib import Path
    guide = (Path(__file__).resolve().parents[1] / "docs" / "reporting.md").read_text()
    section = guide[guide.index("## BI tiles"):guide.index("## Link-gap tiles")]
    queries = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(queries) == 4
    for sql in queries:
        assert query(golden[0], sql), sql.splitlines()[0]
    assert query(golden[0],
                 "SELECT event_date AS time, change, count(*) FROM serpstat.ref_domain_changes GROUP BY 1, 2")
