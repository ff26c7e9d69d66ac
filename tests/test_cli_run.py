"""`refdomains run` as a process: its table of snapshots, its exit codes, one-line errors that
write nothing, and the database in the folder it runs in."""

from __future__ import annotations

import io

import duckdb

from serpstat_refdomains.emulator import Fault
from serpstat_refdomains.progress import Progress
from tests.helpers import TODAY, TOKEN, cli_env, ref_requests, run_cli, run_main, run_pipeline


def test_run_prints_a_table_and_exit_code_1_on_failure(tmp_path, today_emulator):
    emulator = today_emulator
    emulator.set_profile("good.com", 10)
    emulator.faults.add(Fault("api_error", query="down.com", times=-1))
    env = cli_env(tmp_path, emulator, "good.com,down.com")
    done = run_cli(tmp_path, env, "run", "--kind", "full", "--no-models")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["target", "kind", "date", "status", "rows", "credits"]
    assert lines[1].split() == ["good.com", "full", TODAY.isoformat(), "complete", "10", "11"]  # count + rows
    assert lines[2].split()[:4] == ["down.com", "full", TODAY.isoformat(), "failed"]
    assert "32016 Large query domains not supported" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, emulator):
    cases = [
        ({"SOURCES__SERPSTAT__API_TOKEN": ""}, [], "SOURCES__SERPSTAT__API_TOKEN is set but empty"),
        ({"SOURCES__SERPSTAT__API_TOKEN": "wrong-token"}, [], "Invalid token!"),
        ({"SOURCES__SERPSTAT__DOMAINS": '["https://example.com/page"]'}, [], "is a URL"),
        ({"SOURCES__SERPSTAT__DOMAINS": '["my site.com"]'}, [], "not a domain"),
        ({"SOURCES__SERPSTAT__DOMAINS": "[]"}, [], "no domains to track"),
        ({"SOURCES__SERPSTAT__SEARCH_TYPE": "url"}, [], "search_type 'url' is unknown"),
        ({"SOURCES__SERPSTAT__PAGE_SIZE": "0"}, [], "page_size 0 is out of range"),
        ({"SOURCES__SERPSTAT__PAGE_SIZE": "5000"}, [], "page_size 5000 is out of range"),
        ({"SOURCES__SERPSTAT__COMPLEX_FILTER": "[[{"}, [], "complex_filter is not valid JSON"),
        ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '[[{"field": "check", "compareType": "gt", "value": [1]}]]'},
         [], "complex_filter field 'check' is unknown"),
        ({}, ["--snapshot-date", "2026-13-01"], "is not a date"),
        ({}, ["--kind", "weekly"], "--kind 'weekly' is unknown"),
        ({}, ["--destination", "nowhere"], "destination 'nowhere' is unknown"),
    ]
    for extra, flags, fragment in cases:
        env = cli_env(tmp_path, emulator, '["example.com"]', **extra)
        done = run_main(tmp_path, env, "run", *flags)
        assert done.returncode == 2, (fragment, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (fragment, done.stderr)
        assert "Traceback" not in done.stderr and TOKEN not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a config error wrote files"
    assert ref_requests(emulator) == []


def test_each_folder_keeps_its_own_database_under_one_dlt_data_dir(tmp_path, today_emulator):
    """dlt would put a relative DuckDB file in the folder where the pipeline FIRST ran: a second
    project (or `refdomains report` run elsewhere) then silently shared the first one's database."""
    emulator = today_emulator
    emulator.set_profile("one.com", 20)
    emulator.set_profile("two.com", 30)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shared = {"DLT_DATA_DIR": str(tmp_path / "dlt")}
    for folder, domain in ((first, "one.com"), (second, "two.com")):
        env = {**cli_env(folder, emulator, f'["{domain}"]'), **shared}
        done = run_cli(folder, env, "run", "--kind", "full", "--no-models")
        assert done.returncode == 0, done.stderr
    for folder, domain, rows in ((first, "one.com", 20), (second, "two.com", 30)):
        with duckdb.connect(str(folder / "serpstat_refdomains.duckdb"), read_only=True) as con:
            assert con.execute("SELECT target_domain, count(*) FROM serpstat.ref_domains GROUP BY 1").fetchall() \
                == [(domain, rows)]


def test_progress_lines_say_how_many_of_the_expected_rows_are_verified(tmp_path, emulator):
    """An outside review saw `0 rows, 1 requests, 7 credits` for a snapshot that loaded: rows are
    held until verified, so the line must not read as if the paid rows were lost."""
    emulator.set_profile("progress.com", 250)
    stream = io.StringIO()
    run_pipeline(tmp_path, emulator, ["progress.com"], kind="full", progress=Progress(stream=stream, every=0.0),
                 settings_options={"page_size": 100})
    lines = stream.getvalue().splitlines()
    assert lines and all(line.startswith("progress.com full: ") for line in lines)
    assert all(" 0 rows," not in line for line in lines), lines
    # the count and three windows, each sharing a row with the one before
    assert lines[-1] == f"progress.com full: 4 requests, {emulator.api.credits_charged} credits", lines
