"""Change alerts (docs/reporting.md, "Alerts") delivered to a local HTTP receiver on 127.0.0.1 that records
what arrives, in Slack's format (dlt's `send_slack_message`) and the generic JSON webhook's.

Exactly once is checked at the receiver: the webhook's `event_ids` over every message, and Slack's
message count, against the events computed here from the models' tables."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from serpstat_refdomains import alerts
from serpstat_refdomains.emulator import Profile, SerpstatEmulator
from tests.helpers import TODAY, TOKEN, cli_env, needs_postgres, pg_rows, postgres, query, run_cli, run_pipeline

START = dt.date(2026, 2, 2)  # a Monday
TARGET, RIVAL = "alert-shop.com", "alert-rival.com"
DOMAINS = [{"query": TARGET, "competitors": [RIVAL]}]
SLACK_PATH = "/services/T0ALERT/B0ALERT/slack-SECRET-91c2"
WEBHOOK_PATH = "/hooks/webhook-SECRET-5d1e?key=abc"
FAST = alerts.Retry(attempts=3, initial=0.01, maximum=0.05, timeout=5)


class Receiver:
    """Records every POST (path, headers, body) and answers with the scripted statuses, per path
    prefix, in turn; 200 once a script runs out. `hang` makes it never answer a path."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.script: dict[str, list[int]] = {}
        self.always: dict[str, int] = {}
        self.hang: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                prefix = "/services" if self.path.startswith("/services") else "/hooks"
                with receiver._lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                              "body": json.loads(body or b"null")})
                    queue = receiver.script.get(prefix, [])
                    status = queue.pop(0) if queue else receiver.always.get(prefix, 200)
                if prefix in receiver.hang:
                    time.sleep(3)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def slack_url(self) -> str:
        return self.base + SLACK_PATH

    @property
    def webhook_url(self) -> str:
        return self.base + WEBHOOK_PATH

    def received(self, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def alert_settings(receiver: Receiver, **extra) -> dict:
    return {"slack_incoming_hook": receiver.slack_url, "alert_webhook_url": receiver.webhook_url, **extra}


def expected_events(workdir: Path | None, min_rank: int = 0, pg_dataset: str | None = None) -> set[tuple]:
    """docs/reporting.md's alert events, straight from the models (DuckDB in `workdir`, or a PostgreSQL
    dataset): confirmed losses and new or returning domains of the tracked domain with rank >=
    min_rank, and gap openings still open."""
    def rows(sql: str, params: list) -> set[tuple]:
        if pg_dataset:
            return set(pg_rows(pg_dataset, sql.replace("serpstat.", "{ds}.").replace("?", "%s"), tuple(params)))
        return set(query(workdir, sql, params))

    events = rows("SELECT target_domain, 'lost', ref_domain, lost_on FROM serpstat.lost_ref_domains "
                  "WHERE confirmed AND coalesce(domain_rank, 0) >= ? AND target_domain = ?", [min_rank, TARGET])
    events |= rows("SELECT target_domain, CASE WHEN is_returning THEN 'returned' ELSE 'new' END, ref_domain, "
                   "detected_on FROM serpstat.new_ref_domains WHERE coalesce(domain_rank, 0) >= ? "
                   "AND target_domain = ?",
                   [min_rank, TARGET])
    events |= rows("SELECT c.target_domain, 'gap_opened', c.ref_domain, c.event_date FROM serpstat.link_gap_changes c "
                   "JOIN serpstat.link_gap g USING (target_domain, search_type, ref_domain) "
                   "WHERE c.change = 'gap_opened' "
                   "AND g.in_gap_since = c.event_date AND coalesce(g.max_domain_rank, 0) >= ?", [min_rank])
    return events


def baseline_before(workdir: Path, emulator, today: dt.date) -> None:
    """The series' first full snapshots a week before `today` (they yield no event), in the
    database `refdomains` writes in `workdir`; the emulator then serves `today`."""
    import dlt

    emulator.today = today - dt.timedelta(weeks=1)
    run_pipeline(workdir, emulator, DOMAINS, emulator.today, build_models=True,
                 destination=dlt.destinations.duckdb(str(workdir / "serpstat_refdomains.duckdb")))
    emulator.today = today


def event_id(event: tuple) -> str:
    target, change, ref_domain, day = event
    return alerts.Event(target, "domain_with_subdomains", change, ref_domain, day, ref_domain, None, "").event_id


def delivered_ids(receiver: Receiver) -> list[str]:
    """Every event id the webhook received, over all its messages, duplicates kept."""
    return [i for r in receiver.received("/hooks") for i in r["body"]["event_ids"]]


@pytest.fixture
def churning():
    with SerpstatEmulator(token=TOKEN, seed=31, today=START) as emulator:
        emulator.graph.set_profile(TARGET, Profile(base_size=250))
        emulator.graph.set_profile(RIVAL, Profile(base_size=200))
        yield emulator


def weekly(workdir, emulator, receiver: Receiver | None, week: int, **options):
    """The week's `auto` run with its models (and alerts, given a receiver). Week 0 follows the
    series' baseline, a full snapshot a week earlier (a first snapshot yields no event: it is where
    changes are counted from), loaded without alerts."""
    if week == 0 and not options.get("force"):
        emulator.today = START - dt.timedelta(weeks=1)
        run_pipeline(workdir, emulator, DOMAINS, emulator.today, build_models=True,
                     **{k: v for k, v in options.items() if k in ("destination", "dataset_name")})
    emulator.today = START + dt.timedelta(weeks=week)
    return run_pipeline(workdir, emulator, DOMAINS, emulator.today, build_models=True,
                        settings_options=alert_settings(receiver) if receiver else None, **options)


def test_each_event_reaches_each_channel_once_across_reruns_force_and_a_failed_delivery(
        tmp_path, churning, receiver, monkeypatch, caplog):
    monkeypatch.setattr(alerts, "DEFAULT_RETRY", FAST)  # the run's own policy, made quick
    first = weekly(tmp_path, churning, receiver, 0)
    assert first.exit_code == 0 and first.alerts == [
        f"alerts: {len(expected_events(tmp_path))} events sent to slack",
        f"alerts: {len(expected_events(tmp_path))} events sent to webhook"]
    # what was an event when it was sent: a gap that closes later was news when it opened
    expected = {event_id(e) for e in expected_events(tmp_path)}
    assert len(receiver.received("/services")) == len(receiver.received("/hooks")) == 1
    weekly(tmp_path, churning, receiver, 1)
    expected |= {event_id(e) for e in expected_events(tmp_path)}
    assert len(receiver.received("/hooks")) == 2
    # a rerun and a --force of the same day rebuild the same events: nothing is sent again
    again = weekly(tmp_path, churning, receiver, 1)
    forced = weekly(tmp_path, churning, receiver, 1, force=True)
    assert again.alerts == forced.alerts == ["alerts: nothing new for slack", "alerts: nothing new for webhook"]
    assert len(receiver.received("/hooks")) == 2 and len(receiver.received("/services")) == 2
    # week 3: Slack refuses every try; the run is not failed and the webhook is served
    receiver.always["/services"] = 503
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="serpstat_refdomains"):
        failed = weekly(tmp_path, churning, receiver, 2)
    expected |= {event_id(e) for e in expected_events(tmp_path)}
    assert failed.exit_code == 0 and failed.models_error is None
    assert len(failed.alerts) == 1 and failed.alerts[0].endswith("sent to webhook")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("alert to slack not delivered (HTTP 503; 3 attempts)")
    assert len(receiver.received("/services")) == 2 + 3  # three tries, all refused
    # week 4: Slack works again and gets weeks 3 and 4 in one message
    del receiver.always["/services"]
    weekly(tmp_path, churning, receiver, 3)
    expected |= {event_id(e) for e in expected_events(tmp_path)}
    ids = delivered_ids(receiver)
    assert len(ids) == len(set(ids)) and set(ids) == expected  # the webhook: each event once, none missing
    slack = [r for r in receiver.received("/services")]
    assert len(slack) == 6 and all(set(r["body"]) == {"text", "mrkdwn"} and r["body"]["mrkdwn"] for r in slack)
    # Slack's record: each event once, none missing, the refused tries recorded nothing
    recorded = query(tmp_path, "SELECT channel, target_domain, change, ref_domain, event_date, count(*) "
                               "FROM serpstat.alerts_sent GROUP BY ALL")
    assert all(r[5] == 1 for r in recorded)
    for channel in ("slack", "webhook"):
        assert {event_id(r[1:5]) for r in recorded if r[0] == channel} == expected
    # Slack's last message covers what it missed: the webhook's last two messages together
    last_two = receiver.received("/hooks")[-2:]
    assert slack[-1]["body"]["text"].startswith(f"*Serpstat referring domains: "
                                                f"{sum(r['body']['events'] for r in last_two)} changes")


def test_a_refused_delivery_is_retried_with_backoff_then_recorded_once(tmp_path, churning, receiver):
    report = weekly(tmp_path, churning, receiver, 0)
    assert len(report.alerts) == 2  # delivered with the run
    weekly(tmp_path, churning, None, 1)  # no channel configured: week 2's events wait
    receiver.script["/hooks"] = [500, 502]
    settings = _settings(tmp_path, churning, receiver, slack=False)
    pipe = _pipeline(tmp_path)
    lines, ok = alerts.send_pending(pipe, settings, FAST)
    assert ok and lines[0].endswith("sent to webhook (3 attempts)")
    tries = receiver.received("/hooks")[1:]
    assert len(tries) == 3 and len({t["headers"]["X-Refdomains-Alert-Id"] for t in tries}) == 1
    assert tries[0]["body"]["alert_id"] == tries[0]["headers"]["X-Refdomains-Alert-Id"]
    assert query(tmp_path, "SELECT count(DISTINCT alert_id) FROM serpstat.alerts_sent "
                           "WHERE channel = 'webhook'") == [(2,)]
    assert alerts.send_pending(pipe, settings, FAST)[0] == ["alerts: nothing new for webhook"]


def test_a_permanent_refusal_is_one_try_and_a_hung_channel_is_given_up(tmp_path, churning, receiver, caplog):
    weekly(tmp_path, churning, None, 0)
    receiver.always["/hooks"] = 404
    receiver.hang.add("/services")
    settings = _settings(tmp_path, churning, receiver)
    with caplog.at_level(logging.WARNING, logger="serpstat_refdomains"):
        lines, ok = alerts.send_pending(_pipeline(tmp_path), settings,
                                        alerts.Retry(attempts=2, initial=0.01, maximum=0.01, timeout=0.5))
    assert not ok and lines == []
    assert len(receiver.received("/hooks")) == 1  # a 404 will not heal: no retry
    messages = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert messages[0].startswith("alert to slack not delivered (no answer within 0.5 s; 2 attempts)")
    assert messages[1].startswith("alert to webhook not delivered (HTTP 404; 1 attempt)")
    assert query(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts_sent'") == [(0,)]


def test_messages_list_highest_rank_first_capped_and_respect_the_minimum_rank(tmp_path, churning, receiver):
    weekly(tmp_path, churning, None, 0)
    weekly(tmp_path, churning, None, 1)
    alert = alerts.pending(_pipeline(tmp_path), "webhook", min_rank=30)
    assert {(e.target_domain, e.change, e.ref_domain, e.event_date) for e in alert.events} == \
        expected_events(tmp_path, 30)
    assert alert.events and all(e.domain_rank >= 30 for e in alert.events)
    everything = alerts.pending(_pipeline(tmp_path), "webhook")
    payload = everything.payload()
    target = next(t for t in payload["targets"] if t["target_domain"] == TARGET)
    for kind in ("lost", "new", "gap_opened"):
        ranks = [item["domain_rank"] for item in target[kind]["items"]]
        assert ranks == sorted(ranks, reverse=True)
        assert len(ranks) == min(alerts.TOP, target[kind]["total"])
        assert target[kind]["more"] == target[kind]["total"] - len(ranks)
    assert target["new"]["more"] > 0  # the week-1 last_week pull alone lists more than TOP
    text = everything.text().splitlines()
    assert f"• … and {target['new']['more']} more" in text
    assert text[-1].startswith("Credits spent since ") and text[-1].endswith(
        f": {sum(r[0] for r in query(tmp_path, 'SELECT credits_spent FROM serpstat.snapshot_attempts')):,}")
    # competitors are fetched like tracked domains, but only tracked domains are alerted
    assert {e.target_domain for e in everything.events} == {TARGET}


def _settings(workdir, emulator, receiver, slack: bool = True):
    from serpstat_refdomains.config import build_settings
    return build_settings(domains=DOMAINS, api_url=emulator.url, alert_webhook_url=receiver.webhook_url,
                          slack_incoming_hook=receiver.slack_url if slack else None)


def _pipeline(workdir):
    import dlt

    from serpstat_refdomains import warehouse
    return warehouse.make_pipeline(dlt.destinations.duckdb(str(workdir / "refdomains.duckdb")), None,
                                  str(workdir / "pipelines"))


# --- the command line --------------------------------------------------------------------
def test_cli_dry_run_prints_and_sends_nothing_then_alerts_sends_and_no_secret_is_anywhere(tmp_path, churning, receiver):
    """Every command at DEBUG with both channels, one of them failing first: then grep all output,
    every file (the DuckDB database, dlt's pipeline folder and traces) for the token and the URLs."""
    domains = json.dumps(DOMAINS)
    env = cli_env(tmp_path, churning, domains, RUNTIME__LOG_LEVEL="DEBUG",
                  RUNTIME__SLACK_INCOMING_HOOK=receiver.slack_url,
                  SOURCES__SERPSTAT__ALERT_WEBHOOK_URL=receiver.webhook_url)
    outputs = []
    receiver.always["/hooks"] = 400
    baseline_before(tmp_path, churning, TODAY)
    done = run_cli(tmp_path, env, "run")
    outputs += [done.stdout, done.stderr]
    assert done.returncode == 0, done.stderr
    assert "alert to webhook not delivered (HTTP 400; 1 attempt)" in done.stderr
    assert done.stdout.splitlines()[-1].startswith("alerts: ") and "sent to slack" in done.stdout
    assert sum("not delivered" in line for line in done.stderr.splitlines()) == 1
    del receiver.always["/hooks"]
    before = len(receiver.requests)
    dry = run_cli(tmp_path, env, "alerts", "--dry-run")
    outputs += [dry.stdout, dry.stderr]
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("alerts (dry run, nothing sent) for slack:\nnothing to send\n")
    assert "alerts (dry run, nothing sent) for webhook:\n*Serpstat referring domains: " in dry.stdout
    assert f"\n*{TARGET}*\n" in dry.stdout and "\nNew: " in dry.stdout
    assert len(receiver.requests) == before
    sent = run_cli(tmp_path, env, "alerts")
    outputs += [sent.stdout, sent.stderr]
    assert sent.returncode == 0 and sent.stdout.splitlines() == [
        "alerts: nothing new for slack",
        f"alerts: {receiver.received('/hooks')[-1]['body']['events']} events sent to webhook"]
    for args in (["report", "--format", "json"], ["status"], ["models"]):
        done = run_cli(tmp_path, env, *args)
        outputs += [done.stdout, done.stderr]
    assert any("POST" in text for text in outputs), "DEBUG request lines were not produced"
    secrets = [TOKEN, receiver.slack_url, receiver.webhook_url, SLACK_PATH, WEBHOOK_PATH, "slack-SECRET-91c2",
               "webhook-SECRET-5d1e"]
    for text in outputs:
        for secret in secrets:
            assert secret not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "trace.pickle" for p in files) and any(p.suffix == ".duckdb" for p in files)
    hits = [(str(p.relative_to(tmp_path)), s) for p in files for s in secrets if s.encode() in p.read_bytes()]
    assert hits == [], f"a secret is in {hits}"
    with duckdb.connect(str(tmp_path / "serpstat_refdomains.duckdb"), read_only=True) as con:
        tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for schema, table in tables:
            text = repr(con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall())
            assert not any(s in text for s in secrets), table


def test_cli_alerts_without_a_channel_is_one_line_exit_2(tmp_path, churning):
    env = cli_env(tmp_path, churning, json.dumps(DOMAINS))
    baseline_before(tmp_path, churning, TODAY)
    assert run_cli(tmp_path, env, "run").returncode == 0
    done = run_cli(tmp_path, env, "alerts")
    assert done.returncode == 2 and done.stderr.startswith("error: no alert channel is configured")
    assert len(done.stderr.strip().splitlines()) == 1
    dry = run_cli(tmp_path, env, "alerts", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith(
        "alerts (dry run, nothing sent) for a first alert (no channel configured):\n*Serpstat referring domains: ")


def test_a_bad_alert_setting_is_one_line_exit_2_and_nothing_fetched(tmp_path, churning):
    for extra, message in (({"SOURCES__SERPSTAT__ALERT_WEBHOOK_URL": "hooks.example.com/x"},
                            "alert_webhook_url is not an http(s) URL"),
                           ({"RUNTIME__SLACK_INCOMING_HOOK": "not a url"}, "runtime.slack_incoming_hook is not"),
                           ({"SOURCES__SERPSTAT__ALERT_MIN_DOMAIN_RANK": "101"},
                            "alert_min_domain_rank 101 is out of range")):
        done = run_cli(tmp_path, cli_env(tmp_path, churning, json.dumps(DOMAINS), **extra), "run")
        assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert "hooks.example.com/x" not in done.stderr and "not a url" not in done.stderr
    assert churning.log == []


@needs_postgres
def test_each_event_is_sent_and_recorded_once_on_postgres(tmp_path, churning, receiver, pg_dataset, monkeypatch):
    monkeypatch.setattr(alerts, "DEFAULT_RETRY", FAST)
    where = {"destination": postgres(), "dataset_name": pg_dataset}
    receiver.always["/services"] = 500  # Slack misses week 1 and gets it with week 2
    first = weekly(tmp_path, churning, receiver, 0, **where)
    assert first.exit_code == 0 and len(first.alerts) == 1 and first.alerts[0].endswith("sent to webhook")
    expected = {event_id(e) for e in expected_events(None, pg_dataset=pg_dataset)}  # events when sent
    del receiver.always["/services"]
    weekly(tmp_path, churning, receiver, 1, **where)
    # Slack gets what is news now, its missed week included (a gap that closed since is not)
    for_slack = {event_id(e) for e in expected_events(None, pg_dataset=pg_dataset)}
    expected |= for_slack
    again = weekly(tmp_path, churning, receiver, 1, force=True, **where)
    assert again.alerts == ["alerts: nothing new for slack", "alerts: nothing new for webhook"]
    ids = delivered_ids(receiver)
    assert len(ids) == len(set(ids)) and set(ids) == expected and any(e[1] == "gap_opened" for e in
                                                                        expected_events(None, pg_dataset=pg_dataset))
    recorded = pg_rows(pg_dataset, "SELECT channel, target_domain, change, ref_domain, event_date "
                                   "FROM {ds}.alerts_sent")
    assert len(recorded) == len(set(recorded)) == len(expected) + len(for_slack)
    assert {event_id(r[1:]) for r in recorded if r[0] == "slack"} == for_slack
