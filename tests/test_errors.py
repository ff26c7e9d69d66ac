"""One error tree: what each error is, how a run reads it, and the exit code the CLI gives it."""

from __future__ import annotations

import fcntl

import dlt
import pytest
from dlt.common.exceptions import DltException

from serpstat_refdomains import errors
from serpstat_refdomains.cli import main
from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.config import build_settings
from serpstat_refdomains.constants import PIPELINE_NAME
from serpstat_refdomains.errors import (
    AuthenticationError,
    BudgetExhausted,
    ConcurrentRunError,
    ConfigError,
    CreditsExhaustedError,
    EndpointError,
    InvalidRequestError,
    RefdomainsError,
    UsageError,
    first_line,
    unwrap,
)
from serpstat_refdomains.pipeline import RunOptions
from serpstat_refdomains.results import classify
from serpstat_refdomains.warehouse import destination_type, make_pipeline
from tests.helpers import DAY, TOKEN, noon, on, ref_requests, run_pipeline


def test_every_error_of_the_package_has_one_root():
    classes = [value for value in vars(errors).values()
               if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == errors.__name__]
    assert len(classes) >= 16
    assert all(issubclass(cls, RefdomainsError) for cls in classes)
    # a usage error is not a configuration error, nor the other way round; both stay ValueErrors
    assert not issubclass(UsageError, ConfigError) and not issubclass(ConfigError, UsageError)
    assert issubclass(UsageError, ValueError) and issubclass(ConfigError, ValueError)
    assert not issubclass(ConcurrentRunError, ConfigError)  # exit 2 too, but not a configuration mistake


@pytest.mark.parametrize("error, outcome", [
    (BudgetExhausted("credit budget of 5 reached"),
     ("skipped_budget", "credit budget of 5 reached: raise max_credits_per_run or run again later", None)),
    (CreditsExhaustedError("Serpstat API credits are exhausted (32012)"),
     ("skipped_budget", "Serpstat API credits are exhausted (32012)", "Serpstat credits are exhausted")),
    (AuthenticationError("Serpstat rejected the request (403)"),
     ("failed", "Serpstat rejected the request (403)", "Serpstat refused the token")),
    (EndpointError("HTTP 404 from api_url"),
     ("failed", "HTTP 404 from api_url", "api_url does not lead to Serpstat's API")),
    (InvalidRequestError("Serpstat refused the parameters"), ("failed", "Serpstat refused the parameters", None)),
    (DltException("the load failed\ndetails on the next line"), ("failed", "loading failed: the load failed", None)),
    (OSError("No space left on device"), ("failed", "loading failed: No space left on device", None)),
    (KeyError("snapshot"), ("failed", "KeyError: 'snapshot'", None)),
])
def test_classify_gives_each_error_its_status_message_and_whether_the_run_stops(error, outcome):
    assert classify(error) == outcome


def test_messages_read_from_other_errors_never_hold_the_token(emulator):
    with SerpstatClient(TOKEN, api_url=emulator.url):  # registers the token as a secret
        status, message, fatal = classify(RuntimeError(f"GET /v4?token={TOKEN} failed\ntraceback"))
    assert (status, message, fatal) == ("failed", "RuntimeError: GET /v4?token=*** failed", None)
    assert first_line(ValueError("")) == "ValueError"


def test_unwrap_finds_our_error_inside_dlt_wrappers(tmp_path):
    @dlt.resource(name="budgeted")
    def budgeted():
        yield {"a": 1}
        raise BudgetExhausted("credit budget of 1 reached")

    run = dlt.pipeline("budgeted", destination=dlt.destinations.duckdb(str(tmp_path / "b.duckdb")),
                       pipelines_dir=str(tmp_path / "pipelines"))
    with pytest.raises(Exception) as raised:
        run.run(budgeted())
    assert not isinstance(raised.value, RefdomainsError)  # dlt wrapped it
    cause = unwrap(raised.value)
    assert isinstance(cause, BudgetExhausted) and str(cause) == "credit budget of 1 reached"


def test_an_unknown_kind_is_a_usage_error_and_fetches_nothing(tmp_path, emulator):
    with pytest.raises(UsageError, match="--kind 'weekly' is unknown: use one of auto, full, last_week"):
        run_pipeline(tmp_path, emulator, ["example.com"], kind="weekly")
    with pytest.raises(UsageError):
        RunOptions(snapshot_date=DAY, kind="monthly")
    assert emulator.log == [] and not (tmp_path / "refdomains.duckdb").exists()


def test_run_takes_its_options_as_one_object(tmp_path, emulator):
    from serpstat_refdomains import pipeline

    emulator.set_profile("options.com", 40)
    options = RunOptions(snapshot_date=DAY, now=noon(DAY), kind="full", build_models=False,
                         progress=lambda fetcher: None,
                         destination=dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb")),
                         pipelines_dir=str(tmp_path / "pipelines"))
    settings = build_settings(domains=["options.com"], api_url=emulator.url, requests_per_second=1000)
    report = pipeline.run(settings, TOKEN, options)
    assert [(r.kind, r.status, r.rows) for r in report.results] == [("full", "complete", 40)]
    # keywords override the object's fields: a last_week pull of the same day
    report = pipeline.run(settings, TOKEN, options, kind="last_week")
    assert [r.kind for r in report.results] == ["last_week"]


def test_destination_type_names_the_kind_of_destination(tmp_path):
    duck = make_pipeline(dlt.destinations.duckdb(str(tmp_path / "d.duckdb")), None, str(tmp_path / "p"))
    assert destination_type(duck) == "duckdb"


def test_a_run_while_another_holds_the_dataset_exits_2_and_fetches_nothing(tmp_path, emulator, monkeypatch,
                                                                             capsys):
    monkeypatch.chdir(tmp_path)
    for key, value in {"DLT_DATA_DIR": str(tmp_path / "dlt"), "SOURCES__SERPSTAT__API_TOKEN": TOKEN,
                       "SOURCES__SERPSTAT__API_URL": emulator.url, "SOURCES__SERPSTAT__DOMAINS": '["held.com"]',
                       "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "1000"}.items():
        monkeypatch.setenv(key, value)
    with open(tmp_path / f"{PIPELINE_NAME}.duckdb.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a run in progress holds
        with on(DAY):
            code = main(["run", "--kind", "full", "--no-models"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: another refdomains run is loading into dataset 'serpstat': nothing was "
                               "fetched; run again once it has finished")
    assert ref_requests(emulator) == []


def test_dlt_notes_of_what_the_run_settles_stay_out_of_a_default_runs_stderr():
    """Under terminated sessions a run that recovered printed dlt's `Transient exception in job
    ...` and `will now load the pending load packages` lines beside its own one-line ending."""
    import logging

    from serpstat_refdomains.cli import _OneLineErrors

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("dlt", logging.ERROR, __file__, 1, message, None, None)

    ours = logging.getLogger("serpstat_refdomains")
    level = ours.level
    only_one_line = _OneLineErrors()
    try:
        ours.setLevel(logging.WARNING)
        assert not only_one_line.filter(record("Transient exception in job snapshots.1.insert_values in file x"))
        assert not only_one_line.filter(record("The pipeline run method will now load the pending load packages."))
        assert only_one_line.filter(record("Job for snapshots failed terminally"))  # not ours to settle
        ours.setLevel(logging.INFO)
        assert only_one_line.filter(record("Transient exception in job snapshots.1.insert_values in file x"))
    finally:
        ours.setLevel(level)
