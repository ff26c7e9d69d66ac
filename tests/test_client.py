"""SerpstatClient over real HTTP against the emulator: retries, typed errors, credits, secrecy."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback

import pytest

from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.emulator import Fault
from serpstat_refdomains.errors import (
    AuthenticationError,
    CreditsExhaustedError,
    DepthCapError,
    EndpointError,
    InvalidRequestError,
    RateLimitError,
    SerpstatError,
    TransientError,
)
from tests.helpers import TOKEN, fast_client


def test_page_rows_total_credits_and_left_lines(emulator, client):
    emulator.set_profile("example.com", 26)
    page = client.get_ref_domains("example.com", size=10, page=3)
    assert page.count == 6 and page.total == 26 and page.charge == 6
    assert page.left_lines == 10_000_000 - 6
    assert client.credits_spent == 6 and client.last_left_lines == 10_000_000 - 6
    entry = emulator.log[-1]
    assert (entry.query, entry.page, entry.size, entry.sort, entry.order) == (
        "example.com", 3, 10, "domain_from", "asc")


def test_get_stats_is_free(emulator, client):
    stats = client.get_stats()
    assert stats.left_lines == 10_000_000 and stats.max_lines == 10_000_000 and stats.used_lines == 0
    assert emulator.api.credits_charged == 0


@pytest.mark.parametrize("empty_as_error", [True, False])
def test_empty_result_is_an_empty_page_costing_one_credit(emulator, client, empty_as_error):
    emulator.api.empty_as_error = empty_as_error
    emulator.set_profile("nothing.com", 0)
    page = client.get_ref_domains("nothing.com")
    assert page.rows == [] and page.total == 0 and page.charge == 1
    assert client.credits_spent == 1 and emulator.api.credits_charged == 1
    assert len(emulator.log) == 1


@pytest.mark.parametrize("kind, options", [
    ("http_error", {"status": 500, "times": 2}),
    ("http_error", {"status": 503, "times": 2}),
    ("drop", {"times": 2}),
    ("malformed", {"times": 2}),
    ("rate_limit", {"times": 2}),
    ("http_429", {"times": 1, "retry_after": 0}),
    ("delay", {"seconds": 1.0, "times": 1}),
])
def test_transient_faults_are_retried_and_charged_once(emulator, kind, options):
    emulator.set_profile("example.com", 50)
    emulator.faults.add(Fault(kind, **options))
    with fast_client(emulator, timeout=0.5) as client:
        page = client.get_ref_domains("example.com", size=50)
    assert page.count == 50 and page.total == 50
    assert client.retries == options["times"]
    ok = [e for e in emulator.log if e.outcome == "ok"]
    assert client.credits_spent == 50
    # a delayed answer is still processed (and billed) server side, as a real API would
    assert emulator.api.credits_charged == 50 * len(ok)


def test_retry_after_header_is_honoured(emulator):
    emulator.faults.add(Fault("http_429", retry_after=1))
    slept = []
    with fast_client(emulator, sleep=slept.append) as client:
        client.get_ref_domains("example.com", size=1)
    assert slept and slept[0] >= 1.0


def test_retries_are_bounded(emulator):
    emulator.faults.add(Fault("http_error", status=502, times=-1))
    with fast_client(emulator, max_attempts=4) as client:
        with pytest.raises(TransientError, match="still failing after 4 attempts"):
            client.get_ref_domains("example.com")
    assert len(emulator.log) == 4 and emulator.api.credits_charged == 0


def test_rate_limit_exhaustion_is_a_rate_limit_error(emulator):
    emulator.faults.add(Fault("rate_limit", times=-1))
    with fast_client(emulator, max_attempts=3) as client:
        with pytest.raises(RateLimitError):
            client.get_ref_domains("example.com")


def test_auth_error_stops_at_once():
    from serpstat_refdomains.emulator import SerpstatEmulator
    with SerpstatEmulator(token="another") as emu, fast_client(emu) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.get_ref_domains("example.com")
        assert len(emu.log) == 1
    message = str(caught.value)
    assert "Invalid token!" in message and "SOURCES__SERPSTAT__API_TOKEN" in message
    assert "\n" not in message and caught.value.code == 403


def test_missing_token_is_refused_before_any_request():
    with pytest.raises(AuthenticationError, match="token is missing"):
        SerpstatClient("", api_url="http://127.0.0.1:9/v4")


def test_credits_exhausted_stops_at_once(emulator, client):
    emulator.api.set_balance(5)
    with pytest.raises(CreditsExhaustedError, match=r"credits are exhausted.*32012"):
        client.get_ref_domains("example.com", size=100)
    assert len(emulator.log) == 1


def test_depth_cap_error(emulator, client):
    emulator.api.depth_cap = 100
    emulator.set_profile("big.com", 300)
    with pytest.raises(DepthCapError, match="depth cap"):
        client.get_ref_domains("big.com", size=100, page=2)
    assert len(emulator.log) == 1


def test_invalid_filter_is_an_invalid_request(emulator, client):
    bad = [[{"field": "check", "compareType": "gt", "value": [1]}]]
    with pytest.raises(InvalidRequestError, match="Not allowed field: check"):
        client.get_ref_domains("example.com", complex_filter=bad)
    assert len(emulator.log) == 1


def test_error_body_is_never_read_as_an_empty_page(emulator, client):
    emulator.api.set_balance(0)
    with pytest.raises(CreditsExhaustedError):
        client.get_ref_domains("example.com")
    assert client.credits_spent == 0


def test_string_numbers_pass_through_for_the_source_to_coerce(emulator, client):
    emulator.api.numbers_as_strings = True
    page = client.get_ref_domains("example.com", size=3)
    assert all(isinstance(r["domainRank"], str) for r in page.rows)


def test_rate_limiter_is_shared_across_threads(emulator):
    emulator.set_profile("example.com", 10)
    with fast_client(emulator, requests_per_second=20) as client:
        threads = [threading.Thread(target=lambda: [client.get_ref_domains("example.com", size=1)
                                                    for _ in range(3)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    stamps = sorted(e.at for e in emulator.log)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(stamps) == 12
    # 12 calls at 20/s from 4 threads: spread over at least 11 intervals of 50 ms
    assert stamps[-1] - stamps[0] >= 11 * 0.05 * 0.9
    assert min(gaps) >= 0.02


def test_emulator_rate_limit_is_respected_by_the_client(emulator):
    emulator.api.set_rate_limit(10)
    with fast_client(emulator, requests_per_second=10) as client:
        for page in range(1, 8):
            client.get_ref_domains("example.com", size=1, page=page)
    assert [e.outcome for e in emulator.log].count("error:429") == 0


def test_a_rate_limit_answer_slows_the_pace_a_little_and_never_below_the_floor(emulator):
    """At 1 request/s against a server allowing no burst, requests leaving exactly a second apart
    arrived a few ms early and a third of them were refused, each costing a retry wait: 37 s for
    a 24-request pull. A refusal now stretches the interval by 3%, at most to 125%."""
    emulator.set_profile("example.com", 10)
    emulator.faults.add(Fault("http_429", times=1, retry_after=0))
    with fast_client(emulator, requests_per_second=20) as client:
        client.get_ref_domains("example.com", size=1)
        assert client.limiter.interval == pytest.approx(0.05 * 1.03)
        client.get_ref_domains("example.com", size=1)  # no refusal: the pace holds
        assert client.limiter.interval == pytest.approx(0.05 * 1.03)
        for _ in range(20):
            client.limiter.slow_down()
        assert client.limiter.interval == pytest.approx(0.05 * 1.25)
    with fast_client(emulator, requests_per_second=None) as unpaced:
        unpaced.limiter.slow_down()
        assert unpaced.limiter.interval == 0.0


def test_token_never_leaks_into_logs_exceptions_or_reprs(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    emulator.faults.add(Fault("drop", times=2), Fault("http_error", status=502, times=1),
                        Fault("malformed", times=1), Fault("delay", seconds=1.0, times=1))
    texts = []
    with fast_client(emulator, timeout=0.3, max_attempts=3) as client:
        texts.append(repr(client))
        for _ in range(3):
            try:
                client.get_ref_domains("example.com", size=5)
            except TransientError as error:
                texts.append(str(error))
                texts.append("".join(traceback.format_exception(error)))
        emulator.faults.add(Fault("http_error", status=500, times=-1))
        with pytest.raises(TransientError) as caught:
            client.get_ref_domains("example.com")
        texts.append("".join(traceback.format_exception(caught.value)))
    with SerpstatClient(TOKEN, api_url="http://127.0.0.1:9/v4", requests_per_second=None,
                        max_attempts=2, backoff_initial=0.01, backoff_max=0.01) as dead:
        with pytest.raises(TransientError) as unreachable:
            dead.get_ref_domains("example.com")
        texts.append("".join(traceback.format_exception(unreachable.value)))
    records = [r.getMessage() for r in caplog.records]
    assert any("token=***" in m for m in records), "urllib3 DEBUG lines were not captured"
    assert len(texts) >= 4
    for text in texts + records + [caplog.text]:
        assert TOKEN not in text


def test_requests_per_second_spacing_holds_for_sequential_calls(emulator):
    with fast_client(emulator, requests_per_second=10) as client:
        start = time.monotonic()
        for _ in range(5):
            client.get_stats()
    assert time.monotonic() - start >= 0.4 * 0.95


# --- answers the client must read right (issue: codes, messages, shapes) -------------------------

PER_SECOND = "You have sent more requests per second than available"


@pytest.mark.parametrize("code", [32000, "32000", -32000])
def test_code_32000_per_second_limit_is_retried_as_a_rate_limit(emulator, code):
    emulator.set_profile("example.com", 5)
    emulator.faults.add(Fault("api_error", code=code, message=PER_SECOND, times=2))
    with fast_client(emulator) as client:
        page = client.get_ref_domains("example.com", size=5)
    assert page.count == 5 and client.retries == 2 and client.credits_spent == 5


def test_code_32000_that_never_clears_fails_as_a_rate_limit(emulator):
    emulator.faults.add(Fault("api_error", code=32000, message="", times=-1))
    with fast_client(emulator, max_attempts=3) as client:
        with pytest.raises(RateLimitError, match="still failing after 3 attempts"):
            client.get_ref_domains("example.com")
    assert len(emulator.log) == 3


@pytest.mark.parametrize("error", [
    {"code": 32018, "message": "To get more than 60000 results use export report methods"},
    {"code": "402", "message": "To get more than 60000 results use export report methods"},
    {"code": 500, "message": "To get more than 60000 results use export report methods"},
    {"message": "To get more than 1000 results use export report methods"},
])
def test_depth_cap_message_under_any_code_is_a_depth_cap(emulator, client, error):
    emulator.faults.add(Fault("api_error", error_body=error))
    with pytest.raises(DepthCapError, match="depth cap"):
        client.get_ref_domains("example.com", page=61)
    assert len(emulator.log) == 1  # not retried, not read as an invalid request


def test_wrong_api_query_404_is_an_error_naming_api_url_not_an_empty_result(emulator, client):
    emulator.faults.add(Fault("wrong_api_query"))
    with pytest.raises(EndpointError) as caught:
        client.get_ref_domains("example.com")
    message = str(caught.value)
    assert "Wrong API query" in message and f"api_url {emulator.url}" in message
    assert "https://api.serpstat.com/v4" in message and "\n" not in message
    assert client.credits_spent == 0 and len(emulator.log) == 1


@pytest.mark.parametrize("error", [{"code": 404, "message": ""}, {"code": 404}, {"code": "404", "message": None}])
def test_404_that_does_not_say_empty_is_not_an_empty_result(emulator, client, error):
    emulator.faults.add(Fault("api_error", error_body=error))
    with pytest.raises(EndpointError, match="api_url"):
        client.get_ref_domains("example.com")
    assert client.credits_spent == 0


@pytest.mark.parametrize("error", [
    {"code": 404, "message": "Empty result!"},
    {"code": 32015, "message": "No data found for requested domain"},
    {"code": "32017", "message": "Data not found"},
    {"code": -32017, "message": "Data not found"},
    {"code": 32015},
    "Empty result!",
])
def test_documented_empty_answers_are_empty_pages(emulator, client, error):
    emulator.faults.add(Fault("api_error", error_body=error))
    page = client.get_ref_domains("example.com")
    assert page.rows == [] and page.total == 0 and page.charge == 1 and client.credits_spent == 1


@pytest.mark.parametrize("path", ["", "/v3", "/v4/getRefDomains"])
def test_http_404_from_a_wrong_path_is_a_clear_error_naming_api_url(emulator, path):
    base = emulator.url.rsplit("/v4", 1)[0]
    url = base.replace("://", "://loader:proxy-pass@") + path + "?token=pasted"
    with SerpstatClient(TOKEN, api_url=url, requests_per_second=None, backoff_initial=0.01) as client:
        with pytest.raises(EndpointError) as caught:
            client.get_ref_domains("example.com")
    message = str(caught.value)
    assert message.startswith("HTTP 404 from api_url") and "https://api.serpstat.com/v4" in message
    assert f"{base}{path}" in message and "proxy-pass" not in message and "pasted" not in message
    assert client.requests_made == 1  # not retried: a wrong address stays wrong


@pytest.mark.parametrize("error, expected", [
    ("Invalid token!", AuthenticationError),                          # a bare message
    ({"code": "32012", "message": "Credits exceeded"}, CreditsExhaustedError),  # a code as text
    ({"code": -32012, "message": "Credits exceeded"}, CreditsExhaustedError),   # JSON-RPC style
    ({"code": "32117", "message": "Not allowed field: check"}, InvalidRequestError),
    ({"code": True, "message": "odd"}, SerpstatError),                # a bool is no code
    ({}, SerpstatError),                                              # an empty error object
    ({"code": 32999, "message": {"detail": ["nested"]}}, SerpstatError),
])
def test_error_shapes_are_classified_and_never_read_as_data(emulator, client, error, expected):
    emulator.faults.add(Fault("api_error", error_body=error))
    with pytest.raises(expected) as caught:
        client.get_ref_domains("example.com")
    assert type(caught.value) is expected
    assert client.credits_spent == 0 and len(emulator.log) == 1


def test_bare_429_code_as_the_error_is_a_rate_limit(emulator, client):
    emulator.set_profile("example.com", 3)
    emulator.faults.add(Fault("api_error", error_body=429))
    page = client.get_ref_domains("example.com", size=3)
    assert page.count == 3 and client.retries == 1


def test_error_beside_a_result_is_an_error_not_data(emulator):
    emulator.set_profile("example.com", 4)
    emulator.faults.add(Fault("error_with_result", code=500, message="Server error"),
                        Fault("error_with_result", code=32012, message="Credits exceeded", page=2))
    with fast_client(emulator) as client:
        page = client.get_ref_domains("example.com", size=4)  # the first answer is retried, not read
        assert page.count == 4 and client.retries == 1
        with pytest.raises(CreditsExhaustedError):
            client.get_ref_domains("example.com", size=2, page=2)

