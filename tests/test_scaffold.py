"""`refdomains init`: the files a new project gets, generated from the settings' own declaration,
and never written over. (The whole flow from a built wheel is tests/test_e2e_install.py.)"""

from __future__ import annotations

import json
import py_compile
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from serpstat_refdomains import __version__, scaffold
from serpstat_refdomains.config import SerpstatConfiguration
from tests.helpers import run_cli

COMMENTED_KEY = re.compile(r"^# (\w+) = (.*)$")


def _uncommented(text: str) -> dict:
    """The TOML with every commented `# key = value` of a setting made live."""
    names = {f.name for f in scaffold.fields()}
    lines = [f"{m[1]} = {m[2]}" if (m := COMMENTED_KEY.match(line)) and m[1] in names else line
             for line in text.splitlines()]
    return tomllib.loads("\n".join(lines))["sources"]["serpstat"]


def test_config_and_secrets_name_every_setting_under_its_docstring(tmp_path):
    scaffold.init(tmp_path)
    config = (tmp_path / ".dlt" / "config.toml").read_text()
    secrets = (tmp_path / ".dlt" / "secrets.toml").read_text()
    declared = SerpstatConfiguration.get_resolvable_fields()
    assert [f.name for f in scaffold.fields()] == list(declared)
    for field in scaffold.fields():
        assert field.doc, f"{field.name} has no docstring to write into config.toml"
        assert field.doc[:40] in " ".join(line.lstrip("# ") for line in config.splitlines()), field.name
        key = re.compile(rf"^#? ?{field.name} = ", re.M)
        if field.secret:
            assert f"# {field.name}: a secret, set in .dlt/secrets.toml" in config
            assert key.search(secrets) and not key.search(config), field.name
        else:
            assert key.search(config) and not key.search(secrets), field.name
    assert "api_token" in tomllib.loads(secrets)["sources"]["serpstat"]


def test_every_commented_value_is_the_default_and_validates(tmp_path):
    """Uncommenting a line changes nothing: it shows the code's default (or a valid example where
    the default is "not set"), so the file cannot teach a wrong value."""
    scaffold.init(tmp_path)
    live = {**_uncommented((tmp_path / ".dlt" / "config.toml").read_text()),
            **_uncommented((tmp_path / ".dlt" / "secrets.toml").read_text())}
    for field in scaffold.fields():
        if field.name in scaffold.REQUIRED:
            assert live[field.name] in ("", []), field.name  # empty: a run stops and says what to set
        elif field.default is None:
            assert live[field.name] == scaffold.EXAMPLES[field.name], field.name
        else:
            assert live[field.name] == field.default, field.name
    live.update(domains=scaffold.EXAMPLES["domains"], api_token="t")
    settings = SerpstatConfiguration(**live).validate(need_token=True)
    assert settings.max_credits_per_run == 50000 and settings.complex_filter is not None


def test_an_unedited_project_stops_with_one_line_naming_what_to_set(tmp_path):
    scaffold.init(tmp_path)
    env = {"RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(tmp_path / "dlt"), "PATH": "/usr/bin:/bin"}
    done = run_cli(tmp_path, env, "run")
    assert done.returncode == 2 and done.stderr.startswith("error: no domains to track"), done.stderr
    config = tmp_path / ".dlt" / "config.toml"
    config.write_text(config.read_text().replace("domains = []", 'domains = ["example.com"]'))
    done = run_cli(tmp_path, env, "run")
    assert done.returncode == 2 and "Serpstat API token is missing" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "serpstat_refdomains.duckdb").exists()


def test_init_keeps_what_exists_and_adds_only_its_own_part(tmp_path):
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text('[sources.other]\nkey = 1\n')
    (tmp_path / ".dlt" / "secrets.toml").write_text('[sources.serpstat]\napi_token = "mine"\n')
    (tmp_path / ".gitignore").write_text("node_modules/\n*.duckdb\n")
    (tmp_path / "refdomains.cron").write_text("# my own\n")
    lines = scaffold.init(tmp_path, "cron")
    assert lines[:4] == [
        "added [sources.serpstat] to .dlt/config.toml (nothing else in it changed)",
        "kept .dlt/secrets.toml (it already has [sources.serpstat])",
        "added .dlt/secrets.toml, *.duckdb.wal, *.duckdb.lock, *.duckdb.tmp/, .dlt/pipelines/, refdomains.log "
        "to .gitignore",
        "kept refdomains.cron (it exists; delete it to have it written again)",
    ]
    config = tomllib.loads((tmp_path / ".dlt" / "config.toml").read_text())
    assert config["sources"]["other"] == {"key": 1} and config["sources"]["serpstat"] == {"domains": []}
    assert (tmp_path / ".dlt" / "secrets.toml").read_text() == '[sources.serpstat]\napi_token = "mine"\n'
    assert (tmp_path / ".gitignore").read_text().startswith("node_modules/\n*.duckdb\n\n# serpstat-refdomains")
    assert (tmp_path / "refdomains.cron").read_text() == "# my own\n"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = scaffold.init(tmp_path, "cron")
    assert all(line.startswith("kept ") for line in again[:4]), again
    assert before == {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def test_a_toml_file_that_does_not_parse_is_kept_and_named(tmp_path):
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("[sources.serpstat\n")
    lines = scaffold.init(tmp_path)
    assert lines[0].startswith("kept .dlt/config.toml (it is not valid TOML: ")
    assert (tmp_path / ".dlt" / "config.toml").read_text() == "[sources.serpstat\n"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--schedule", "weekly"], "argument --schedule: invalid choice: 'weekly'"),
    (["--dir", "{file}"], "is a file, not a folder"),
    (["--dir", "{file}/sub"], "cannot write the project in"),
])
def test_init_usage_errors_are_one_line_exit_2(tmp_path, args, fragment):
    (tmp_path / "file").write_text("")
    args = [a.replace("{file}", str(tmp_path / "file")) for a in args]
    done = run_cli(tmp_path, {"PATH": "/usr/bin:/bin"}, "init", *args)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert fragment in done.stderr and done.stdout == ""


def test_the_schedules_are_ready_to_run(tmp_path):
    for schedule in ("github-actions", "airflow", "cron"):
        scaffold.init(tmp_path, schedule)
    workflow = yaml.safe_load((tmp_path / ".github" / "workflows" / "refdomains.yml").read_text())
    steps = workflow["jobs"]["load"]["steps"]
    install, load = (s for s in steps if "run" in s)
    assert install["run"] == (f'python -m pip install "serpstat-refdomains @ git+https://github.com/<org>/'
                              f'serpstat-refdomains@v{__version__}"')
    assert load["run"] == "refdomains run --destination postgres"
    assert load["env"]["SOURCES__SERPSTAT__API_TOKEN"] == "${{ secrets.SERPSTAT_API_TOKEN }}"
    assert [c["cron"] for c in workflow[True]["schedule"]] == ["15 5 * * *"]  # YAML 1.1: on -> True
    assert workflow["concurrency"]["group"] and not any("cache" in json.dumps(s) for s in steps)
    py_compile.compile(str(tmp_path / "dags" / "refdomains.py"), doraise=True)
    cron = (tmp_path / "refdomains.cron").read_text().splitlines()[-1]
    assert cron.startswith(f"15 5 * * * cd {tmp_path} && /") and cron.endswith("/refdomains run >> refdomains.log 2>&1")


def test_the_workflow_installs_the_git_url_and_revision_pip_recorded(monkeypatch):
    recorded = {"url": "https://user:ghp_SECRET@github.com/acme/serpstat-refdomains",
                "vcs_info": {"vcs": "git", "requested_revision": "v0.2.0", "commit_id": "a" * 40}}

    class Installed:
        @staticmethod
        def read_text(name):
            return json.dumps(recorded) if name == "direct_url.json" else None

    monkeypatch.setattr(scaffold.metadata, "distribution", lambda name: Installed)
    assert scaffold.requirement() == "serpstat-refdomains @ git+https://github.com/acme/serpstat-refdomains@v0.2.0"
    del recorded["vcs_info"]["requested_revision"]  # installed from a branch's head: pinned to its commit
    assert scaffold.requirement().endswith("@" + "a" * 40)
    recorded.update(url="file:///tmp/serpstat_refdomains-0.1.0-py3-none-any.whl", vcs_info=None)
    assert scaffold.requirement() == scaffold.PLACEHOLDER_REQUIREMENT.replace("<version>", __version__)


def test_the_templates_are_in_the_package():
    assert Path(scaffold.__file__).with_name("templates").joinpath("github-actions.yml").is_file()
