"""`refdomains report | status | models | demo | emulator` as processes, and the HTML in a browser."""

from __future__ import annotations

import csv
import datetime as dt
import html as html_module
import io
import itertools
import json
import os
import re
import shutil
import signal
import subprocess

import duckdb
import pytest
import requests

from serpstat_refdomains.emulator import Profile
from tests.helpers import DAY, REFDOMAINS, TOKEN, cli_env, run_cli, run_main

WEEKS = [DAY + dt.timedelta(weeks=w) for w in range(3)]
MIDWEEK = WEEKS[-1] + dt.timedelta(days=3)  # a last_week pull only: the full snapshot is 3 days old


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Three weekly `refdomains run`s of two targets (a full snapshot each), then one mid-week (a
    last_week pull), in a folder of their own."""
    from serpstat_refdomains.emulator import SerpstatEmulator
    workdir = tmp_path_factory.mktemp("cli")
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=3) as emulator:
        emulator.graph.set_profile("alpha.com", Profile(base_size=300))
        emulator.graph.set_profile("beta.org", Profile(base_size=150))
        env = cli_env(workdir, emulator, "alpha.com,beta.org")
        for day in [*WEEKS, MIDWEEK]:
            emulator.today = day
            done = run_main(workdir, env, "run", day=day)
            assert done.returncode == 0, done.stdout + done.stderr
        yield workdir, env  # the emulator stays up: `status` asks it for the balance


def db(workdir, sql, params=()):
    with duckdb.connect(str(workdir / "serpstat_refdomains.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def test_report_json_matches_the_models(loaded):
    workdir, env = loaded
    done = run_cli(workdir, env, "report", "--format", "json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    new = db(workdir, "SELECT ref_domain, detected_on FROM serpstat.new_ref_domains")
    lost = db(workdir, "SELECT ref_domain, lost_on FROM serpstat.lost_ref_domains")
    # the whole history: every row of the models, counted or (last_week only) apart
    assert {(r["ref_domain"], r["detected_on"]) for r in payload["new_ref_domains"] + payload["last_week_only"]} \
        == {(d, day.isoformat()) for d, day in new}
    assert {(r["ref_domain"], r["lost_on"]) for r in payload["lost_ref_domains"]} == \
        {(d, day.isoformat()) for d, day in lost}
    for target in ("alpha.com", "beta.org"):  # the latest full snapshot's first, highest rank first within one
        order = [(r["counted_on"], r["domain_rank"]) for r in payload["new_ref_domains"]
                 if r["target_domain"] == target]
        assert order and order == sorted(order, reverse=True)
    assert [(t["target_domain"], t["role"]) for t in payload["targets"]] == [("alpha.com", "tracked"),
                                                                           ("beta.org", "tracked")]
    assert len(payload["snapshots"]) == 2 * (len(WEEKS) + 1)  # a full snapshot a week, then a last_week pull
    # what the mid-week pull found stands apart, counted by no full snapshot yet
    early = payload["last_week_only"]
    assert early and {(r["status"], r["detected_on"]) for r in early} == {("early", MIDWEEK.isoformat())}
    assert sum(t["period"]["early_last_week"] for t in payload["targets"]) == len(early)
    for target in payload["targets"]:
        period = target["period"]
        assert (period["period_end"], period["net"]) == (WEEKS[-1].isoformat(),
                                                         period["size_end"] - period["size_start"])


def test_report_filters_by_domain_and_since_as_csv(loaded):
    workdir, env = loaded
    since = WEEKS[2]
    done = run_cli(workdir, env, "report", "--domain", "Alpha.COM", "--since", since.isoformat(), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows and {r["target_domain"] for r in rows} == {"alpha.com"}
    sections = {r["section"] for r in rows}
    assert sections <= {"period", "step", "new", "lost", "last_week_only", "snapshot"} and "new" in sections
    assert all(r["counted_on"] >= since.isoformat() for r in rows if r["section"] in ("new", "lost"))
    # the changes the full snapshot of `since` found, against the one before
    expected_new = db(workdir, "SELECT count(*) FROM serpstat.new_ref_domains WHERE target_domain = 'alpha.com' "
                               "AND detected_by <> 'last_week' AND previous_snapshot_date = ?", [WEEKS[1]])[0][0]
    assert sum(r["section"] == "new" for r in rows) == expected_new
    period = next(r for r in rows if r["section"] == "period")
    assert (period["period_start"], period["period_end"]) == (WEEKS[1].isoformat(), WEEKS[2].isoformat())
    assert int(period["net"]) == int(period["size_end"]) - int(period["size_start"])


def test_report_text_and_html_file(loaded, tmp_path):
    workdir, env = loaded
    text = run_cli(workdir, env, "report")
    assert text.returncode == 0 and "NEW in the latest week" in text.stdout and "LOST in the latest week" in text.stdout
    out = tmp_path / "r.html"
    html = run_cli(workdir, env, "report", "--format", "html", "--output", str(out))
    assert html.returncode == 0 and out.exists()
    page = out.read_text()
    # opens offline: nothing fetched from elsewhere (the only links are the donors', followed on click)
    assert "<svg" in page and "<script src" not in page and "<link" not in page and "src=\"http" not in page
    assert "@import" not in page and "url(" not in page


@pytest.mark.parametrize("flags, fragment", [
    (["--format", "pdf"], "--format 'pdf' is unknown"),
    (["--since", "yesterday"], "is not a date"),
    (["--domain", "http://x.com/"], "is a URL"),
    (["--until", "2026-03-01", "--since", "2026-03-09"], "--until 2026-03-01 is before --since 2026-03-09"),
    # a domain the dataset does not have is said, with the ones it has, never an empty report
    (["--domain", "nosuch.com"], "--domain nosuch.com is not loaded or configured here: this dataset has "
                                 "alpha.com (tracked), beta.org (tracked)"),
])
def test_report_usage_errors(loaded, flags, fragment):
    workdir, env = loaded
    # in this process (cli.main): the exit code of `report` as a process is test_report_json's
    done = run_main(workdir, env, "report", *flags)
    assert done.returncode == 2 and fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_status_shows_latest_snapshots_credits_and_balance(loaded):
    workdir, env = loaded
    # on the day of the latest run (a snapshot dated after the clock's today is marked future);
    # "this month" is the month of the runs
    done = run_main(workdir, env, "status", day=MIDWEEK)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status",
                                "rows_loaded", "credits_spent"]
    body = [line.split() for line in lines[1:5]]
    assert {(r[0], r[2], r[3], r[4]) for r in body} == {
        (t, k, day.isoformat(), "complete") for t in ("alpha.com", "beta.org")
        for k, day in (("full", WEEKS[-1]), ("last_week", MIDWEEK))}
    spent = db(workdir, "SELECT sum(credits_spent) FROM serpstat.snapshots")[0][0]
    assert f"Credits spent this month: {spent}" in done.stdout
    assert re.search(r"Serpstat balance: \d+ credits left", done.stdout)
    assert TOKEN not in done.stdout + done.stderr


def test_models_command_rebuilds(loaded):
    workdir, env = loaded
    done = run_cli(workdir, env, "models")
    from serpstat_refdomains.models import model_names
    assert done.returncode == 0 and f"built {len(model_names())} models" in done.stdout, done.stderr
    assert "ref_domain_changes" in done.stdout


def test_models_command_builds_within_the_duckdb_memory_limit(loaded, monkeypatch, capsys):
    """`refdomains models` ignored duckdb_memory_limit: it built in DuckDB's default of 80% of the
    machine's RAM, without the spill folder a run gives its build."""
    from serpstat_refdomains import cli, models

    workdir, env = loaded
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SOURCES__SERPSTAT__DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.chdir(workdir)
    seen = {}
    real_build = models.build

    def build(pipeline, *args, **kwargs):  # what the build's DuckDB is set to, read from DuckDB itself
        with pipeline.sql_client() as client:
            seen["settings"] = client.execute_sql(
                "SELECT current_setting('memory_limit'), current_setting('temp_directory'), "
                "current_setting('threads')")[0]
        return real_build(pipeline, *args, **kwargs)

    monkeypatch.setattr(models, "build", build)
    assert cli.main(["models"]) == 0, capsys.readouterr().err
    # 300 MB, spilling beside the database, a thread per 128MB of it up to the cores
    threads = max(1, min(os.cpu_count() or 1, 2))
    assert seen["settings"] == ("286.1 MiB", f"{workdir / 'serpstat_refdomains.duckdb'}.tmp", threads)


def test_read_commands_in_an_empty_folder_say_what_to_do(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, "example.com")
    for command in ("report", "status", "models"):
        done = run_main(tmp_path, env, command)  # in this process: the exit codes are cli.main's
        assert done.returncode == 2 and "run `refdomains run` first" in done.stderr, command
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`refdomains demo`, six weekly runs of three tracked domains, one with two competitors: the
    folder it ran in, the environment and the finished process."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in cli_env(root, type("E", (), {"url": "http://127.0.0.1:9/v4"})(), "x.com").items()
           if not k.startswith("SOURCES__")}
    done = subprocess.run([*REFDOMAINS, "demo", "--dir", str(root / "demo")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return root, env, done


def test_demo_replays_six_weeks_offline(demo):
    root, env, done = demo
    assert done.stdout.count("week ") >= 6
    # each headline adds up: 1,751 -> 1,769 is +18, whatever last_week found in the baseline week
    assert re.search(r"acme-shop.com \(tracked\): [\d,]+ → [\d,]+ referring domains from \S+ to \S+, net ",
                     done.stdout)
    report = root / "demo" / "report.html"
    assert report.exists() and "<svg" in report.read_text()
    with duckdb.connect(str(root / "demo" / "serpstat_refdomains.duckdb"), read_only=True) as con:
        fulls = con.execute("SELECT count(DISTINCT snapshot_date) FROM serpstat.snapshots WHERE status = "
                            "'complete' AND snapshot_kind = 'full'").fetchall()[0][0]
        new, lost = con.execute("SELECT (SELECT count(*) FROM serpstat.new_ref_domains), "
                                "(SELECT count(*) FROM serpstat.lost_ref_domains)").fetchall()[0]
    assert fulls == 6 and new > 0 and lost > 0
    assert not (root / "serpstat_refdomains.duckdb").exists()  # never the user's pipeline
    # a target with two competitors, its link gap and the alerts it would send
    assert "LINK GAP of acme-shop.com" in done.stdout and "alerts (dry run, nothing sent)" in done.stdout
    page = report.read_text()
    assert '<section class="gap" data-target="acme-shop.com">' in page and '<ul class="alert">' in page
    with duckdb.connect(str(root / "demo" / "serpstat_refdomains.duckdb"), read_only=True) as con:
        competitors = con.execute("SELECT count(DISTINCT competitor_domain) FROM serpstat.target_competitors "
                                  "WHERE target_domain = 'acme-shop.com'").fetchall()[0][0]
        shared, already = con.execute("SELECT count(*) FILTER (WHERE competitors_linking = 2), "
                                      "count(*) FILTER (WHERE site_already_links) FROM serpstat.link_gap").fetchall()[0]
        won = con.execute("SELECT count(*) FROM serpstat.link_gap_changes WHERE won").fetchall()[0][0]
    assert competitors == 2 and shared >= 4 and already >= 1 and won == 2
    # the demo folder is a project: `refdomains report` and `status` run in it read its data
    for command in (["report", "--format", "json"], ["status"]):
        shown = run_cli(root / "demo", env, *command)
        assert shown.returncode == 0, shown.stderr
        if command[0] == "report":
            assert json.loads(shown.stdout)["new_ref_domains"]


def expected_period(database, target: str, since: dt.date | None, until: dt.date | None) -> dict:
    """The period's numbers from the loaded rows alone, not the models: the full snapshots the
    ledger has complete (and whole), their sizes, and the set differences of consecutive ones."""
    with duckdb.connect(str(database), read_only=True) as con:
        fulls = [d for (d,) in con.execute(
            "SELECT snapshot_date FROM serpstat.snapshots WHERE target_domain = ? AND snapshot_kind = 'full' "
            "AND status = 'complete' AND coalesce(rows_rejected, 0) = 0 ORDER BY snapshot_date", [target]).fetchall()]
        rows = {d: {name for (name,) in con.execute(
            "SELECT ref_domain FROM serpstat.ref_domains WHERE target_domain = ? AND snapshot_kind = 'full' "
            "AND snapshot_date = ?", [target, d]).fetchall()} for d in fulls}
    end = [d for d in fulls if until is None or d <= until][-1]
    before = [d for d in fulls if since is not None and d < since]
    start = before[-1] if before else fulls[0]
    compared = [d for d in fulls if start <= d <= end]
    pairs = list(itertools.pairwise(compared))
    return {"period_start": start.isoformat(), "period_end": end.isoformat(), "size_start": len(rows[start]),
            "size_end": len(rows[end]), "new": sum(len(rows[b] - rows[a]) for a, b in pairs),
            "lost": sum(len(rows[a] - rows[b]) for a, b in pairs)}


@pytest.mark.parametrize("since, until", [(None, None), ("2026-09-16", "2026-10-05")])
def test_report_headline_adds_up_per_target(demo, since, until):
    """new − lost = size at the end − size at the start, per target, for the whole history and
    for a --since/--until period (since on a Wednesday: it compares the full snapshot before it)."""
    from serpstat_refdomains.demo import DATABASE

    root, env, _ = demo
    period = [f for flag, value in (("--since", since), ("--until", until)) if value for f in (flag, value)]
    done = run_main(root / "demo", env, "report", "--format", "json", *period)  # in this process, as `report`
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    targets = {t["target_domain"]: t for t in payload["targets"]}
    assert set(targets) == {"acme-shop.com", "shopmart-rival.com", "bargain-hub.net", "news-portal.org",
                            "travel-blog.net"}
    for target, shown in targets.items():
        got = shown["period"]
        expected = expected_period(root / "demo" / DATABASE, target, since and dt.date.fromisoformat(since),
                                   until and dt.date.fromisoformat(until))
        assert {k: got[k] for k in expected} == expected, target
        assert got["net"] == got["new"] - got["lost"] == got["size_end"] - got["size_start"], target
        # the steps add up to the period, and the latest week is the last of them
        assert sum(step["net"] for step in shown["history"]) == got["net"]
        assert shown["latest_week"] == shown["history"][-1]
        assert shown["latest_week"]["net"] == shown["latest_week"]["size_end"] - shown["latest_week"]["size_start"]
        listed = [r for r in payload["new_ref_domains"] if r["target_domain"] == target]
        assert len(listed) == got["new"] and sum(r["is_returning"] for r in listed) == got["returning"]
        assert len([r for r in payload["lost_ref_domains"] if r["target_domain"] == target]) == got["lost"]
    # roles come from target_competitors: each tracked domain, then its competitors
    assert [(t["target_domain"], t["label"]) for t in payload["targets"]] == [
        ("acme-shop.com", "tracked"), ("bargain-hub.net", "competitor of acme-shop.com"),
        ("shopmart-rival.com", "competitor of acme-shop.com"), ("news-portal.org", "tracked"),
        ("travel-blog.net", "tracked")]
    text = run_main(root / "demo", env, "report", *period).stdout
    acme = targets["acme-shop.com"]["period"]
    assert (f"Period: {acme['size_start']:,} → {acme['size_end']:,} referring domains from {acme['period_start']} "
            f"to {acme['period_end']}, net {acme['net']:+,} = {acme['new']:,} new") in text


def _interruptible() -> None:
    # a test run started as a background job inherits SIGINT ignored, and Python then never
    # raises KeyboardInterrupt in the child: give it the default, as a terminal's Ctrl-C finds it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_emulator_command_serves_until_interrupted(tmp_path):
    proc = subprocess.Popen([*REFDOMAINS, "emulator", "--port", "0", "--token", "t0k", "--day", "2026-03-02",
                             "--profile", "fixed.com=1234"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_interruptible)
    try:
        line = proc.stdout.readline()
        url = re.search(r"on (http://\S+/v4)", line).group(1)
        request = {"id": 7, "method": "SerpstatBacklinksProcedure.getRefDomains",
                   "params": {"query": "fixed.com", "size": 1}}
        answer = requests.post(f"{url}?token=t0k", json=request, timeout=5).json()
        assert answer["result"]["summary_info"]["total"] == 1234 and answer["id"] == "7"
        assert "t0k" not in line
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    assert proc.returncode == 0


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


_PROBE = """<script>
  const rect = e => e.getBoundingClientRect();
  const shown = e => e.closest('details:not([open])') === null;
  const groups = [...document.querySelectorAll('section.group')].map(g => ({
    target: g.dataset.target, role: g.dataset.role,
    competitors: [...g.querySelectorAll('section.competitor')].map(c => [c.dataset.target,
      c.querySelector('.role').textContent]),
    gap: !!g.querySelector('section.gap'),
    headline: g.querySelector('.headline').textContent,
    latest: [...g.querySelectorAll(':scope > h4')].map(h => h.textContent.split(' (')[0]),
    charts: [...g.querySelectorAll(':scope > .charts svg.chart')].map(c => Math.round(rect(c).width)),
    // the sizes axis starts at zero: its lowest tick reads 0
    zero: [...g.querySelectorAll('svg.sizes text')].map(t => t.textContent).includes('0'),
    lines: [...g.querySelectorAll(':scope > .charts polyline.series')].map(p => p.dataset.name),
    bars: [...g.querySelectorAll(':scope > .charts rect.bar')].filter(r => r.getBBox().height > 0).length,
    // what shows before any <details> is opened: at most 10 rows a table
    visibleRows: [...g.querySelectorAll('table.sortable')].filter(shown).map(t => t.tBodies[0].rows.length),
    folded: [...g.querySelectorAll('details')].filter(d => !d.open).length,
  }));
  const spills = [...document.querySelectorAll('svg.chart text')].filter(t => {
    const b = t.getBBox(), v = t.ownerSVGElement.viewBox.baseVal;
    return b.width > 0 && (b.x < v.x - 1 || b.y < v.y - 1
      || b.x + b.width > v.x + v.width + 1 || b.y + b.height > v.y + v.height + 1);
  }).length;
  const overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
  const cards = [...document.querySelectorAll('.cards .card')].map(c => Math.round(rect(c).width));
  const alerts = [...document.querySelectorAll('#alerts details')].map(d => [d.querySelector('summary').textContent,
    d.querySelectorAll('ul.alert li').length]);
  // open a folded table and sort it by rank, twice, the way a user clicks
  const folded = document.querySelector('section.group details:not([open])');
  folded.open = true;
  const table = folded.querySelector('table.sortable');
  const rankColumn = [...table.tHead.rows[0].cells].findIndex(th => th.textContent.trim() === 'rank');
  const ranks = () => [...table.tBodies[0].rows].map(r => Number(r.cells[rankColumn].dataset.v));
  table.tHead.rows[0].cells[rankColumn].click();
  const ascending = ranks();
  table.tHead.rows[0].cells[rankColumn].click();
  const descending = ranks();
  const links = [...document.querySelectorAll('section.group td a')].map(a => a.href);
  document.body.setAttribute('data-check', JSON.stringify({groups, spills, overflow, cards, alerts, ascending,
    descending, links, height: document.documentElement.scrollHeight}));
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("width", [1280, 390])
def test_html_report_lays_out_in_headless_chromium(demo, tmp_path, width):
    """The demo's page as a browser lays it out, at a desktop's width and a phone's: what changed
    first, each tracked domain with its competitors and its link gap, long tables folded, nothing
    wider than the screen."""
    root, _, _ = demo
    probe = tmp_path / "probe.html"
    probe.write_text((root / "demo" / "report.html").read_text().replace("</body>", _PROBE))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--window-size={width},900", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r"data-check=\"([^\"]+)\"", done.stdout)
    assert match, done.stderr[-2000:]
    check = json.loads(html_module.unescape(match.group(1)))
    assert check["overflow"] <= 0 and check["spills"] == 0
    groups = check["groups"]
    assert [(g["target"], g["role"]) for g in groups] == [
        ("acme-shop.com", "tracked"), ("news-portal.org", "tracked"), ("travel-blog.net", "tracked")]
    acme = groups[0]
    assert acme["competitors"] == [["bargain-hub.net", "competitor of acme-shop.com"],
                                   ["shopmart-rival.com", "competitor of acme-shop.com"]]
    assert acme["gap"] and not any(g["gap"] for g in groups[1:])
    # the sizes of the site and its competitors on one axis from zero, beside the changes
    assert acme["lines"] == ["acme-shop.com", "bargain-hub.net", "shopmart-rival.com"]
    for group in groups:
        assert group["latest"][:2] == ["Lost", "New, first seen"] and "referring domains from" in group["headline"]
        assert group["zero"] and group["bars"] >= 5 and len(group["charts"]) == 2
        assert min(group["charts"]) >= (300 if width > 400 else 320)
        assert group["visibleRows"] and max(group["visibleRows"]) <= 10 and group["folded"] >= 3
    assert len(check["cards"]) == 3 and min(check["cards"]) >= 250
    assert [a[0].split(":")[0] for a in check["alerts"]] == ["acme-shop.com", "news-portal.org", "travel-blog.net"]
    assert all(items > 0 for _, items in check["alerts"])
    assert check["ascending"] == sorted(check["ascending"]) and check["descending"] == sorted(check["ascending"])[::-1]
    assert check["links"] and all(href.startswith("https://") for href in check["links"])
    # the whole page, every table folded, is a few screens at a desktop's width
    assert width < 400 or check["height"] < 9000


def test_dashboard_opens_dlt_on_this_projects_pipeline_and_database(loaded):
    """`refdomains dashboard` is dlt's dashboard on the pipeline `run` loads with here: the
    project's working folder and its DuckDB file (an attached pipeline would look elsewhere).
    `--print` gives the dlt command; the same folder and environment, in a process started in the
    project folder as the dashboard's is, list the marts with their descriptions and read their rows."""
    import shlex
    import sys
    from pathlib import Path

    workdir, env = loaded
    done = run_cli(workdir, env, "dashboard", "--print")
    assert done.returncode == 0, done.stderr
    assignment, *command = shlex.split(done.stdout)
    key, database = assignment.split("=", 1)
    assert (key, database) == ("DESTINATION__DUCKDB__CREDENTIALS", str(workdir / "serpstat_refdomains.duckdb"))
    assert command[:3] == ["dlt", "pipeline", "--pipelines-dir"] and command[4:] == ["serpstat_refdomains", "show"]
    pipelines_dir = command[3]
    marts = ["new_ref_domains", "lost_ref_domains", "ref_domain_changes", "ref_domains_weekly", "ref_domains_current",
             "link_gap", "link_gap_changes"]
    shown = subprocess.run(
        [sys.executable, "-c", "import json, sys, dlt; "
         "p = dlt.attach('serpstat_refdomains', pipelines_dir=sys.argv[1]); "
         "listed = {t['name']: t.get('description') for t in p.default_schema.data_tables(seen_data_only=True)}; "
         "rows = {n: p.dataset()(f'SELECT count(*) FROM {n}').fetchall()[0][0] for n in sys.argv[2:]}; "
         "print(json.dumps([listed, rows]))", pipelines_dir, *marts],
        cwd=workdir, env={**env, key: database}, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    listed, rows = json.loads(shown.stdout)
    from serpstat_refdomains.models import catalog
    assert {name: listed.get(name) for name in marts} == {name: catalog()[name].description for name in marts}
    assert rows == {name: db(workdir, f"SELECT count(*) FROM serpstat.{name}")[0][0] for name in marts}
    assert rows["new_ref_domains"] > 0
    # the dashboard itself needs the dashboard extra, which the test environment lacks
    if not (Path(sys.executable).parent / "marimo").exists():
        missing = run_cli(workdir, env, "dashboard")
        assert missing.returncode == 2 and "pip install 'serpstat-refdomains[dashboard]'" in missing.stderr
        assert len(missing.stderr.strip().splitlines()) == 1
