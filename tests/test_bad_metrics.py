"""A bad metric never costs a donor: the donor loads with the metric NULL, the snapshot stays
complete, the ledger counts the NULLs (`metrics_nulled`) and the run's output names them."""

from __future__ import annotations

import datetime as dt

import duckdb

from serpstat_refdomains.emulator import Fault
from tests.helpers import DAY, TOKEN, ledger, loaded_domains, on, query, run_pipeline, truth

DOMAIN_RANKS = ("n/a", "n/a", -1, 1.5, True)        # the first rows of page 1
REF_PAGES = ("", {"pages": 3}, 10**30)
NULLED = len(DOMAIN_RANKS) + len(REF_PAGES)


def _bad_metric_faults(target: str) -> list[Fault]:
    # page 1: no window overlaps its first rows (a later window's shared rows are taken from the
    # window before it)
    return [Fault("bad_metrics", query=target, page=1, metric="domainRank", values=DOMAIN_RANKS, times=-1),
            Fault("bad_metrics", query=target, page=1, metric="ref_pages", values=REF_PAGES, times=-1)]


def test_bad_metrics_load_as_null_and_keep_every_donor(tmp_path, emulator):
    emulator.set_profile("metrics.com", 30)
    emulator.faults.add(*_bad_metric_faults("metrics.com"))
    report = run_pipeline(tmp_path, emulator, ["metrics.com"], kind="full", settings_options={"page_size": 10})
    result = report.results[0]
    assert (result.status, result.rows) == ("complete", 30)
    assert set(loaded_domains(tmp_path, "metrics.com")) == truth(emulator, "metrics.com")
    row = ledger(tmp_path, "metrics.com")
    assert (row["status"], row["rows_loaded"], row["rows_rejected"], row["metrics_nulled"]) == (
        "complete", 30, 0, NULLED)
    nulls = query(tmp_path, "SELECT count(*) FILTER (WHERE domain_rank IS NULL), "
                            "count(*) FILTER (WHERE ref_pages IS NULL) FROM serpstat.ref_domains")
    assert nulls == [(len(DOMAIN_RANKS), len(REF_PAGES))]
    assert result.note == (f"{NULLED} unusable metric values loaded as NULL: domainRank 'n/a' (2), "
                           "domainRank -1 (1), domainRank 1.5 (1), domainRank true (1), ref_pages '' (1), 2 more")
    assert result.note in row["error"]


def test_run_output_names_nulled_metrics_and_models_show_no_false_lost(tmp_path, emulator, monkeypatch, capsys):
    """Through `refdomains run` (cli.main, env config): a clean weekly snapshot, then one with bad
    metrics. Exit 0, the message on the snapshot's line, and no donor reported lost."""
    from serpstat_refdomains.cli import main

    emulator.set_profile("metrics.com", 30)  # the same 30 donors on every day
    for key, value in {"DLT_DATA_DIR": str(tmp_path / "dlt"), "SOURCES__SERPSTAT__API_TOKEN": TOKEN,
                       "SOURCES__SERPSTAT__API_URL": emulator.url, "SOURCES__SERPSTAT__DOMAINS": "metrics.com",
                       "SOURCES__SERPSTAT__PAGE_SIZE": "10", "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "1000"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    with on(DAY):
        assert main(["run", "--kind", "full"]) == 0
    capsys.readouterr()

    emulator.faults.add(*_bad_metric_faults("metrics.com"))
    later = DAY + dt.timedelta(days=7)
    with on(later):
        emulator.today = later
        assert main(["run", "--kind", "full"]) == 0
    out = capsys.readouterr().out
    assert f"  metrics.com full: {NULLED} unusable metric values loaded as NULL: domainRank 'n/a' (2)" in out
    with duckdb.connect(str(tmp_path / "serpstat_refdomains.duckdb"), read_only=True) as con:
        assert con.execute("SELECT status, rows_loaded, metrics_nulled FROM serpstat.snapshots "
                           "WHERE snapshot_date = ?", [later]).fetchall() == [("complete", 30, NULLED)]
        assert con.execute("SELECT count(*) FROM serpstat.lost_ref_domains").fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains_current WHERE domain_rank IS NULL"
                           ).fetchall() == [(len(DOMAIN_RANKS),)]
