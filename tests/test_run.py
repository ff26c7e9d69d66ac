"""`refdomains run` end to end: emulator over HTTP, real dlt, real DuckDB."""

from __future__ import annotations

import datetime as dt
import json
import math

import dlt
import pytest

from serpstat_refdomains.emulator import Fault
from serpstat_refdomains.normalize import normalize_domain, registrable_domain
from serpstat_refdomains.paging import PARTITION_ATTEMPTS
from serpstat_refdomains.windows import plan_cost, plan_windows
from tests.helpers import (
    DAY,
    TOKEN,
    ledger,
    loaded_domains,
    on,
    query,
    ref_requests,
    run_pipeline,
    snapshot_cost,
    truth,
)


@pytest.mark.parametrize("total", [0, 1, 999, 1000, 1001, 2500])
def test_exact_pages_and_credits(tmp_path, emulator, total):
    emulator.set_profile("target.com", total)
    report = run_pipeline(tmp_path, emulator, ["target.com"], kind="full")
    requests = ref_requests(emulator)
    # a first pull does not know its size: a 1-row count comes first (an empty result ends there),
    # so no page 1 of 1,000 rows is paid for and thrown away when the result is over the depth cap
    assert requests[0].page == 1 and requests[0].size == 1
    counted = 1 if total else 0
    # then the planned windows, each sharing a row or a few with the one before (what proves the
    # seam): no probe, nothing past the end; they go out concurrently, so the log's order varies
    plan = plan_windows(total, 1000, first=(1, 1000)) if total else []
    assert sorted((e.page, e.size) for e in requests[1:]) == sorted(plan)
    cost = max(total, 1) + counted + (plan_cost(plan, total)[1] - total if total else 0)
    assert len(requests) <= math.ceil(total / 1000) * 1.1 + 2 and cost - counted <= max(total, 1) * 1.006
    assert emulator.api.credits_charged == cost
    assert report.credits_spent == cost
    [result] = report.results
    assert (result.status, result.rows, result.credits) == ("complete", total, cost)
    assert sorted(loaded_domains(tmp_path, "target.com")) == sorted(truth(emulator, "target.com"))
    row = ledger(tmp_path, "target.com")
    assert (row["status"], row["expected_total"], row["rows_loaded"], row["requests"], row["credits_spent"]) == (
        "complete", total, total, len(requests), cost)
    assert row["credits_left"] == 10_000_000 - cost
    assert report.exit_code == 0


def test_depth_cap_splits_into_partitions_whose_union_is_the_snapshot(tmp_path, emulator):
    emulator.api.depth_cap = 300
    emulator.set_profile("huge.com", 1000)
    report = run_pipeline(tmp_path, emulator, ["huge.com"], kind="full",
                          settings_options={"page_size": 100}, depth_cap=300)
    [result] = report.results
    assert result.status == "complete"
    loaded = loaded_domains(tmp_path, "huge.com")
    assert len(loaded) == len(set(loaded)) == 1000
    assert set(loaded) == truth(emulator, "huge.com")
    row = ledger(tmp_path, "huge.com")
    assert row["partitions"] > 1 and row["expected_total"] == 1000
    requests = ref_requests(emulator)
    assert all((e.page - 1) * e.size + 1 <= 300 for e in requests), "a page beyond the depth cap"
    charged = sum(e.charge for e in requests)
    assert row["credits_spent"] == charged == report.credits_spent
    # waste: 1-credit probes (the first a count of the whole result), one count to check the
    # union, and the boundary row read past the names no prefix reaches (inside their page when
    # there are any); no page of the whole result is paid for and thrown away
    probes = [e for e in requests if e.size == 1]
    leaves = json.loads(row["partition_plan"])
    boundaries = sum(1 for leaf in leaves if leaf.get("tail") and leaf["total"])
    shared = sum(plan_cost(plan_windows(leaf["total"], 100, 300, first=(1, 100)), leaf["total"])[1] - leaf["total"]
                 for leaf in leaves if not leaf.get("tail") and leaf["total"])  # what proves each seam
    assert charged == 1000 + len(probes) + boundaries + shared


def test_depth_cap_learned_from_the_api(tmp_path, emulator):
    """A cap narrower than configured is discovered from the 402 error, then split around."""
    emulator.api.depth_cap = 200
    emulator.set_profile("huge.com", 450)
    report = run_pipeline(tmp_path, emulator, ["huge.com"], kind="full", settings_options={"page_size": 100})
    assert report.results[0].status == "complete"
    assert set(loaded_domains(tmp_path, "huge.com")) == truth(emulator, "huge.com")


def test_rerun_same_date_spends_nothing_and_force_replaces(tmp_path, emulator):
    emulator.set_profile("a.com", 1500)
    run_pipeline(tmp_path, emulator, ["a.com"], kind="full")
    emulator.api.clear_log()
    again = run_pipeline(tmp_path, emulator, ["a.com"], kind="full")
    assert ref_requests(emulator) == [] and again.credits_spent == 0
    assert again.results[0].status == "already_complete" and again.exit_code == 0
    emulator.set_profile("a.com", 1200)  # the index changed since
    forced = run_pipeline(tmp_path, emulator, ["a.com"], kind="full", force=True)
    assert forced.results[0].status == "complete" and forced.credits_spent == snapshot_cost(1200, first_pull=False)
    loaded = loaded_domains(tmp_path, "a.com")
    assert len(loaded) == len(set(loaded)) == 1200
    assert set(loaded) == truth(emulator, "a.com")
    assert ledger(tmp_path, "a.com")["rows_loaded"] == 1200


def test_failure_of_one_target_keeps_the_others_and_rerun_fetches_only_it(tmp_path, emulator):
    for name, size in (("ok1.com", 1500), ("bad.com", 2500), ("ok2.com", 300)):
        emulator.set_profile(name, size)
    emulator.faults.add(Fault("http_error", query="bad.com", page=2, status=503, times=-1))
    report = run_pipeline(tmp_path, emulator, ["ok1.com", "bad.com", "ok2.com"], kind="full")
    statuses = {str(r.target): r.status for r in report.results}
    assert statuses == {"ok1.com": "complete", "bad.com": "failed", "ok2.com": "complete"}
    assert report.exit_code == 1
    bad = ledger(tmp_path, "bad.com")
    assert bad["status"] == "failed" and "still failing" in bad["error"] and bad["rows_loaded"] == 0
    assert loaded_domains(tmp_path, "bad.com") == []
    assert len(loaded_domains(tmp_path, "ok1.com")) == 1500

    emulator.faults.clear()
    emulator.api.clear_log()
    rerun = run_pipeline(tmp_path, emulator, ["ok1.com", "bad.com", "ok2.com"], kind="full")
    assert {e.query for e in ref_requests(emulator)} == {"bad.com"}
    assert rerun.credits_spent == snapshot_cost(2500) and rerun.exit_code == 0
    assert set(loaded_domains(tmp_path, "bad.com")) == truth(emulator, "bad.com")
    assert ledger(tmp_path, "bad.com")["status"] == "complete"


def test_total_moving_between_pages_is_fetched_again(tmp_path, emulator):
    emulator.set_profile("moving.com", 2500)
    emulator.faults.add(Fault("insert_rows", query="moving.com", page=2, count=5))
    report = run_pipeline(tmp_path, emulator, ["moving.com"], kind="full", max_workers=1)
    assert report.results[0].status == "complete"
    loaded = loaded_domains(tmp_path, "moving.com")
    assert len(loaded) == len(set(loaded)) == 2505
    assert set(loaded) == truth(emulator, "moving.com")
    requests = ref_requests(emulator)
    counts = [i for i, e in enumerate(requests) if e.size == 1]
    assert len(counts) == 2, "the result was counted, read, and counted and read again"
    again = [(e.page, e.size) for e in requests[counts[1] + 1:]]
    assert again == plan_windows(2505, 1000, first=(1, 1000))


def test_total_moving_on_every_attempt_is_incomplete(tmp_path, emulator):
    emulator.set_profile("moving.com", 2500)
    emulator.faults.add(Fault("insert_rows", query="moving.com", page=2, count=5, times=PARTITION_ATTEMPTS))
    report = run_pipeline(tmp_path, emulator, ["moving.com"], kind="full")
    assert report.results[0].status == "incomplete" and report.exit_code == 1
    assert "changed while it was paged" in ledger(tmp_path, "moving.com")["error"]


def test_idn_mixed_case_www_and_string_numbers(tmp_path, emulator):
    emulator.api.numbers_as_strings = True
    emulator.api.extra_fields = True
    run_pipeline(tmp_path, emulator, ["mixed.com"], kind="full")
    rows = query(tmp_path, "SELECT ref_domain, domain_from, registrable_domain, ref_pages, domain_rank, "
                           "domain_links, \"check\" FROM serpstat.ref_domains")
    donors = {d.name: d for d in emulator.graph.active("mixed.com", DAY)}
    assert len(rows) == len(donors)
    kinds = {"idn": 0, "upper": 0, "www": 0}
    for ref_domain, raw, registrable, pages, rank, links, check in rows:
        donor = donors[raw]
        assert ref_domain == normalize_domain(raw) and registrable == registrable_domain(ref_domain)
        assert (pages, rank, links) == (donor.ref_pages, donor.rank, donor.ref_pages)
        assert isinstance(pages, int) and check == donor.first_detected(DAY).isoformat()
        kinds["idn"] += (not raw.isascii() and ref_domain.startswith("xn--")) or ".xn--" in ref_domain
        kinds["upper"] += raw != raw.lower()
        kinds["www"] += raw.startswith("www.")
    assert all(kinds.values()), kinds


def test_empty_full_after_non_empty_is_suspect_empty(tmp_path, emulator):
    emulator.set_profile("flaky.com", 40)
    run_pipeline(tmp_path, emulator, ["flaky.com"], kind="full")
    emulator.set_profile("flaky.com", 0)
    emulator.api.clear_log()
    later = DAY + dt.timedelta(days=7)
    report = run_pipeline(tmp_path, emulator, ["flaky.com"], later, kind="full")
    assert report.results[0].status == "suspect_empty" and report.exit_code == 0
    assert [e.page for e in ref_requests(emulator)] == [1, 1]  # retried once
    row = ledger(tmp_path, "flaky.com")
    assert row["status"] == "suspect_empty" and "previous complete snapshot had 40 rows" in row["error"]


def test_budget_too_small_for_one_target(tmp_path, emulator):
    emulator.set_profile("small.com", 100)
    emulator.set_profile("large.com", 3000)
    report = run_pipeline(tmp_path, emulator, ["small.com", "large.com"], kind="full",
                          settings_options={"max_credits_per_run": 1500})
    statuses = {str(r.target): r.status for r in report.results}
    assert statuses == {"small.com": "complete", "large.com": "skipped_budget"}
    assert report.exit_code == 1
    # small.com's count and rows, then large.com's count: its 3,000 rows do not fit, and none is paid
    assert report.credits_spent == snapshot_cost(100) + 1
    assert [(e.query, e.size) for e in ref_requests(emulator)][-1] == ("large.com", 1)
    assert loaded_domains(tmp_path, "large.com") == []
    assert ledger(tmp_path, "large.com")["status"] == "skipped_budget"
    # the next run with the same budget skips it for the same 1-credit count
    emulator.api.clear_log()
    run_pipeline(tmp_path, emulator, ["large.com"], DAY + dt.timedelta(days=1), kind="full",
                 settings_options={"max_credits_per_run": 1500})
    assert [(e.page, e.size) for e in ref_requests(emulator)] == [(1, 1)]  # no history of a complete pull yet


def test_auto_kind_full_every_n_days_and_last_week_between(tmp_path, emulator):
    """A full snapshot's day pulls no last_week: the full one holds every donor it would list."""
    kinds = {(r.kind, r.status) for r in run_pipeline(tmp_path, emulator, ["auto.com"]).results}
    assert kinds == {("full", "complete")}
    between = DAY + dt.timedelta(days=3)
    emulator.today = between
    kinds = {(r.kind, r.status) for r in run_pipeline(tmp_path, emulator, ["auto.com"], between).results}
    assert kinds == {("last_week", "complete")}
    lw = loaded_domains(tmp_path, "auto.com", "last_week", between)
    assert lw and set(lw) == truth(emulator, "auto.com", last_week=True)
    emulator.today = DAY + dt.timedelta(days=7)
    kinds = {(r.kind, r.status) for r in run_pipeline(tmp_path, emulator, ["auto.com"]).results}
    assert kinds == {("full", "complete")}


def test_bad_rows_are_rejected_with_a_counted_reason(tmp_path, emulator):
    def hostile(donor, row):
        if donor.rank == 0:
            row["domain_from"] = ""
        elif donor.rank == 1:
            row["ref_pages"] = "lots"
        return row

    emulator.faults.add(Fault("rewrite_rows", query="hostile.com", rewrite=hostile, times=-1))
    emulator.set_profile("hostile.com", 500)
    report = run_pipeline(tmp_path, emulator, ["hostile.com"], kind="full")
    donors = emulator.graph.active("hostile.com", DAY)
    bad = sum(1 for d in donors if d.rank == 0)
    lots = sum(1 for d in donors if d.rank == 1)  # a bad metric: the donor loads, ref_pages NULL
    row = ledger(tmp_path, "hostile.com")
    assert bad > 0 and row["rows_rejected"] == bad and row["rows_loaded"] == 500 - bad
    assert lots > 0 and row["metrics_nulled"] == lots
    assert "domain is empty" in row["error"] and "ref_pages 'lots'" in row["error"]
    assert report.results[0].status == "complete"


def test_plain_dlt_source_loads_a_snapshot_with_its_ledger(tmp_path, emulator):
    """`serpstat()` for dlt users composing their own pipeline: config as arguments, one load."""
    import dlt

    from serpstat_refdomains.source import serpstat

    emulator.set_profile("plain.com", 1200)
    emulator.set_profile("plain.org", 0)
    pipeline = dlt.pipeline("plain_source", destination=dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb")),
                            dataset_name="serpstat", pipelines_dir=str(tmp_path / "pipelines"))
    with on(DAY):  # the day the emulator serves: the source files a snapshot under today only
        pipeline.run(serpstat(domains=["plain.com", "plain.org"], api_token=TOKEN, api_url=emulator.url,
                              requests_per_second=1000, snapshot_date=DAY.isoformat()))
    with pytest.raises(Exception, match="is in the past"):
        serpstat(domains=["plain.com"], api_token=TOKEN, api_url=emulator.url, snapshot_date=DAY.isoformat())
    assert set(loaded_domains(tmp_path, "plain.com")) == truth(emulator, "plain.com")
    assert (ledger(tmp_path, "plain.com")["status"], ledger(tmp_path, "plain.com")["rows_loaded"]) == ("complete", 1200)
    assert (ledger(tmp_path, "plain.org")["status"], ledger(tmp_path, "plain.org")["credits_spent"]) == ("complete", 1)
    assert emulator.api.credits_charged == snapshot_cost(1200) + snapshot_cost(0)


def test_duckdb_stays_open_between_loads_of_a_run(tmp_path):
    """dlt closes DuckDB after every load, and closing the last connection checkpoints the file:
    with one load per snapshot that cost more than the loads. During a run the database must
    stay open (its write-ahead log is not folded in after each load) and be whole afterwards."""
    from serpstat_refdomains.duckdb_session import duckdb_held_open
    from serpstat_refdomains.warehouse import make_pipeline

    database = tmp_path / "refdomains.duckdb"
    wal = tmp_path / "refdomains.duckdb.wal"
    run = make_pipeline(dlt.destinations.duckdb(str(database)), "serpstat", str(tmp_path / "pipelines"))
    with duckdb_held_open(run):
        run.run([{"n": 1}], table_name="probe")
        run.run([{"n": 2}], table_name="probe")
        assert wal.exists() and wal.stat().st_size > 0, "the database was checkpointed (closed) after a load"
    assert not wal.exists() or wal.stat().st_size == 0  # checkpointed once, at the end
    assert query(tmp_path, "SELECT n FROM serpstat.probe ORDER BY n") == [(1,), (2,)]


@pytest.mark.parametrize("limit", [5_001, 5_008, 5_009])
def test_a_budget_below_a_reads_full_cost_skips_it_before_paying_for_rows(tmp_path, emulator, limit):
    """5,000 rows at pages of 1,000 cost 5,009 on a first pull (count, rows, 8 seam probes). The
    budget checks counted the rows alone: a limit of 5,001-5,008 let the read start, paid for
    nearly every row, then ran out at the last seams and threw them all away."""
    emulator.set_profile("five.com", 5_000)
    report = run_pipeline(tmp_path, emulator, ["five.com"], kind="full",
                          settings_options={"max_credits_per_run": limit})
    row = ledger(tmp_path, "five.com")
    if limit >= snapshot_cost(5_000):
        assert (row["status"], row["rows_loaded"], emulator.api.credits_charged) == ("complete", 5_000, 5_009)
        return
    assert (row["status"], row["rows_loaded"], report.exit_code) == ("skipped_budget", 0, 1)
    assert emulator.api.credits_charged == row["credits_spent"] == 1  # the count alone
    # known from the ledger now? No complete pull yet: the next run counts again, for 1 credit
    emulator.api.clear_log()
    run_pipeline(tmp_path, emulator, ["five.com"], DAY + dt.timedelta(days=1), kind="full",
                 settings_options={"max_credits_per_run": limit})
    assert emulator.api.credits_charged == 1


@pytest.mark.parametrize("limit", [5_001, 5_007, 5_008])
def test_a_later_pull_whose_full_cost_does_not_fit_is_skipped_without_a_request(tmp_path, emulator, limit):
    """The previous complete pull says 5,000 rows: reading them again costs 5,008 (no count). A
    limit below that skips the snapshot before any request; it used to read page 1 and more."""
    emulator.set_profile("five.com", 5_000)
    run_pipeline(tmp_path, emulator, ["five.com"], kind="full")
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["five.com"], DAY + dt.timedelta(days=7), kind="full",
                          settings_options={"max_credits_per_run": limit})
    status = ledger(tmp_path, "five.com")["status"]
    if limit >= snapshot_cost(5_000, first_pull=False):
        assert (status, emulator.api.credits_charged) == ("complete", 5_008)
        return
    assert (status, report.exit_code, ref_requests(emulator)) == ("skipped_budget", 1, [])


def test_a_budget_equal_to_a_reads_cost_completes_it_when_its_last_page_is_short(tmp_path, emulator):
    """A budget of exactly what a read costs completes it, whatever the timing: the last window,
    one row, holds only that row of the budget while the other windows are in flight."""
    emulator.set_profile("five.com", 5_001)
    run_pipeline(tmp_path, emulator, ["five.com"], kind="full")
    for week in range(1, 4):  # the refusal depended on timing: several pulls
        emulator.api.clear_log()
        run_pipeline(tmp_path, emulator, ["five.com"], DAY + dt.timedelta(days=7 * week), kind="full",
                     settings_options={"max_credits_per_run": snapshot_cost(5_001, first_pull=False)})
        row = ledger(tmp_path, "five.com")
        assert (row["status"], row["rows_loaded"], emulator.api.credits_charged) == (
            "complete", 5_001, snapshot_cost(5_001, first_pull=False)), week
