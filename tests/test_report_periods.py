"""How the report counts a period (report_periods.py): new − lost is the change in size between
the period's first and last full snapshots, and last_week detections stand apart."""

from __future__ import annotations

import datetime as dt

from serpstat_refdomains.report_periods import (
    BEFORE_BASELINE,
    EARLY,
    NOT_IN_FULL,
    describe,
    early_note,
    summarize,
    unconfirmed_note,
)

D = [dt.date(2026, 1, 5) + dt.timedelta(weeks=w) for w in range(5)]  # Mondays
SIZES = [(D[0], 100), (D[1], 103), (D[2], 101), (D[3], 104)]  # four full snapshots; D[4] has none


def new(name: str, previous: dt.date | None, detected: dt.date, by: str = "both", returning: bool = False) -> dict:
    return {"ref_domain": name, "ref_domain_unicode": name, "previous_snapshot_date": previous,
            "detected_on": detected, "detected_by": by, "is_returning": returning, "domain_rank": 1}


def lost(name: str, on: dt.date, confirmed: bool = False, returned: dt.date | None = None) -> dict:
    return {"ref_domain": name, "ref_domain_unicode": name, "lost_on": on, "confirmed": confirmed,
            "returned_on": returned, "domain_rank": 1}


# per step: F1 +4 -1 (103), F2 +1 -3 (101), F3 +3 -0 (104)
NEW = [new(f"a{i}", D[0], D[1]) for i in range(4)] + [new("b0", D[1], D[2], "snapshot_diff", returning=True)] \
    + [new(f"c{i}", D[2], D[3]) for i in range(3)] + [
    new("baseline", None, D[0], "last_week"),  # pulled the day of F0: F0 holds it
    new("fleeting", D[1], D[1] + dt.timedelta(days=3), "last_week"),  # F2 did not list it
    new("early", D[3], D[4], "last_week"),  # no full snapshot after it yet
]
LOST = [lost("x0", D[1], confirmed=True), lost("y0", D[2], confirmed=True), lost("y1", D[2], returned=D[3]),
        lost("y2", D[2])]


def test_the_whole_history_adds_up_and_keeps_pulls_apart():
    summary = summarize(SIZES, NEW, LOST)
    change = summary.change
    assert (change.start, change.end, change.size_start, change.size_end) == (D[0], D[3], 100, 104)
    assert (change.new, change.returning, change.lost, change.lost_confirmed, change.early) == (8, 1, 4, 2, 1)
    assert change.net == change.size_end - change.size_start == 4
    # each step adds up too, and the steps add up to the period
    assert [(s.start, s.end, s.net, s.size_end - s.size_start) for s in summary.steps] == [
        (D[0], D[1], 3, 3), (D[1], D[2], -2, -2), (D[2], D[3], 3, 3)]
    assert summary.latest == summary.steps[-1]
    assert {r["ref_domain"]: r["status"] for r in summary.last_week_only} == {
        "baseline": BEFORE_BASELINE, "fleeting": NOT_IN_FULL, "early": EARLY}
    assert [r["ref_domain"] for r in summary.early()] == ["early"]
    # a new donor counts at the full snapshot that found it, whenever a pull saw it first
    assert {r["ref_domain"]: r["counted_on"] for r in summary.new if r["ref_domain"] in ("a0", "b0")} == {
        "a0": D[1], "b0": D[2]}
    assert {r["ref_domain"]: r["status"] for r in summary.lost} == {
        "x0": "confirmed", "y0": "confirmed", "y1": f"returned {D[3]}", "y2": "unconfirmed"}


def test_a_period_compares_the_full_snapshot_before_since_with_the_last_by_until():
    # Wednesday after F1 to the day of F2: the changes F2 found, against F1
    summary = summarize(SIZES, NEW, LOST, since=D[1] + dt.timedelta(days=2), until=D[2])
    change = summary.change
    assert (change.start, change.end, change.size_start, change.size_end) == (D[1], D[2], 103, 101)
    assert (change.new, change.lost, change.net) == (1, 3, -2)
    assert [r["ref_domain"] for r in summary.last_week_only] == ["fleeting"]  # pulled in the period
    # since on a full snapshot's day: that snapshot's changes are in the period (dates are inclusive)
    summary = summarize(SIZES, NEW, LOST, since=D[1], until=D[1])
    assert (summary.change.start, summary.change.end, summary.change.net) == (D[0], D[1], 3)
    # until between full snapshots: the pull after F1 has no full snapshot by then
    summary = summarize(SIZES, NEW, LOST, until=D[1] + dt.timedelta(days=4))
    assert (summary.change.end, summary.change.net, summary.change.early) == (D[1], 3, 1)
    assert [r["status"] for r in summary.last_week_only if r["ref_domain"] == "fleeting"] == [EARLY]


def test_since_before_the_first_full_snapshot_starts_at_the_baseline():
    summary = summarize(SIZES, NEW, LOST, since=D[0] - dt.timedelta(days=30))
    assert (summary.change.start, summary.change.size_start, summary.change.net) == (D[0], 100, 4)


def test_no_full_snapshot_in_the_period():
    summary = summarize(SIZES, NEW, LOST, until=D[0] - dt.timedelta(days=1))
    assert summary.change.start is None and summary.steps == [] and summary.new == []
    assert describe(summary.change) == "no complete full snapshot yet"
    assert summarize([], [new("only", None, D[0], "last_week")], []).change.early == 1
    one = summarize(SIZES[:1], [], [])
    assert one.latest is None and describe(one.change).startswith("100 referring domains on")


def test_the_words_say_what_adds_up():
    change = summarize(SIZES, NEW, LOST).change
    assert describe(change) == (f"100 → 104 referring domains from {D[0]} to {D[3]}, net +4 = 8 new "
                                "(incl. 1 returning) − 4 lost, 2 confirmed")
    assert early_note(change) == "detected early by last_week: 1, not yet in a full snapshot (not counted above)"
    assert unconfirmed_note(2) == "unconfirmed: seen missing once; confirmed after 2 consecutive absences"
    assert "fewer than 3 times" in unconfirmed_note(3)


def test_every_format_shows_the_same_counts_and_early_detections_apart():
    import csv
    import io
    import json

    from serpstat_refdomains.report import render
    from serpstat_refdomains.report_data import TRACKED, ReportData, Series

    rows = [{**r, "target_domain": "mine.com", "search_type": "domain_with_subdomains", "registrable_domain": None,
             "ref_pages": 1} for r in NEW]
    gone = [{**r, "target_domain": "mine.com", "search_type": "domain_with_subdomains", "registrable_domain": None,
             "ref_pages": 1, "last_seen_on": None, "consecutive_absences": 1} for r in LOST]
    series = Series("mine.com", "domain_with_subdomains", TRACKED, sizes=SIZES, summary=summarize(SIZES, rows, gone))
    data = ReportData(domain=None, since=None, series=[series])
    text = render(data, "text")
    assert f"Period: 100 → 104 referring domains from {D[0]} to {D[3]}, net +4 = 8 new" in text
    assert "Detected early by last_week: 1, not yet in a full snapshot (not counted above)" in text
    assert "DETECTED EARLY by last_week (1), not yet in a full snapshot, not counted:" in text
    payload = json.loads(render(data, "json"))
    assert payload["targets"][0]["period"]["early_last_week"] == 1 and len(payload["new_ref_domains"]) == 8
    assert {r["status"] for r in payload["last_week_only"]} == {EARLY, NOT_IN_FULL, BEFORE_BASELINE}
    sections = [r["section"] for r in csv.DictReader(io.StringIO(render(data, "csv")))]
    assert sections.count("new") == 8 and sections.count("lost") == 4 and sections.count("step") == 3
    page = render(data, "html")
    assert "Detected early by last_week (1)" in page and "+4" in page and "<details>" in page


def test_the_page_says_when_its_latest_full_snapshot_is_older_than_a_weekly_schedule_leaves_it():
    """An outside reader took the demo's "Latest week: Oct 05 → Oct 12", in a page generated on
    Dec 06, for this week's news: a schedule that stopped looks like a quiet week."""
    from serpstat_refdomains.report_data import ReportData
    from serpstat_refdomains.report_html import render_html

    today = dt.datetime.now(dt.UTC).date()

    def page(latest: dt.date, until: dt.date | None = None) -> str:
        ledger = [{"target_domain": "a.com", "search_type": "domain", "snapshot_kind": "full", "snapshot_date": latest,
                   "status": "complete", "rows_loaded": 1, "requests": 1, "credits_spent": 1, "credits_left": 9,
                   "error": None},
                  {"target_domain": "a.com", "search_type": "domain", "snapshot_kind": "full",
                   "snapshot_date": today, "status": "failed", "rows_loaded": 0, "requests": 1, "credits_spent": 0,
                   "credits_left": 9, "error": "down"}]
        return render_html(ReportData(domain=None, since=None, until=until, ledger=ledger))

    stale = page(today - dt.timedelta(days=55))
    assert f"The latest full snapshot is from {today - dt.timedelta(days=55):%Y-%m-%d}, 55 days before" in stale
    assert 'class="stale"' not in page(today - dt.timedelta(days=7))  # a weekly run, not late
    assert 'class="stale"' not in page(today - dt.timedelta(days=55), until=today - dt.timedelta(days=50))
    assert "<b>rank</b> is Serpstat's domain rank" in stale
