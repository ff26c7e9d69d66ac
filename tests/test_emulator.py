"""The emulator against docs/serpstat-api.md, over real HTTP with plain requests (no project client)."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
import requests

from serpstat_refdomains.emulator import EPOCH, Fault, LinkGraph, Profile, SerpstatEmulator, in_last_week
from tests.helpers import DAY, TOKEN

RD = "SerpstatBacklinksProcedure.getRefDomains"


def post(emu, params=None, method=RD, token=TOKEN, req_id=1, header_token=None, timeout=5):
    url = emu.url + (f"?token={token}" if token is not None else "")
    headers = {"token": header_token} if header_token else {}
    body = {"id": req_id, "method": method}
    if params is not None:
        body["params"] = params
    return requests.post(url, json=body, headers=headers, timeout=timeout)


def rd(emu, **params):
    params.setdefault("query", "example.com")
    params.setdefault("searchType", "domain_with_subdomains")
    return post(emu, params).json()


def test_envelope_summary_and_id_echoed_as_string(emulator):
    emulator.set_profile("example.com", 26)
    answer = rd(emulator, page=1, size=2, sort="domain_rank", order="desc")
    assert answer["id"] == "1"
    assert set(answer) == {"id", "result"}
    rows = answer["result"]["data"]
    assert len(rows) == 2 and all(set(r) == {"domain_from", "ref_pages", "domainRank"} for r in rows)
    assert all(isinstance(r["domainRank"], int) and isinstance(r["ref_pages"], int) for r in rows)
    assert rows[0]["domainRank"] >= rows[1]["domainRank"]
    summary = answer["result"]["summary_info"]
    assert summary == {"left_lines": 10_000_000 - 2, "page": 1, "count": 2, "total": 26,
                       "sort": "domain_rank", "order": "DESC"}


def test_token_from_query_or_header_and_auth_errors(emulator):
    params = {"query": "example.com", "searchType": "domain", "size": 1}
    assert "result" in post(emulator, params, token=None, header_token=TOKEN).json()
    assert post(emulator, params, token=None).json()["error"] == {"code": 400, "message": "Missing token!"}
    wrong = post(emulator, params, token="nope")
    assert wrong.status_code == 200
    assert wrong.json()["error"] == {"code": 403, "message": "Invalid token!"}
    assert [e.charge for e in emulator.log] == [1, 0, 0]


@pytest.mark.parametrize("params, code, message", [
    ({"page": 0}, 400, "Json schema validation error"),
    ({"size": 0}, 400, "Json schema validation error"),
    ({"size": 1001}, 400, "Json schema validation error"),
    ({"sort": "domain"}, 400, "Json schema validation error"),
    ({"order": "up"}, 400, "Json schema validation error"),
    ({"searchType": "url"}, 400, "Json schema validation error"),
    ({"query": ""}, 400, "Query required"),
    ({"complexFilter": [[{"field": "check", "compareType": "gt", "value": [1]}]]}, 32117,
     "Not allowed field: check"),
    ({"complexFilter": [[{"field": "domain_rank", "compareType": "contains", "value": [1]}]]}, 32117,
     "Not allowed method contains for field domain_rank"),
    ({"complexFilter": [[{"field": "domain_rank", "compareType": "between", "value": [1]}]]}, 32117,
     "Not allowed values for between method"),
    ({"complexFilter": [[{"field": "domain_rank", "value": [1]}]]}, 32117, "Field compareType is required"),
    ({"complexFilter": [[{"field": "domain_rank", "compareType": "gt"}]]}, 32117, "Field value is required"),
    ({"complexFilter": [[{"additional_filters": "last_month"}]]}, 32117, "Not allowed params for filter"),
    ({"complexFilter": {"field": "domain_rank"}}, 32117, "Not allowed params for filter"),
])
def test_parameter_validation(emulator, params, code, message):
    answer = rd(emulator, **params)
    assert answer["error"] == {"code": code, "message": message}
    assert emulator.log[-1].charge == 0


def test_complex_filter_is_or_of_and_groups(emulator):
    emulator.set_profile("example.com", 300)
    truth = emulator.graph.active("example.com", DAY)
    groups = [
        [{"field": "domain_rank", "compareType": "between", "value": [10, 30]},
         {"field": "domain_links", "compareType": "gte", "value": [3]}],
        [{"field": "domain_from", "compareType": "endsWith", "value": [".org"]}],
    ]
    answer = rd(emulator, size=1000, complexFilter=groups)
    got = {r["domain_from"] for r in answer["result"]["data"]}
    expected = {d.name for d in truth
                if (10 <= d.rank <= 30 and d.ref_pages >= 3) or d.name.lower().endswith(".org")}
    assert got == expected and 0 < len(got) < 300


@pytest.mark.parametrize("cond, predicate", [
    ({"field": "domain_rank", "compareType": "gt", "value": [50]}, lambda d: d.rank > 50),
    ({"field": "domain_rank", "compareType": "lt", "value": [5]}, lambda d: d.rank < 5),
    ({"field": "domain_rank", "compareType": "lte", "value": [5]}, lambda d: d.rank <= 5),
    ({"field": "domain_rank", "compareType": "eq", "value": [0, 1]}, lambda d: d.rank in (0, 1)),
    ({"field": "domain_rank", "compareType": "neq", "value": [0]}, lambda d: d.rank != 0),
    ({"field": "domain_from", "compareType": "contains", "value": ["blog"]}, lambda d: "blog" in d.name.lower()),
    ({"field": "domain_from", "compareType": "notContains", "value": ["blog"]},
     lambda d: "blog" not in d.name.lower()),
    ({"field": "domain_from", "compareType": "startsWith", "value": ["www."]},
     lambda d: d.name.lower().startswith("www.")),
    ({"additional_filters": "only_hosts"}, lambda d: d.name.count(".") <= 1),
])
def test_every_compare_type(emulator, cond, predicate):
    emulator.set_profile("example.com", 400)
    answer = rd(emulator, size=1000, complexFilter=[[cond]])
    got = {r["domain_from"] for r in answer.get("result", {}).get("data", [])}
    assert got == {d.name for d in emulator.graph.active("example.com", DAY) if predicate(d)}


def test_last_week_is_first_detected_in_the_last_seven_days(emulator):
    answer = rd(emulator, size=1000, complexFilter=[[{"additional_filters": "last_week"}]])
    got = {r["domain_from"] for r in answer["result"]["data"]}
    truth = emulator.graph.truth("example.com", DAY, last_week=True)
    assert got == truth and truth
    for donor in emulator.graph.active("example.com", DAY):
        assert (donor.name in got) == (DAY - dt.timedelta(days=7) <= donor.first_detected(DAY) <= DAY)


def test_sorting_and_paging_partition_the_result(emulator):
    emulator.set_profile("example.com", 250)
    seen = []
    for page in (1, 2, 3):
        answer = rd(emulator, size=100, page=page, sort="domain_from", order="asc")
        seen += [r["domain_from"] for r in answer["result"]["data"]]
    assert seen == sorted(emulator.graph.truth("example.com", DAY))
    assert [e.charge for e in emulator.log] == [100, 100, 50]


def test_credits_left_lines_and_exhaustion(emulator):
    emulator.set_profile("example.com", 30)
    emulator.api.set_balance(45)
    first = rd(emulator, size=20)
    assert first["result"]["summary_info"]["left_lines"] == 25
    stats = post(emulator, method="SerpstatLimitsProcedure.getStats").json()["result"]
    assert stats["data"]["left_lines"] == 25 and stats["summary_info"]["left_lines"] == 25
    assert rd(emulator, size=20, page=2)["result"]["summary_info"]["left_lines"] == 15
    assert rd(emulator, size=20)["error"] == {"code": 32012, "message": "Credits exceeded"}
    assert [e.charge for e in emulator.log] == [20, 0, 10, 0]


def test_empty_result_error_or_empty_data_costs_one_credit(emulator):
    emulator.set_profile("nothing.com", 0)
    assert rd(emulator, query="nothing.com")["error"] == {"code": 404, "message": "Empty result!"}
    emulator.api.empty_as_error = False
    answer = rd(emulator, query="nothing.com")
    assert answer["result"]["data"] == [] and answer["result"]["summary_info"]["total"] == 0
    assert [e.charge for e in emulator.log] == [1, 1]


def test_depth_cap(emulator):
    emulator.api.depth_cap = 200
    emulator.set_profile("big.com", 500)
    assert "result" in rd(emulator, query="big.com", size=100, page=2)
    assert rd(emulator, query="big.com", size=100, page=3)["error"] == {
        "code": 402, "message": "To get more than 200 results use export report methods"}


def test_rate_limit_in_body_and_http_mode(emulator):
    emulator.api.set_rate_limit(1)
    assert "result" in rd(emulator, size=1)
    assert rd(emulator, size=1)["error"] == {"code": 429, "message": "Query frequency exceeded"}
    emulator.api.http_429_mode = True
    throttled = post(emulator, {"query": "example.com", "size": 1})
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert [e.charge for e in emulator.log] == [1, 0, 0]


def test_numbers_as_strings_and_extra_fields(emulator):
    emulator.api.numbers_as_strings = True
    emulator.api.extra_fields = True
    row = rd(emulator, size=1)["result"]["data"][0]
    assert isinstance(row["ref_pages"], str) and isinstance(row["domainRank"], str)
    assert {"domain_links", "check"} <= set(row)


def test_scripted_faults_fire_for_their_page_and_count(emulator):
    emulator.faults.add(Fault("http_error", query="example.com", page=2, times=2, status=503),
                        Fault("malformed", page=3), Fault("rate_limit", page=4),
                        Fault("string_numbers", page=5))
    assert "result" in rd(emulator, page=1, size=10)
    assert post(emulator, {"query": "example.com", "page": 2, "size": 10}).status_code == 503
    assert post(emulator, {"query": "example.com", "page": 2, "size": 10}).status_code == 503
    assert "result" in rd(emulator, page=2, size=10)
    with pytest.raises(requests.JSONDecodeError):
        post(emulator, {"query": "example.com", "page": 3, "size": 10}).json()
    assert rd(emulator, page=4, size=10)["error"]["code"] == 429
    assert isinstance(rd(emulator, page=5, size=10)["result"]["data"][0]["domainRank"], str)
    assert [e.outcome for e in emulator.log] == [
        "ok", "fault:http_error", "fault:http_error", "ok", "fault:malformed", "error:429", "ok"]
    assert [e.charge for e in emulator.log] == [10, 0, 0, 10, 0, 0, 10]


def test_rewrite_rows_sends_what_the_function_makes_of_each_row_for_its_requests_only(emulator):
    emulator.set_profile("example.com", 4)
    plain = rd(emulator, size=4)["result"]["data"]  # rendered and cached before the fault
    seen = []

    def hostile(donor, row):
        seen.append((donor.name, row["domain_from"]))
        if donor.name == plain[0]["domain_from"]:
            return "not an object"
        row.pop("ref_pages")
        row["domain_from"] = 12345 if donor.name == plain[1]["domain_from"] else row["domain_from"]
        return row

    emulator.faults.add(Fault("rewrite_rows", query="example.com", rewrite=hostile, times=1))
    answer = rd(emulator, size=4)["result"]
    assert seen == [(r["domain_from"], r["domain_from"]) for r in plain]  # each row with its own donor
    assert answer["data"] == ["not an object", {"domain_from": 12345, "domainRank": plain[1]["domainRank"]},
                              *({"domain_from": r["domain_from"], "domainRank": r["domainRank"]} for r in plain[2:])]
    assert answer["summary_info"]["count"] == 4 and emulator.log[-1].charge == 4
    assert rd(emulator, size=4)["result"]["data"] == plain  # the cached page is the index's, untouched
    with pytest.raises(ValueError, match="rewrite"):
        Fault("rewrite_rows")
    with pytest.raises(ValueError, match="rewrite"):
        Fault("empty", rewrite=hostile)


def test_dropped_connection_and_delay(emulator):
    emulator.faults.add(Fault("drop", page=1), Fault("delay", page=2, seconds=0.6))
    with pytest.raises(requests.ConnectionError):
        post(emulator, {"query": "example.com", "page": 1, "size": 1})
    with pytest.raises(requests.Timeout):
        post(emulator, {"query": "example.com", "page": 2, "size": 1}, timeout=0.2)


def test_inserted_rows_move_the_total(emulator):
    emulator.set_profile("example.com", 100)
    emulator.faults.add(Fault("insert_rows", query="example.com", page=2, count=3))
    assert rd(emulator, size=50)["result"]["summary_info"]["total"] == 100
    assert rd(emulator, size=50, page=2)["result"]["summary_info"]["total"] == 103
    assert len(emulator.graph.truth("example.com", DAY)) == 103


def test_get_stats_is_free_and_unknown_method_refused(emulator):
    stats = post(emulator, method="SerpstatLimitsProcedure.getStats").json()
    assert stats["result"]["data"]["left_lines"] == 10_000_000
    assert post(emulator, method="SerpstatFooProcedure.bar").json()["error"]["code"] == 403
    assert emulator.api.credits_charged == 0


def test_graph_is_deterministic_and_evolves():
    a, b = LinkGraph(seed=3), LinkGraph(seed=3)
    day = EPOCH + dt.timedelta(days=60)
    assert a.truth("site.com", day) == b.truth("site.com", day)
    assert a.truth("site.com", day) != LinkGraph(seed=4).truth("site.com", day)
    weeks = [a.truth("site.com", day + dt.timedelta(weeks=w)) for w in range(8)]
    gained = set().union(*(weeks[i + 1] - weeks[i] for i in range(7)))
    lost = set().union(*(weeks[i] - weeks[i + 1] for i in range(7)))
    assert gained and lost
    donors = a.donors("site.com")
    assert any(d.returned for d in donors)
    names = [d.name for d in a.active("site.com", day)]
    assert any(n.startswith("www.") for n in names)
    assert any(n != n.lower() for n in names)
    assert any(not n.isascii() for n in names)
    # searchType=domain is the subset that links to the bare host
    assert a.truth("site.com", day, "domain") < a.truth("site.com", day)
    recent = a.truth("site.com", day, last_week=True)
    assert recent and all(in_last_week(d, day) for d in a.active("site.com", day) if d.name in recent)


def test_a_days_truth_does_not_depend_on_which_days_were_asked_before():
    """A churning universe is generated only as far as the days asked for: the truth of a day is
    the same whether later days were asked first or not, also after run-time changes, among them
    a change to an added donor whose name a donor born later has too (a change is kept by name)."""
    day = EPOCH + dt.timedelta(days=10)

    def truth_of_day(ask_later_first: bool) -> list[tuple]:
        graph = LinkGraph(seed=0)
        graph.set_profile("t.com", Profile(base_size=50))
        if ask_later_first:
            graph.active("t.com", day + dt.timedelta(days=400))
        universe = LinkGraph(seed=0)
        universe.set_profile("t.com", Profile(base_size=50))
        future = next(d for d in universe.donors("t.com") if d.born > day + dt.timedelta(days=30))
        (named,) = graph.add_named("t.com", [future.name], day - dt.timedelta(days=5))
        graph.change_metrics("t.com", named, 7, 3)
        graph.insert_donors("t.com", 2, day)
        return sorted((d.name, d.born, d.rank) for d in graph.active("t.com", day))

    asked_first = truth_of_day(ask_later_first=False)
    assert asked_first == truth_of_day(ask_later_first=True)
    assert len(asked_first) > 10


def test_fixed_profile_size_and_wrong_path():
    with SerpstatEmulator(token=TOKEN, today=DAY) as emu:
        emu.set_profile("fixed.com", 999)
        assert len(emu.graph.truth("fixed.com", DAY + dt.timedelta(days=30))) == 999
        assert requests.post(emu.url.replace("/v4", "/v3"), json={}, timeout=5).status_code == 404
        with socket.create_connection(("127.0.0.1", emu.port), timeout=5):
            pass
