"""`serpstat_refdomains.run_configured`: what a scheduler's task calls (the Airflow DAG) does what
`refdomains run` does, read from the project folder it is given, and fails with the command's line."""

from __future__ import annotations

from pathlib import Path

import duckdb

from serpstat_refdomains import models, run_configured
from serpstat_refdomains.emulator import Fault
from tests.helpers import TODAY, TOKEN


def _project(folder: Path, emulator, domains: str, extra: str = "") -> Path:
    (folder / ".dlt").mkdir(parents=True)
    (folder / ".dlt" / "config.toml").write_text(
        f'[sources.serpstat]\ndomains = {domains}\napi_url = "{emulator.url}"\nrequests_per_second = 1000\n{extra}')
    (folder / ".dlt" / "secrets.toml").write_text(f'[sources.serpstat]\napi_token = "{TOKEN}"\n')
    return folder


def test_it_reads_the_given_project_honours_its_settings_and_builds_the_models(tmp_path, today_emulator,
                                                                              monkeypatch):
    """The tests run in the repository, whose own .dlt/ names other domains: only the project's
    configuration may be read, and its lost_confirmation_snapshots reach the models build."""
    today_emulator.set_profile("mine.com", 40)
    project = _project(tmp_path / "project", today_emulator, '["mine.com"]', "lost_confirmation_snapshots = 3\n")
    seen = {}
    build = models.build
    monkeypatch.setattr(models, "build", lambda pipeline, **kw: seen.update(kw) or build(pipeline, **kw))
    report = run_configured(project_dir=str(project), kind="full", progress=lambda fetcher: None)
    assert [(str(r.target), r.status, r.snapshot_date) for r in report.results] == [("mine.com", "complete", TODAY)]
    assert report.failure is None and report.exit_code == 0 and report.models_built
    assert seen["lost_confirmation_snapshots"] == 3
    with duckdb.connect(str(project / "serpstat_refdomains.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains").fetchone() == (40,)
    assert (project / ".dlt" / "pipelines").is_dir() and not (Path.cwd() / "serpstat_refdomains.duckdb").exists()


def test_a_snapshot_not_complete_is_the_commands_exit_1_line(tmp_path, today_emulator):
    today_emulator.set_profile("good.com", 10)
    today_emulator.faults.add(Fault("api_error", query="down.com", times=-1))
    project = _project(tmp_path, today_emulator, '["good.com", "down.com"]')
    report = run_configured(project_dir=str(project), kind="full", build_models=False, progress=lambda fetcher: None)
    assert report.exit_code == 1
    assert report.failure == ("1 snapshot not complete (down.com full failed): completed snapshots are kept; "
                              "run again to fetch the rest")
    assert report.lines()[0].split() == ["target", "kind", "date", "status", "rows", "credits"]
