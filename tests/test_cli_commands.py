"""`refdomains report | status | models | demo | emulator` as processes, and the HTML in a browser."""

from __future__ import annotations

import csv
import datetime as dt
import html as html_module
import io
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


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Three weekly `refdomains run`s of two targets, in a folder of their own."""
    from serpstat_refdomains.emulator import SerpstatEmulator
    workdir = tmp_path_factory.mktemp("cli")
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=3) as emulator:
        emulator.graph.set_profile("alpha.com", Profile(base_size=300))
        emulator.graph.set_profile("beta.org", Profile(base_size=150))
        env = cli_env(workdir, emulator, "alpha.com,beta.org")
        for day in WEEKS:
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
    assert {(r["ref_domain"], r["detected_on"]) for r in payload["new_ref_domains"]} == \
        {(d, day.isoformat()) for d, day in new}
    assert {(r["ref_domain"], r["lost_on"]) for r in payload["lost_ref_domains"]} == \
        {(d, day.isoformat()) for d, day in lost}
    ranks = [r["domain_rank"] for r in payload["new_ref_domains"]]
    assert ranks == sorted(ranks, reverse=True) and lost and new  # highest rank first
    # weekly runs pull a full snapshot (7 days old) and no last_week, which adds nothing on such a day
    assert len(payload["snapshots"]) == 2 * len(WEEKS)


def test_report_filters_by_domain_and_since_as_csv(loaded):
    workdir, env = loaded
    since = WEEKS[2]
    done = run_cli(workdir, env, "report", "--domain", "Alpha.COM", "--since", since.isoformat(), "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert rows and {r["target_domain"] for r in rows} == {"alpha.com"}
    sections = {r["section"] for r in rows}
    assert sections <= {"new", "lost", "weekly"} and "new" in sections
    assert all(r["detected_on"] >= since.isoformat() for r in rows if r["section"] == "new")
    expected_new = db(workdir, "SELECT count(*) FROM serpstat.new_ref_domains WHERE target_domain = 'alpha.com' "
                               "AND detected_on >= ?", [since])[0][0]
    assert sum(r["section"] == "new" for r in rows) == expected_new


def test_report_text_and_html_file(loaded, tmp_path):
    workdir, env = loaded
    text = run_cli(workdir, env, "report")
    assert text.returncode == 0 and "NEW referring domains" in text.stdout and "LOST referring domains" in text.stdout
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
])
def test_report_usage_errors(loaded, flags, fragment):
    workdir, env = loaded
    done = run_cli(workdir, env, "report", *flags)
    assert done.returncode == 2 and fragment in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_status_shows_latest_snapshots_credits_and_balance(loaded):
    workdir, env = loaded
    done = run_main(workdir, env, "status", day=WEEKS[-1])  # "this month" is the month of the runs
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["target_domain", "search_type", "snapshot_kind", "snapshot_date", "status",
                                "rows_loaded", "credits_spent"]
    body = [line.split() for line in lines[1:3]]
    assert {(r[0], r[2], r[3], r[4]) for r in body} == {
        (t, "full", WEEKS[-1].isoformat(), "complete") for t in ("alpha.com", "beta.org")}
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
        done = run_cli(tmp_path, env, command)
        assert done.returncode == 2 and "run `refdomains run` first" in done.stderr, command
    assert list(tmp_path.iterdir()) == []


def test_demo_replays_six_weeks_offline(tmp_path):
    env = {k: v for k, v in cli_env(tmp_path, type("E", (), {"url": "http://127.0.0.1:9/v4"})(), "x.com").items()
           if not k.startswith("SOURCES__")}
    done = subprocess.run([*REFDOMAINS, "demo", "--dir", str(tmp_path / "demo")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("week ") >= 6 and "NEW referring domains" in done.stdout
    report = tmp_path / "demo" / "report.html"
    assert report.exists() and "<svg" in report.read_text()
    with duckdb.connect(str(tmp_path / "demo" / "serpstat_refdomains.duckdb"), read_only=True) as con:
        fulls = con.execute("SELECT count(DISTINCT snapshot_date) FROM serpstat.snapshots WHERE status = "
                            "'complete' AND snapshot_kind = 'full'").fetchall()[0][0]
        new, lost = con.execute("SELECT (SELECT count(*) FROM serpstat.new_ref_domains), "
                                "(SELECT count(*) FROM serpstat.lost_ref_domains)").fetchall()[0]
    assert fulls == 6 and new > 0 and lost > 0
    assert not (tmp_path / "serpstat_refdomains.duckdb").exists()  # never the user's pipeline
    # issue 15: a target with two competitors, its link gap and the alerts it would send
    assert "LINK GAP of acme-shop.com" in done.stdout and "alerts (dry run, nothing sent)" in done.stdout
    page = report.read_text()
    assert "<h2>Link-gap opportunities" in page and '<pre class="alerts">' in page
    with duckdb.connect(str(tmp_path / "demo" / "serpstat_refdomains.duckdb"), read_only=True) as con:
        competitors = con.execute("SELECT count(DISTINCT competitor_domain) FROM serpstat.target_competitors "
                                  "WHERE target_domain = 'acme-shop.com'").fetchall()[0][0]
        shared, already = con.execute("SELECT count(*) FILTER (WHERE competitors_linking = 2), "
                                      "count(*) FILTER (WHERE site_already_links) FROM serpstat.link_gap").fetchall()[0]
        won = con.execute("SELECT count(*) FROM serpstat.link_gap_changes WHERE won").fetchall()[0][0]
    assert competitors == 2 and shared >= 4 and already >= 1 and won == 2
    # the demo folder is a project: `refdomains report` and `status` run in it read its data
    for command in (["report", "--format", "json"], ["status"]):
        shown = run_cli(tmp_path / "demo", env, *command)
        assert shown.returncode == 0, shown.stderr
    assert json.loads(run_cli(tmp_path / "demo", env, "report", "--format", "json").stdout)["new_ref_domains"]


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


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_html_report_charts_draw_in_headless_chromium(loaded, tmp_path):
    workdir, env = loaded
    page = tmp_path / "report.html"
    assert run_cli(workdir, env, "report", "--format", "html", "--output", str(page)).returncode == 0
    probe = tmp_path / "probe.html"
    # measure what the browser laid out, and sort a table the way a user clicks
    probe.write_text(page.read_text().replace("</body>", """<script>
      const lines = [...document.querySelectorAll('svg.chart polyline.series')].map(p => p.getBBox().width);
      const bars = [...document.querySelectorAll('svg.chart rect.bar')].filter(r => r.getBBox().height > 0).length;
      const sections = [...document.querySelectorAll('section.target')].map(s => ({
        target: s.dataset.target,
        charts: [...s.querySelectorAll('svg.chart')].map(c => Math.round(c.getBoundingClientRect().width)),
        rise: Math.round(s.querySelector('polyline.series').getBBox().height),
      }));
      // every label inside its chart's viewBox
      const spills = [...document.querySelectorAll('svg.chart text')].filter(t => {
        const b = t.getBBox(), v = t.ownerSVGElement.viewBox.baseVal;
        return b.x < v.x - 1 || b.y < v.y - 1
          || b.x + b.width > v.x + v.width + 1 || b.y + b.height > v.y + v.height + 1;
      }).length;
      const overflow = document.documentElement.scrollWidth - document.documentElement.clientWidth;
      const table = document.querySelector('section.target table.sortable');
      const rankColumn = [...table.tHead.rows[0].cells].findIndex(th => th.textContent.trim() === 'rank');
      const ranks = () => [...table.tBodies[0].rows].map(r => Number(r.cells[rankColumn].dataset.v));
      table.tHead.rows[0].cells[rankColumn].click();
      const ascending = ranks();
      table.tHead.rows[0].cells[rankColumn].click();
      const descending = ranks();
      const links = [...document.querySelectorAll('section.target td a')].map(a => [a.textContent, a.href]);
      document.body.setAttribute('data-check', JSON.stringify({lines, bars, sections, spills, overflow,
                                                               ascending, descending, links}));
    </script></body>"""))
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           "--window-size=1024,900", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           probe.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r"data-check=\"([^\"]+)\"", done.stdout)
    assert match, done.stderr[-2000:]
    check = json.loads(html_module.unescape(match.group(1)))
    assert len(check["lines"]) == 2 and all(width > 100 for width in check["lines"])
    assert check["bars"] >= 3
    # one section a target, each with its own two charts, laid out side by side or stacked, never squeezed
    assert [s["target"] for s in check["sections"]] == ["alpha.com", "beta.org"]
    assert all(len(s["charts"]) == 2 and min(s["charts"]) >= 300 for s in check["sections"])
    # the axis fits the target's values: a few domains of change is a visible rise, not a flat line
    assert all(s["rise"] > 20 for s in check["sections"])
    assert check["spills"] == 0 and check["overflow"] <= 0
    assert check["ascending"] == sorted(check["ascending"]) and check["descending"] == sorted(check["ascending"])[::-1]
    assert check["links"] and all(href.startswith("https://") for _, href in check["links"])
