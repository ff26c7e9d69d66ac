"""Hostile API data, hostile configuration, and secret hygiene across everything a run leaves."""

from __future__ import annotations

import hashlib

from serpstat_refdomains.emulator import Fault
from tests.helpers import DAY, TOKEN, cli_env, ledger, query, run_cli, run_main, run_pipeline

HOSTILE = {
    0: ("domain_from", "evil'); DROP TABLE serpstat.ref_domains; --.com", "domain contains spaces"),
    1: ("domain_from", "quote'test\".com", "invalid label"),
    2: ("domain_from", "a" * 300 + ".com", "invalid label"),
    3: ("domain_from", None, "domain is missing"),
    4: ("domain_from", ..., "domain is missing"),  # the key is absent
    5: ("domain_from", "xn--zz.com", "invalid punycode label"),
    9: ("domain_from", 12345, "domain is not text"),
    10: ("domain_from", "", "domain is empty"),
}
LOADED_ODDITIES = {
    11: ("ref_pages", ...),     # missing: loaded as NULL
    12: ("domainRank", " 47 "),  # a padded string number: loaded as 47
}
# A bad metric never costs the donor: it loads with that metric NULL, counted in metrics_nulled.
NULLED_METRICS = {
    6: ("ref_pages", -5, "ref_pages -5"),
    7: ("domainRank", 10**20, "domainRank 100000000000000000000"),
    8: ("domainRank", [1, 2], "domainRank [1, 2]"),
}
CYCLE = 16


def variant(name: str) -> int:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) % CYCLE


def test_hostile_rows_are_loaded_safely_or_rejected_with_reasons(tmp_path, emulator):
    def hostile(donor, row):
        k = variant(donor.name)
        if k == 13:
            return "not an object"
        field, value = (HOSTILE.get(k) or LOADED_ODDITIES.get(k) or NULLED_METRICS.get(k) or (None, None))[:2]
        if field is not None:
            if value is ...:
                row.pop(field)
            else:
                row[field] = value
        return row

    emulator.faults.add(Fault("rewrite_rows", query="hostile.com", rewrite=hostile, times=-1))
    emulator.set_profile("hostile.com", 800)
    report = run_pipeline(tmp_path, emulator, ["hostile.com"], kind="full")
    donors = emulator.graph.active("hostile.com", DAY)
    rejected = [d for d in donors if variant(d.name) in HOSTILE or variant(d.name) == 13]
    row = ledger(tmp_path, "hostile.com")
    assert report.results[0].status == "complete"
    assert row["rows_rejected"] == len(rejected) > 0
    assert row["rows_loaded"] == 800 - len(rejected)
    assert query(tmp_path, "SELECT count(*) FROM serpstat.ref_domains")[0][0] == 800 - len(rejected)
    present = {HOSTILE[variant(d.name)][2] if variant(d.name) in HOSTILE else "row is not an object"
               for d in rejected}
    listed = [reason for reason in present if reason in row["error"]]
    assert f"{len(rejected)} rows rejected" in row["error"]
    assert len(listed) == min(5, len(present))  # the five most frequent reasons are named
    missing_pages = [d for d in donors if variant(d.name) == 11 or variant(d.name) == 6]  # absent or -5
    padded = [d for d in donors if variant(d.name) == 12]
    if missing_pages:
        names = [r[0] for r in query(tmp_path, "SELECT domain_from FROM serpstat.ref_domains WHERE ref_pages IS NULL")]
        assert sorted(names) == sorted(d.name for d in missing_pages)
    if padded:
        ranks = dict(query(tmp_path, "SELECT domain_from, domain_rank FROM serpstat.ref_domains"))
        assert all(ranks[d.name] == 47 for d in padded)
    nulled = [d for d in donors if variant(d.name) in NULLED_METRICS]
    assert row["metrics_nulled"] == len(nulled) > 0
    loaded = query(tmp_path, "SELECT domain_from, ref_pages, domain_rank FROM serpstat.ref_domains")
    metrics = {r[0]: r[1:] for r in loaded}
    for donor in nulled:
        field = NULLED_METRICS[variant(donor.name)][0]
        assert metrics[donor.name][0 if field == "ref_pages" else 1] is None
    assert f"{len(nulled)} unusable metric values loaded as NULL" in row["error"]
    # the injection attempt stayed a string that was refused: the table is there and whole
    assert query(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'serpstat' "
                           "AND table_name = 'ref_domains'") == [(1,)]


def test_every_rejection_reason_is_counted(tmp_path, emulator):
    """One page holding each hostile row once: each reason appears in the ledger's error."""
    emulator.set_profile("reasons.com", 12)
    donors = sorted(emulator.graph.active("reasons.com", DAY), key=lambda d: d.name)
    assignment = {d.name: k for k, d in enumerate(donors)}

    def hostile(donor, row):
        spec = HOSTILE.get(assignment.get(donor.name, -1))
        if spec:
            if spec[1] is ...:
                row.pop(spec[0])
            else:
                row[spec[0]] = spec[1]
        return row

    emulator.faults.add(Fault("rewrite_rows", query="reasons.com", rewrite=hostile, times=-1))
    run_pipeline(tmp_path, emulator, ["reasons.com"], kind="full")
    row = ledger(tmp_path, "reasons.com")
    assert row["rows_rejected"] == len(HOSTILE) and row["rows_loaded"] == 12 - len(HOSTILE)
    reasons = {spec[2] for spec in HOSTILE.values()}
    listed = [reason for reason in reasons if reason in row["error"]]
    assert len(listed) >= min(5, len(reasons))  # the five most frequent are named


HOSTILE_CONFIG = [
    ({"SOURCES__SERPSTAT__DOMAINS": "example.com, https://x.com"}, [], "is a URL"),
    ({"SOURCES__SERPSTAT__DOMAINS": '["ex ample.com"]'}, [], "not a domain"),
    ({"SOURCES__SERPSTAT__DOMAINS": '[{"query": "a.com", "searchType": "domain"}]'}, [], "needs exactly 'query'"),
    ({"SOURCES__SERPSTAT__DOMAINS": '[{"query": "a.com", "search_type": "url"}]'}, [], "search_type of 'a.com'"),
    ({"SOURCES__SERPSTAT__DOMAINS": '[42]'}, [], "is not text"),
    ({"SOURCES__SERPSTAT__DOMAINS": '["localhost"]'}, [], "no dot"),
    ({"SOURCES__SERPSTAT__DOMAINS": '["a.com"'}, [], "not a valid JSON list"),
    ({"SOURCES__SERPSTAT__PAGE_SIZE": "-1"}, [], "page_size -1 is out of range"),
    ({"SOURCES__SERPSTAT__PAGE_SIZE": "ten"}, [], "page_size"),
    ({"SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "0"}, [], "requests_per_second"),
    ({"SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "fast"}, [], "requests_per_second"),
    ({"SOURCES__SERPSTAT__MAX_CREDITS_PER_RUN": "0"}, [], "max_credits_per_run"),
    ({"SOURCES__SERPSTAT__FULL_SNAPSHOT_EVERY_DAYS": "0"}, [], "full_snapshot_every_days"),
    ({"SOURCES__SERPSTAT__FETCH_LAST_WEEK": "sometimes"}, [], "fetch_last_week"),
    ({"SOURCES__SERPSTAT__LOST_CONFIRMATION_SNAPSHOTS": "0"}, [], "lost_confirmation_snapshots"),
    ({"SOURCES__SERPSTAT__API_URL": "ftp://api.serpstat.com/v4"}, [], "api_url"),
    ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '[[{"additional_filters": "last_week"}]]'}, [],
     "must not contain last_week"),
    ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '[[{"field": "domain_rank", "compareType": "between", "value": [1]}]]'},
     [], "between takes two numbers"),
    ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '[[{"field": "domain_rank", "compareType": "contains", "value": [1]}]]'},
     [], "does not apply to domain_rank"),
    ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '{"field": "domain_rank"}'}, [], "non-empty array of non-empty arrays"),
    ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '[[{"field": "domain_rank", "compareType": "gte", "value": ["x"]}]]'},
     [], "must be numbers"),
    ({}, ["--domain", "a b.com"], "not a domain"),
    ({}, ["--snapshot-date", "30/11/2026"], "is not a date"),
    ({}, ["--kind", "FULL"], "--kind 'FULL' is unknown"),
    ({}, ["--destination", "oracle_cloud_x"], "is unknown or not installed"),
    ({}, ["--bogus-flag"], "unrecognized arguments"),
    ({}, ["--dataset-name", "bad name;drop"], "is not a plain identifier"),
    ({}, ["--dataset-name", "serpstat_staging"], "is reserved"),
    ({}, ["--dataset-name", "information_schema"], "is reserved"),
    ({"DESTINATION__POSTGRES__CREDENTIALS": ""}, ["--destination", "postgres"], "is not configured"),
]


def test_hostile_configuration_is_one_line_exit_2_and_writes_nothing(tmp_path, emulator):
    assert len(HOSTILE_CONFIG) >= 20
    for extra, flags, fragment in HOSTILE_CONFIG:
        env = cli_env(tmp_path, emulator, '["example.com"]', **extra)
        if extra.get("DESTINATION__POSTGRES__CREDENTIALS") == "":
            env.pop("DESTINATION__POSTGRES__CREDENTIALS")
        # in this process (cli.main): the exit-code wiring of a process is tested once, below
        done = run_main(tmp_path, env, "run", *flags)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2, (extra, flags, done.stdout, done.stderr)
        assert len(lines) == 1 and fragment in lines[0], (fragment, done.stderr)
        assert "Traceback" not in done.stderr and TOKEN not in done.stdout + done.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "pipelines" not in p.parts]
    assert written == [], f"a configuration error wrote {written[:3]}"
    assert not any(e.method.endswith("getRefDomains") for e in emulator.log)


def test_config_file_errors_too(tmp_path, emulator):
    """The same validation applies to .dlt/config.toml in the project folder."""
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text('[sources.serpstat]\ndomains = ["good.com", "https://bad.com/x"]\n')
    env = cli_env(tmp_path, emulator, "unused.com")
    env.pop("SOURCES__SERPSTAT__DOMAINS")
    done = run_cli(tmp_path, env, "run")
    assert done.returncode == 2 and "is a URL" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dlt"]


def test_token_is_nowhere_after_a_faulty_debug_session(tmp_path, emulator):
    """Faults, retries, failures and every command at DEBUG: then grep everything for the token."""
    emulator.set_profile("leak-a.com", 2500)
    emulator.set_profile("leak-b.com", 300)
    emulator.faults.add(
        Fault("http_error", query="leak-a.com", page=2, status=502, times=2),
        Fault("malformed", query="leak-a.com", page=3, times=1),
        Fault("drop", query="leak-b.com", page=1, times=1),
        Fault("http_429", query="leak-b.com", times=1, retry_after=0),
        Fault("api_error", query="leak-b.com", last_week=True, times=-1),
    )
    env = cli_env(tmp_path, emulator, "leak-a.com,leak-b.com", RUNTIME__LOG_LEVEL="DEBUG")
    outputs = []
    for args in (["run"], ["status"], ["report", "--format", "html",
                 "--output", "report.html"], ["report", "--format", "json"], ["models"]):
        done = run_cli(tmp_path, env, *args)
        outputs += [done.stdout, done.stderr]
    assert any("token=***" in text for text in outputs), "DEBUG request lines were not produced"
    bad = cli_env(tmp_path, emulator, "leak-a.com", RUNTIME__LOG_LEVEL="DEBUG")
    bad["SOURCES__SERPSTAT__API_TOKEN"] = TOKEN + "-wrong"  # the rejected token is a secret too
    done = run_cli(tmp_path, bad, "run")
    assert done.returncode == 2
    outputs += [done.stdout, done.stderr]
    for text in outputs:
        assert TOKEN not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "trace.pickle" for p in files) and any(p.suffix == ".duckdb" for p in files)
    assert (tmp_path / "report.html").exists()
    secret = TOKEN.encode()
    hits = [str(p.relative_to(tmp_path)) for p in files if secret in p.read_bytes()]
    assert hits == [], f"the token is in {hits}"


def test_a_row_rejected_for_want_of_a_name_makes_no_donor_lost(tmp_path, emulator):
    """An outside review: one donor's row sent without a name in week 2 of three made a complete
    snapshot without that donor, so lost_ref_domains said it was lost in week 2 and
    new_ref_domains that it returned in week 3. A full snapshot with a nameless row proves no
    absence: the models compare around it, so a donor really gone since week 1 is lost in week 3,
    last seen in week 1, and the nameless one is neither lost nor back."""
    import datetime as dt

    emulator.set_profile("nameless.com", 300)
    donors = sorted(emulator.graph.active("nameless.com", DAY), key=lambda d: d.name)
    blurred, gone = donors[10], donors[20]
    weeks = [DAY + dt.timedelta(days=7 * w) for w in range(3)]

    def no_name(donor, row):
        if donor.name == blurred.name:
            row["domain_from"] = None
        return row

    for week, day in enumerate(weeks):
        emulator.today = day
        emulator.faults.clear()
        if week == 1:  # the nameless row, and a donor whose links really go
            emulator.faults.add(Fault("rewrite_rows", query="nameless.com", rewrite=no_name, times=-1))
            emulator.graph.remove_donors("nameless.com", [gone])
        report = run_pipeline(tmp_path, emulator, ["nameless.com"], day, kind="full", build_models=True)
        assert report.exit_code == 0 and report.models_built
    rejected = query(tmp_path, "SELECT snapshot_date, status, rows_rejected FROM serpstat.snapshots ORDER BY 1")
    assert [(str(d), s, r) for d, s, r in rejected] == [
        (str(weeks[0]), "complete", 0), (str(weeks[1]), "complete", 1), (str(weeks[2]), "complete", 0)]
    lost = query(tmp_path, "SELECT ref_domain, lost_on, last_seen_on, returned_on FROM serpstat.lost_ref_domains")
    # the real loss is seen in week 3, the first snapshot since that lists every donor; the
    # nameless donor is neither lost nor back
    assert [(r, str(on), str(seen), back) for r, on, seen, back in lost] == [
        (gone.name, str(weeks[2]), str(weeks[0]), None)]
    assert query(tmp_path, "SELECT count(*) FROM serpstat.new_ref_domains") == [(0,)]


def test_a_baseline_with_a_nameless_row_makes_no_donor_new(tmp_path, emulator):
    """The second review: the first full snapshot (the baseline) had one donor's row without a
    name, so the next week's snapshot reported that donor NEW, with an alert. Present throughout."""
    import datetime as dt

    emulator.set_profile("baseline.com", 200)
    blurred = sorted(emulator.graph.active("baseline.com", DAY), key=lambda d: d.name)[5]
    for week in range(3):
        day = DAY + dt.timedelta(days=7 * week)
        emulator.today = day
        emulator.faults.clear()
        if week == 0:
            emulator.faults.add(Fault("rewrite_rows", query="baseline.com", times=-1,
                                      rewrite=lambda donor, row: {**row, "domain_from": None}
                                      if donor.name == blurred.name else row))
        assert run_pipeline(tmp_path, emulator, ["baseline.com"], day, kind="full", build_models=True).exit_code == 0
    assert query(tmp_path, "SELECT count(*) FROM serpstat.new_ref_domains") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM serpstat.lost_ref_domains") == [(0,)]
    assert query(tmp_path, "SELECT count(*) FROM serpstat.ref_domain_changes") == [(0,)]
