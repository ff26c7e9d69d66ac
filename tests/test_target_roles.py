"""Every mart row says whose it is: `target_role` (tracked / competitor) and, for a competitor,
`competitor_of` (the tracked domains naming it), from the latest run's configuration
(target_competitors, through stg_target_roles), on DuckDB and PostgreSQL.

The configuration covers each rule: a competitor of one tracked domain, one shared by two, a
tracked domain that is also the other's competitor (tracked wins), and a domain tracked at first
and then taken out of the configuration (no role).
"""

from __future__ import annotations

import datetime as dt

import pytest

from serpstat_refdomains.emulator import Profile
from serpstat_refdomains.models import catalog, load_models
from tests.helpers import DAY, fast_client, needs_postgres, pg_rows, query, run_pipeline, warehouse_of
from tests.test_model_rewrite import SERIES_WITH_FILTER_CHANGE, _warehouse, random_history

OWN_A, OWN_B, RIVAL_X, RIVAL_Y, RETIRED = "own-a.com", "own-b.com", "rival-x.com", "rival-y.com", "retired.com"
CONFIGURED = [{"query": OWN_A, "competitors": [RIVAL_X, OWN_B]},
              {"query": OWN_B, "competitors": [RIVAL_X, RIVAL_Y]}]
EXPECTED = {
    OWN_A: ("tracked", None),
    OWN_B: ("tracked", None),  # also own-a.com's competitor: the user's own site all the same
    RIVAL_X: ("competitor", f"{OWN_A}, {OWN_B}"),  # sorted, whichever order the configuration lists
    RIVAL_Y: ("competitor", OWN_B),
    RETIRED: (None, None),  # loaded, then taken out of the configuration
}
TARGET_MARTS = ("new_ref_domains", "lost_ref_domains", "ref_domain_changes", "ref_domains_current",
                "ref_domains_weekly")
GAP_MARTS = ("link_gap", "link_gap_changes")


def test_every_mart_declares_the_role_columns_after_its_target():
    marts = [m.name for m in load_models() if m.layer == "marts"]
    assert sorted(marts) == sorted(TARGET_MARTS + GAP_MARTS)
    for name in marts:
        columns = [c.name for c in catalog()[name].columns]
        at = columns.index("search_type")
        assert columns[at + 1:at + 3] == ["target_role", "competitor_of"], name


@pytest.mark.parametrize("warehouse", ["duckdb", pytest.param("postgres", marks=needs_postgres)])
def test_marts_carry_each_targets_role(tmp_path, emulator, warehouse, request):
    dataset, destination = warehouse_of(warehouse, tmp_path, request)
    for domain, size in ((OWN_A, 60), (OWN_B, 70), (RIVAL_X, 80), (RIVAL_Y, 50), (RETIRED, 150)):
        emulator.graph.set_profile(domain, Profile(base_size=size))  # churns: new and lost rows
    with fast_client(emulator) as client:
        for week, domains in enumerate([[*CONFIGURED, RETIRED]] * 3 + [CONFIGURED]):
            emulator.today = DAY + dt.timedelta(weeks=week)
            report = run_pipeline(tmp_path, emulator, domains, emulator.today, client=client, kind="full",
                                  build_models=True, destination=destination, dataset_name=dataset)
            assert report.models_error is None

    def rows(sql: str) -> list[tuple]:
        if warehouse == "postgres":
            return pg_rows(dataset, sql.replace("serpstat.", "{ds}."))
        return query(tmp_path, sql)

    for mart in TARGET_MARTS:
        got = rows(f"SELECT DISTINCT target_domain, target_role, competitor_of FROM serpstat.{mart}")
        assert {domain: (role, of) for domain, role, of in got} == EXPECTED, mart
        assert len(got) == len(EXPECTED), f"{mart}: a target with two roles"
    for mart in GAP_MARTS:
        got = rows(f"SELECT DISTINCT target_domain, target_role, competitor_of FROM serpstat.{mart}")
        assert sorted(got) == [(OWN_A, "tracked", None), (OWN_B, "tracked", None)], mart
    # what a BI tile filters on: a tracked site's losses, without its rivals'
    own = rows("SELECT DISTINCT target_domain FROM serpstat.lost_ref_domains WHERE target_role = 'tracked'")
    assert sorted(own) == [(OWN_A,), (OWN_B,)]


def test_without_any_configuration_recorded_every_target_is_tracked():
    """A dataset no run of this version wrote has an empty target_competitors: as the report does,
    the models take every target loaded as tracked."""
    ledger, loaded = random_history(0, SERIES_WITH_FILTER_CHANGE)
    con = _warehouse(ledger, loaded)
    for mart in TARGET_MARTS:
        got = con.execute(f"SELECT DISTINCT target_domain, target_role, competitor_of FROM main.{mart}").fetchall()
        assert sorted(got) == [("a.com", "tracked", None), ("b.com", "tracked", None)], mart
