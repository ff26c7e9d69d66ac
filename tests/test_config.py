"""Configuration: `SerpstatConfiguration` resolved by dlt from TOML and the environment, its one
`validate()` and the one-line errors it raises, and read-only commands that need no domains."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from serpstat_refdomains.config import ConfigError, SerpstatConfiguration, build_settings
from tests.helpers import DAY, TOKEN, cli_env, ref_requests, run_cli, run_main

DOMAIN_EXAMPLE = 'write domains = ["example.com"]'
FILTER_EXAMPLE = '[[{"field": "domain_rank", "compareType": "gte", "value": [10]}]]'
BARE_HOST = "use a bare host, e.g. 'example.com'"
WHOLE_NUMBER = "is out of range: use a whole number"

# Every mistake `validate()` names, with the exact line users have been reading: cause, then fix.
VALIDATION_ERRORS = [
    ({"domains": None}, 'no domains to track: set domains = ["example.com"] under [sources.serpstat] in '
                        ".dlt/config.toml or SOURCES__SERPSTAT__DOMAINS"),
    ({"domains": []}, 'no domains to track: set domains = ["example.com"] under [sources.serpstat] in '
                      ".dlt/config.toml or SOURCES__SERPSTAT__DOMAINS"),
    ({"domains": '["a.com"'}, "domains is not a valid JSON list: write it as '[\"example.com\", \"example.org\"]' "
                              "or 'example.com,example.org'"),
    ({"domains": 42}, f"domains must be a list, got int: {DOMAIN_EXAMPLE}"),
    ({"domains": [{"query": "a.com", "searchType": "domain"}]},
     # issue 15 added 'competitors': the line names the unknown key and every key there is
     "domain item {'query': 'a.com', 'searchType': 'domain'} needs exactly 'query' and optionally 'search_type' "
     "and 'competitors' (unknown key 'searchType'): "
     'write {query = "example.com", search_type = "domain", competitors = ["rival.com"]}'),
    ({"domains": [42]}, f"domain 42 is not text: {DOMAIN_EXAMPLE}"),
    ({"domains": ["https://x.com/page"]},
     "bad domain in configuration: 'https://x.com/page' is a URL, not a domain: use the bare host, e.g. 'example.com'"),
    ({"domains": "a.com, my site.com"},
     f"bad domain in configuration: 'my site.com' is not a domain (domain contains spaces, '/' or ':'): {BARE_HOST}"),
    ({"search_type": "url"}, "search_type 'url' is unknown: use one of domain, domain_with_subdomains"),
    ({"domains": [{"query": "a.com", "search_type": "url"}]},
     "search_type of 'a.com' 'url' is unknown: use one of domain, domain_with_subdomains"),
    ({"api_url": "ftp://api.serpstat.com/v4"},
     "api_url 'ftp://api.serpstat.com/v4' is not an http(s) URL: leave it unset for https://api.serpstat.com/v4"),
    ({"requests_per_second": "fast"}, "requests_per_second 'fast' is out of range: use a number above 0 "
                                      "(1 on most Serpstat plans, 10 on top plans)"),
    ({"requests_per_second": 0}, "requests_per_second 0 is out of range: use a number above 0 "
                                 "(1 on most Serpstat plans, 10 on top plans)"),
    ({"requests_per_second": "inf"}, "requests_per_second 'inf' is out of range: use a number above 0 "
                                     "(1 on most Serpstat plans, 10 on top plans)"),
    ({"complex_filter": "[[{"}, f"complex_filter is not valid JSON: write an array of arrays, e.g. {FILTER_EXAMPLE}"),
    ({"complex_filter": '{"field": "domain_rank"}'}, "complex_filter must be a non-empty array of non-empty arrays "
                                                    f"(OR of AND groups): e.g. {FILTER_EXAMPLE}"),
    ({"complex_filter": [["domain_rank"]]}, "complex_filter condition 'domain_rank' is not an object: "
                                            'use {"field": ..., "compareType": ..., "value": [...]}'),
    ({"complex_filter": [[{"additional_filters": "last_week"}]]},
     "complex_filter must not contain last_week: the pipeline adds it itself for last_week pulls "
     "(fetch_last_week, --kind last_week)"),
    ({"complex_filter": [[{"additional_filters": "subdomains"}]]},
     "complex_filter additional_filters 'subdomains' is unknown: "
     "use one of no_subdomains, only_subdomains, only_hosts"),
    ({"complex_filter": [[{"field": "check", "compareType": "gt", "value": [1]}]]},
     "complex_filter field 'check' is unknown: use one of domain_links, domain_from, domain_rank"),
    ({"complex_filter": [[{"field": "domain_rank", "compareType": "above", "value": [1]}]]},
     "complex_filter compareType 'above' is unknown: use one of gt, lt, gte, lte, eq, neq, between, contains, "
     "notContains, startsWith, endsWith"),
    ({"complex_filter": [[{"field": "domain_rank", "compareType": "contains", "value": [1]}]]},
     "complex_filter compareType 'contains' does not apply to domain_rank: text compares go with domain_from, "
     "numeric ones with domain_rank/domain_links"),
    ({"complex_filter": [[{"field": "domain_rank", "compareType": "gt", "value": []}]]},
     "complex_filter value for domain_rank must be a non-empty list, e.g. [10]"),
    ({"complex_filter": [[{"field": "domain_rank", "compareType": "between", "value": [1]}]]},
     'complex_filter between takes two numbers: "value": [from, to]'),
    ({"complex_filter": [[{"field": "domain_rank", "compareType": "gte", "value": ["x"]}]]},
     "complex_filter value for domain_rank must be numbers, e.g. [10]"),
    ({"page_size": 0}, f"page_size 0 {WHOLE_NUMBER} 1-1000"),
    ({"page_size": 5000}, f"page_size 5000 {WHOLE_NUMBER} 1-1000"),
    ({"page_size": "ten"}, f"page_size 'ten' {WHOLE_NUMBER} 1-1000"),
    ({"page_size": True}, f"page_size True {WHOLE_NUMBER} 1-1000"),
    ({"max_credits_per_run": 0}, f"max_credits_per_run 0 {WHOLE_NUMBER} at least 1"),
    ({"full_snapshot_every_days": 0}, f"full_snapshot_every_days 0 {WHOLE_NUMBER} at least 1"),
    ({"fetch_last_week": "sometimes"}, "fetch_last_week 'sometimes' is not true or false: write true or false"),
    ({"lost_confirmation_snapshots": 0}, f"lost_confirmation_snapshots 0 {WHOLE_NUMBER} at least 1"),
    ({"duckdb_memory_limit": "64MB"},
     "duckdb_memory_limit '64MB' is not a memory size of at least 128MB: write e.g. \"256MB\" or \"2GB\""),
    ({"duckdb_memory_limit": "lots"},
     "duckdb_memory_limit 'lots' is not a memory size of at least 128MB: write e.g. \"256MB\" or \"2GB\""),
]


@pytest.mark.parametrize("options, message", VALIDATION_ERRORS,
                         ids=[f"{next(iter(o))}={next(iter(o.values()))!r}" for o, _ in VALIDATION_ERRORS])
def test_each_validation_error_keeps_its_line(options, message):
    with pytest.raises(ConfigError) as raised:
        build_settings(**{"domains": ["a.com"], **options})
    assert str(raised.value) == message


def test_domain_picks_and_the_token_keep_their_lines():
    configured = SerpstatConfiguration(domains=["a.com"], api_token="  ")
    with pytest.raises(ConfigError, match=r"^--domain b\.com is not configured \(configured domains: a\.com\): "
                                          r"add it to domains under \[sources\.serpstat\] first$"):
        configured.validate(only=["b.com"])
    with pytest.raises(ConfigError, match=r"^--domain: 'b c\.com' is not a domain"):
        configured.validate(only=["b c.com"])
    with pytest.raises(ConfigError) as raised:
        configured.validate(need_token=True)
    assert str(raised.value) == ("Serpstat API token is missing: set api_token under [sources.serpstat] in "
                                 ".dlt/secrets.toml or SOURCES__SERPSTAT__API_TOKEN")
    assert configured.validate().targets[0].domain == "a.com" and configured.token is None


def test_validate_turns_values_as_written_into_settings():
    """Environment variables arrive as text, TOML as numbers and lists: both make the same settings."""
    as_text = SerpstatConfiguration(domains='["a.com", "B.org"]', page_size="250", requests_per_second="2.5",
                                    max_credits_per_run="none", fetch_last_week="false",
                                    complex_filter='[[{"field": "domain_rank", "compareType": "gte", "value": [10]}]]',
                                    duckdb_memory_limit="1gb").validate()
    as_toml = SerpstatConfiguration(domains=["a.com", "b.org"], page_size=250, requests_per_second=2.5,
                                    fetch_last_week=False,
                                    complex_filter=[[{"field": "domain_rank", "compareType": "gte", "value": [10]}]],
                                    duckdb_memory_limit="1GB").validate()
    assert as_text == as_toml
    assert [t.domain for t in as_text.targets] == ["a.com", "b.org"]
    assert (as_text.page_size, as_text.requests_per_second, as_text.max_credits_per_run, as_text.fetch_last_week,
            as_text.duckdb_memory_limit) == (250, 2.5, None, False, "1GB")



def test_explicit_settings_read_no_file_or_variable(monkeypatch):
    """The demo, tests and benchmarks build settings in code: the user's configuration must not leak in."""
    monkeypatch.setenv("SOURCES__SERPSTAT__PAGE_SIZE", "5")
    monkeypatch.setenv("SOURCES__SERPSTAT__DOMAINS", '["user.com"]')
    settings = build_settings(domains=["code.com"])
    assert [t.domain for t in settings.targets] == ["code.com"] and settings.page_size == 1000


def test_no_domains_is_no_targets_for_read_only_use():
    assert SerpstatConfiguration().validate(need_targets=False).targets == ()
    with pytest.raises(ConfigError, match=r"^no domains to track"):
        SerpstatConfiguration().validate()
    with pytest.raises(ConfigError, match=r"^search_type 'url' is unknown"):
        SerpstatConfiguration(search_type="url").validate(need_targets=False)

def resolve_in(workdir: Path, env: dict[str, str], code: str) -> dict:
    """Run `code` (which prints JSON) in a fresh process in `workdir`: dlt reads .dlt/*.toml of the
    folder a process starts in, once."""
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


RESOLVE = """
import json
from serpstat_refdomains.config import read_configuration, resolve_settings
config = read_configuration()
settings, token = resolve_settings(need_token=False, need_domains=False)
print(json.dumps({"spec": type(config).__name__, "token": token, "page_size": settings.page_size,
                  "requests_per_second": settings.requests_per_second, "api_url": settings.api_url,
                  "full_snapshot_every_days": settings.full_snapshot_every_days,
                  "lost_confirmation_snapshots": settings.lost_confirmation_snapshots,
                  "targets": [[t.domain, t.search_type] for t in settings.targets]}))
"""


def test_settings_resolve_from_config_toml_secrets_toml_and_the_environment(tmp_path, emulator):
    dot_dlt = tmp_path / ".dlt"
    dot_dlt.mkdir()
    (dot_dlt / "config.toml").write_text(
        "[sources.serpstat]\n"
        'domains = ["toml.com", {query = "Shop.toml.org", search_type = "domain"}]\n'
        "page_size = 250\n"
        "full_snapshot_every_days = 14\n")
    (dot_dlt / "secrets.toml").write_text(f'[sources.serpstat]\napi_token = "{TOKEN}"\n')
    env = cli_env(tmp_path, emulator, "unused.com", SOURCES__SERPSTAT__FULL_SNAPSHOT_EVERY_DAYS="3",
                  SOURCES__SERPSTAT__REQUESTS_PER_SECOND="5")
    for name in ("SOURCES__SERPSTAT__DOMAINS", "SOURCES__SERPSTAT__API_TOKEN"):
        env.pop(name)
    resolved = resolve_in(tmp_path, env, RESOLVE)
    assert resolved == {
        "spec": "SerpstatConfiguration",
        "token": TOKEN,  # from secrets.toml
        "page_size": 250,  # from config.toml
        "requests_per_second": 5.0,  # from the environment
        "api_url": emulator.url,
        "full_snapshot_every_days": 3,  # the environment wins over config.toml, as everywhere in dlt
        "lost_confirmation_snapshots": 2,  # the default
        "targets": [["toml.com", "domain_with_subdomains"], ["shop.toml.org", "domain"]],
    }


def test_read_only_settings_need_no_domains(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, "unused.com")
    for name in ("SOURCES__SERPSTAT__DOMAINS", "SOURCES__SERPSTAT__API_TOKEN"):
        env.pop(name)
    resolved = resolve_in(tmp_path, env, RESOLVE)
    assert resolved["targets"] == [] and resolved["token"] is None


def test_read_only_commands_work_with_no_domains_configured(tmp_path, emulator):
    emulator.set_profile("loaded.com", 40)
    env = cli_env(tmp_path, emulator, "loaded.com")
    done = run_main(tmp_path, env, "run", day=DAY)
    assert done.returncode == 0, done.stdout + done.stderr
    env.pop("SOURCES__SERPSTAT__DOMAINS")
    status = run_cli(tmp_path, env, "status")
    assert status.returncode == 0, status.stderr
    assert any(line.split()[:5] == ["loaded.com", "domain_with_subdomains", "full", DAY.isoformat(), "complete"]
               for line in status.stdout.splitlines()), status.stdout
    assert "example.com" not in status.stdout
    models = run_cli(tmp_path, env, "models")
    assert models.returncode == 0 and models.stdout.startswith("built "), models.stderr
    report = run_cli(tmp_path, env, "report", "--format", "json")
    assert report.returncode == 0, report.stderr
    assert {row["target_domain"] for row in json.loads(report.stdout)["snapshots"]} == {"loaded.com"}
    env.pop("SOURCES__SERPSTAT__API_TOKEN")
    status = run_cli(tmp_path, env, "status")
    assert status.returncode == 0 and "unknown (no api_token configured)" in status.stdout, status.stderr


@pytest.mark.parametrize("command, extra, line", [
    (["run"], {"SOURCES__SERPSTAT__API_TOKEN": ""},
     "environment variable SOURCES__SERPSTAT__API_TOKEN is set but empty, which dlt takes as its value (and would "
     "override the files): unset it, or give it a value"),
    (["run"], {"SOURCES__SERPSTAT__PAGE_SIZE": "ten"}, "configuration could not be read (Configured value for field "
     "`page_size` cannot be coerced into type `<class 'int'>`): check .dlt/config.toml and SOURCES__SERPSTAT__* "
     "variables"),
    (["run", "--domain", "b.com"], {},
     "--domain b.com is not configured (configured domains: a.com): add it to domains under [sources.serpstat] first"),
    (["models"], {"SOURCES__SERPSTAT__LOST_CONFIRMATION_SNAPSHOTS": "0"},
     f"lost_confirmation_snapshots 0 {WHOLE_NUMBER} at least 1"),
    (["status"], {"SOURCES__SERPSTAT__DOMAINS": '["a.com"'},
     "domains is not a valid JSON list: write it as '[\"example.com\", \"example.org\"]' or 'example.com,example.org'"),
])
def test_validation_errors_on_the_command_line_are_the_same_line_and_exit_2(tmp_path, emulator, command, extra,
                                                                             line):
    done = run_main(tmp_path, cli_env(tmp_path, emulator, "a.com", **extra), *command)
    assert (done.returncode, done.stderr, done.stdout) == (2, f"error: {line}\n", "")
    assert list(tmp_path.iterdir()) == []


# --- what is written must be what is read ----------------------------------------------------
@pytest.mark.parametrize("written, where, fragment", [
    ("max_credit_per_run = 10", "file", "unknown setting 'max_credit_per_run' under [sources.serpstat] in "
                                        ".dlt/config.toml: did you mean 'max_credits_per_run'?"),
    ("page_sise = 5", "file", "unknown setting 'page_sise' under [sources.serpstat] in .dlt/config.toml: "
                              "did you mean 'page_size'?"),
    ("SOURCES__SERPSTAT__PAGE_SISE=5", "env", "unknown environment variable SOURCES__SERPSTAT__PAGE_SISE: "
                                              "did you mean SOURCES__SERPSTAT__PAGE_SIZE?"),
    ("SOURCES__SERPSTAT__MAX_CREDIT_PER_RUN=10", "env", "did you mean SOURCES__SERPSTAT__MAX_CREDITS_PER_RUN?"),
    ('domains = ["a.com"\npage_size = 5', "file", ".dlt/config.toml is not valid TOML (Unclosed array (at line 3, "
                                                  "column 1)): "
                                                  "fix that line"),
])
def test_a_misspelt_setting_or_a_broken_file_is_refused_before_anything_is_fetched(tmp_path, emulator, written,
                                                                                   where, fragment):
    """`max_credit_per_run = 10` (no s) ran with no budget at all and spent 269 credits, exit 0;
    a TOML syntax error named no file, line or cause."""
    (tmp_path / ".dlt").mkdir()
    env = cli_env(tmp_path, emulator, "typo.com")
    if where == "file":
        (tmp_path / ".dlt" / "config.toml").write_text(f"[sources.serpstat]\n{written}\n")
    else:
        name, value = written.split("=", 1)
        env[name] = value
    for command in (["run"], ["report"], ["status"]):
        done = run_main(tmp_path, env, *command)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and fragment in lines[0], (command, done.stderr)
    assert not any(e.method.endswith("getRefDomains") for e in emulator.log)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".dlt"], "nothing written"


def test_the_plain_source_refuses_a_misspelt_setting_too(tmp_path, monkeypatch):
    from serpstat_refdomains import serpstat

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCES__SERPSTAT__DOMIANS", '["a.com"]')
    with pytest.raises(Exception, match="did you mean SOURCES__SERPSTAT__DOMAINS"):
        serpstat(domains=["a.com"], api_token=TOKEN)


def test_missing_warehouse_credentials_name_the_setting_the_variable_and_the_url_form(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, "creds.com")
    done = run_cli(tmp_path, env, "run", "--destination", "postgres")
    line = done.stderr.strip()
    assert done.returncode == 2 and len(line.splitlines()) == 1
    assert "[destination.postgres] credentials" in line and "DESTINATION__POSTGRES__CREDENTIALS" in line
    assert "postgresql://loader:password@db.example.com:5432/analytics" in line
    assert not any(e.method.endswith("getRefDomains") for e in emulator.log)


def test_a_warehouse_that_refuses_connections_is_one_line_exit_1(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, "down.com",
                  DESTINATION__POSTGRES__CREDENTIALS="postgresql://postgres:pw@127.0.0.1:9/test")
    for command in (["run", "--destination", "postgres"], ["status", "--destination", "postgres"],
                    ["report", "--destination", "postgres"]):
        done = run_cli(tmp_path, env, *command)
        line = done.stderr.strip()
        assert done.returncode == 1 and len(line.splitlines()) == 1 and "Traceback" not in line, (command, line)
        assert "destination 'postgres' at 127.0.0.1:9/test failed" in line and "accepts connections" in line


# Each ran with no budget (or none at all) and spent ~1,500 credits, exit 0, where
# max_credits_per_run = 10 meant skipped_budget: a name dlt does not read, close to one it does, or
# an empty variable (CI's `${{ vars.X }}` when X is unset) overriding config.toml's value.
BUDGET = "MAX_CREDITS_PER_RUN"
NOT_READ = [
    ({"SOURCE__SERPSTAT__" + BUDGET: "10"}, None,
     f"unknown environment variable SOURCE__SERPSTAT__{BUDGET}: did you mean SOURCES__SERPSTAT__{BUDGET}?"),
    ({"SOURCES_SERPSTAT__" + BUDGET: "10"}, None,
     f"unknown environment variable SOURCES_SERPSTAT__{BUDGET}: did you mean SOURCES__SERPSTAT__{BUDGET}?"),
    ({"SOURCES__SERPSTAT_" + BUDGET: "10"}, None,
     f"unknown environment variable SOURCES__SERPSTAT_{BUDGET}: did you mean SOURCES__SERPSTAT__{BUDGET}?"),
    ({"SOURCES__MAX_CREDIT_PER_RUN": "10"}, None,
     f"unknown environment variable SOURCES__MAX_CREDIT_PER_RUN: did you mean SOURCES__{BUDGET}?"),
    ({"SOURCES__SERPSTAT__" + BUDGET: ""}, "[sources.serpstat]\nmax_credits_per_run = 10\n",
     f"environment variable SOURCES__SERPSTAT__{BUDGET} is set but empty, which dlt takes as its value (and would "
     "override the files): unset it, or give it a value"),
    ({"SOURCES__" + BUDGET: " "}, None, f"environment variable SOURCES__{BUDGET} is set but empty"),
    ({}, "max_credit_per_run = 10\n",
     "unknown top-level setting 'max_credit_per_run' in .dlt/config.toml: did you mean 'max_credits_per_run'"),
    ({}, "[sources]\nmax_credit_per_run = 10\n",
     "unknown setting 'max_credit_per_run' under [sources] in .dlt/config.toml: did you mean 'max_credits_per_run'?"),
    ({}, "[source.serpstat]\nmax_credits_per_run = 10\n",
     "unknown section [source.serpstat] in .dlt/config.toml: dlt does not read it; did you mean [sources.serpstat]?"),
    ({}, "[sources.serpstats]\nmax_credits_per_run = 10\n",
     "unknown section [sources.serpstats] in .dlt/config.toml: dlt does not read it; did you mean "
     "[sources.serpstat]?"),
    # dlt's own [runtime] setting: misspelt, Slack alerts went nowhere without a word
    ({}, '[runtime]\nslack_incomming_hook = "https://hooks.slack.com/services/x"\n',
     "unknown setting 'slack_incomming_hook' under [runtime] in .dlt/config.toml: did you mean "
     "'slack_incoming_hook'? (dlt ignores it, so Slack alerts would go nowhere)"),
    ({"RUNTIME__SLACK_INCOMING_HOK": "https://hooks.slack.com/services/x"}, None,
     "unknown environment variable RUNTIME__SLACK_INCOMING_HOK: did you mean RUNTIME__SLACK_INCOMING_HOOK?"),
]


@pytest.mark.parametrize("variables, config_toml, message", NOT_READ,
                         ids=[next(iter(v), None) or t.strip().replace("\n", " ") for v, t, _ in NOT_READ])
def test_a_name_dlt_would_not_read_or_an_empty_variable_is_refused_before_anything_is_fetched(
        tmp_path, emulator, variables, config_toml, message):
    emulator.set_profile("budget.com", 1500)
    if config_toml is not None:
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "config.toml").write_text(config_toml)
    done = run_main(tmp_path, cli_env(tmp_path, emulator, "budget.com", **variables), "run", day=DAY)
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, done.stdout, len(lines)) == (2, "", 1), done.stdout + done.stderr
    assert lines[0].startswith(f"error: {message}"), lines[0]
    assert ref_requests(emulator) == [], "nothing fetched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ([".dlt"] if config_toml else []), "nothing written"


@pytest.mark.parametrize("variables", [
    {"SOURCES__" + BUDGET: "10"},  # names dlt reads for the source: they keep working
    {BUDGET: "10"},
    # other tools' and dlt's own names are left alone, even when they end like ours
    {"GITHUB_API_URL": "https://api.github.com", "DOMAIN": "example.org", "RUNTIME__LOG_LEVEL": "WARNING",
     "SOURCES__SQL_DATABASE__CREDENTIALS": "x", "SOURCES__SERPSTAT__" + BUDGET: "10"},
])
def test_the_names_dlt_reads_keep_the_budget_and_unrelated_names_pass(tmp_path, emulator, variables):
    emulator.set_profile("budget.com", 1500)
    done = run_main(tmp_path, cli_env(tmp_path, emulator, "budget.com", **variables), "run", "--kind", "full",
                    "--no-models", day=DAY)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "skipped_budget" in done.stdout and "budget.com" in done.stdout, done.stdout


def test_a_budget_at_the_top_level_of_config_toml_is_read_and_its_typo_in_the_environment_is_not(tmp_path,
                                                                                                  emulator):
    """dlt reads a source's setting at the top level of config.toml too (a fresh process: dlt reads
    the files of the folder it starts in once)."""
    emulator.set_profile("budget.com", 1500)
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text("max_credits_per_run = 10\n")
    done = run_cli(tmp_path, cli_env(tmp_path, emulator, "budget.com"), "run", "--kind", "full", "--no-models",
                   day=DAY)
    assert done.returncode == 1 and "skipped_budget" in done.stdout, done.stdout + done.stderr
