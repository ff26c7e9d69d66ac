"""API answers read right through a whole run: a wrong endpoint is never an empty snapshot, a
32000 per-second limit is waited out, not a failed snapshot."""

from __future__ import annotations

from serpstat_refdomains.emulator import Fault
from tests.helpers import DAY, TOKEN, ledger, loaded_domains, on, query, run_pipeline, snapshot_cost, truth


def test_wrong_api_query_404_fails_the_snapshot_instead_of_loading_it_empty(tmp_path, emulator):
    emulator.set_profile("first.com", 40)
    emulator.faults.add(Fault("wrong_api_query", times=-1))
    report = run_pipeline(tmp_path, emulator, ["first.com"], kind="full")
    result = report.results[0]
    assert result.status == "failed" and report.exit_code == 1
    assert "Wrong API query" in result.error and f"api_url {emulator.url}" in result.error
    row = ledger(tmp_path, "first.com")
    assert (row["status"], row["rows_loaded"]) == ("failed", 0)
    assert query(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'ref_domains'") == [(0,)]


def test_wrong_api_query_stops_the_run_instead_of_failing_every_target_alike(tmp_path, emulator):
    """The endpoint is wrong for every target: the first answer says so, and only the one snapshot
    the look-ahead had already started is asked again."""
    for name in ("first.com", "second.com", "third.com"):
        emulator.set_profile(name, 40)
    emulator.faults.add(Fault("wrong_api_query", times=-1))
    report = run_pipeline(tmp_path, emulator, ["first.com", "second.com", "third.com"], kind="full")
    assert [r.status for r in report.results] == ["failed"] * 3 and report.exit_code == 1
    assert "third.com" not in {e.query for e in emulator.log}
    assert all("api_url" in r.error for r in report.results[1:])


def test_wrong_api_path_stops_the_run_with_one_line_naming_api_url(tmp_path, emulator, monkeypatch, capsys):
    from serpstat_refdomains.cli import main

    wrong = emulator.url.rsplit("/v4", 1)[0] + "/api"
    for key, value in {"DLT_DATA_DIR": str(tmp_path / "dlt"), "SOURCES__SERPSTAT__API_TOKEN": TOKEN,
                       "SOURCES__SERPSTAT__API_URL": wrong, "SOURCES__SERPSTAT__DOMAINS": "first.com"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    with on(DAY):
        assert main(["run", "--kind", "full"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"HTTP 404 from api_url {wrong}" in err
    assert "https://api.serpstat.com/v4" in err and TOKEN not in err
    assert not (tmp_path / "serpstat_refdomains.duckdb").exists()


def test_per_second_limit_32000_mid_snapshot_is_waited_out(tmp_path, emulator):
    emulator.set_profile("busy.com", 50)
    emulator.faults.add(Fault("api_error", query="busy.com", page=3, code=32000,
                              message="You have sent more requests per second than available", times=2))
    report = run_pipeline(tmp_path, emulator, ["busy.com"], kind="full", settings_options={"page_size": 10})
    assert [(r.status, r.rows) for r in report.results] == [("complete", 50)]
    assert set(loaded_domains(tmp_path, "busy.com")) == truth(emulator, "busy.com")
    # the refused requests cost nothing, nothing was paid twice
    assert emulator.api.credits_charged == snapshot_cost(50, 10)


def test_depth_cap_answer_under_code_32018_splits_instead_of_failing(tmp_path, emulator):
    emulator.set_profile("deep.com", 50)
    emulator.faults.add(Fault("api_error", query="deep.com", page=3, code=32018,
                              message="To get more than 20 results use export report methods"))
    report = run_pipeline(tmp_path, emulator, ["deep.com"], kind="full", settings_options={"page_size": 10})
    assert [(r.status, r.rows) for r in report.results] == [("complete", 50)]
    assert set(loaded_domains(tmp_path, "deep.com")) == truth(emulator, "deep.com")
    assert ledger(tmp_path, "deep.com")["partitions"] > 1  # split below the cap it was told about


def test_a_page_without_a_total_fails_instead_of_loading_page_one_as_the_snapshot(tmp_path, emulator):
    """The total says how many pages to ask for; taking the first page's length instead made a
    complete snapshot of page 1 and reported every donor past it LOST."""
    emulator.set_profile("nototal.com", 25)
    emulator.faults.add(Fault("no_total", query="nototal.com", times=-1))
    report = run_pipeline(tmp_path, emulator, ["nototal.com"], kind="full", settings_options={"page_size": 10})
    result = report.results[0]
    assert (result.status, report.exit_code) == ("failed", 1)
    assert "without summary_info.total" in result.error
    row = ledger(tmp_path, "nototal.com")
    # the page was billed: the ledger and the run's total say so (status sums what was charged)
    assert row["rows_loaded"] == 0
    assert row["credits_spent"] == report.credits_spent == emulator.api.credits_charged == 1  # the count
    assert query(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'ref_domains'") == [(0,)]
