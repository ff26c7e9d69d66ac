"""`refdomains run`, `models`, `report` and `alerts --destination snowflake`, unmodified, through
dlt's snowflake destination against fakesnow's Snowflake-wire server, give the NEW and LOST rows
DuckDB gives for the same weekly runs.

fakesnow executes on DuckDB, through sqlglot's reading of Snowflake's SQL: this proves the load
path (dlt's PUT and COPY INTO, its staging dataset and merges), upper-case identifiers, the run
lock, alerts and exit codes, not Snowflake's SQL semantics. The server runs from a venv of its
own (fakesnow wants newer duckdb and sqlglot than this project allows): `make engines` builds it
and sets FAKESNOW_PYTHON; tests/fakesnow_server.py holds the adaptations dlt's SQL needs.
REFDOMAINS_REQUIRE_SNOWFLAKE=1 (set by `make engines`) turns a missing server into a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import duckdb
import pytest

from serpstat_refdomains.emulator import Profile, SerpstatEmulator
from tests.helpers import TOKEN, cli_env, run_main

pytestmark = [pytest.mark.engines, pytest.mark.timeout(1200)]

START = dt.date(2026, 3, 2)  # a Monday
WEEKS = 4
TARGET = "snow-site.com"
SERVER = Path(__file__).parent / "fakesnow_server.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def snowflake_url(tmp_path_factory):
    python = os.environ.get("FAKESNOW_PYTHON")
    if not python or not Path(python).exists():
        if os.environ.get("REFDOMAINS_REQUIRE_SNOWFLAKE") == "1":
            pytest.fail(f"REFDOMAINS_REQUIRE_SNOWFLAKE=1 but FAKESNOW_PYTHON is {python!r}: `make engines` builds it")
        pytest.skip("FAKESNOW_PYTHON (a venv with fakesnow[server]) is not set: `make engines` builds it")
    port = _free_port()
    log = (tmp_path_factory.mktemp("fakesnow") / "server.log").open("w")
    server = subprocess.Popen([python, str(SERVER), str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"fakesnow did not start: see {log.name}")
                time.sleep(0.2)
        yield (f"snowflake://user:pw@account/REFDOMAINS?warehouse=wh&role=r&host=localhost&port={port}"
               "&protocol=http")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


class _Webhook(BaseHTTPRequestHandler):
    """Alert webhooks, one path a destination: the event ids each received."""

    received: ClassVar[dict[str, list[str]]] = {}

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.setdefault(self.path, []).extend(body.get("event_ids", []))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    _Webhook.received = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Webhook.received
    server.shutdown()
    server.server_close()


def _snowflake(url: str):
    import snowflake.connector

    port = int(url.split("port=")[1].split("&")[0])
    return snowflake.connector.connect(user="user", password="pw", account="account", database="REFDOMAINS",
                                       host="localhost", port=port, protocol="http")


def test_weekly_runs_on_snowflake_give_duckdbs_new_and_lost(snowflake_url, webhook, tmp_path):
    hook_url, received = webhook
    duck_dir, snow_dir = tmp_path / "duckdb", tmp_path / "snowflake"
    duck_dir.mkdir()
    snow_dir.mkdir()
    done: dict[str, list] = {"duckdb": [], "snowflake": []}
    with SerpstatEmulator(token=TOKEN, seed=5, today=START) as emulator:
        emulator.graph.set_profile(TARGET, Profile(base_size=200))
        envs = {"duckdb": (duck_dir, cli_env(duck_dir, emulator, TARGET,
                                             SOURCES__SERPSTAT__ALERT_WEBHOOK_URL=f"{hook_url}/duckdb")),
                "snowflake": (snow_dir, cli_env(snow_dir, emulator, TARGET,
                                                SOURCES__SERPSTAT__ALERT_WEBHOOK_URL=f"{hook_url}/snowflake",
                                                DESTINATION__SNOWFLAKE__CREDENTIALS=snowflake_url))}
        for week in range(WEEKS):
            day = START + dt.timedelta(weeks=week)
            emulator.today = day
            for kind in ("full", "last_week"):
                for name, (workdir, env) in envs.items():
                    flags = ["--destination", "snowflake"] if name == "snowflake" else []
                    done[name].append(run_main(workdir, env, "run", "--kind", kind, *flags, day=day))
        last = START + dt.timedelta(weeks=WEEKS - 1)
        for name, (workdir, env) in envs.items():
            flags = ["--destination", "snowflake"] if name == "snowflake" else []
            for command in ("models", "report", "alerts"):
                done[name].append(run_main(workdir, env, command, *flags, day=last))
    for name, results in done.items():
        failed = [(r.args, r.returncode, r.stdout[-500:], r.stderr[-500:]) for r in results if r.returncode != 0]
        assert failed == [], name
    # the report says the same of the same history (the only words that may differ name the destination)
    assert done["snowflake"][-2].stdout.replace("snowflake", "duckdb") == done["duckdb"][-2].stdout

    new_sql = ("SELECT target_domain, ref_domain, detected_on, detected_by, is_returning FROM serpstat.new_ref_domains")
    lost_sql = "SELECT target_domain, ref_domain, lost_on, consecutive_absences FROM serpstat.lost_ref_domains"
    with duckdb.connect(str(duck_dir / "serpstat_refdomains.duckdb"), read_only=True) as con:
        duck_new, duck_lost = (sorted(con.execute(sql).fetchall()) for sql in (new_sql, lost_sql))
    with _snowflake(snowflake_url) as con:
        cur = con.cursor()
        snow_new, snow_lost = (sorted(tuple(r) for r in cur.execute(sql).fetchall()) for sql in (new_sql, lost_sql))
        # the models are there under Snowflake's upper-case names (the runner writes no COMMENT ON
        # on Snowflake: docs/destinations.md)
        models = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'SERPSTAT' "
                             "AND table_name IN ('NEW_REF_DOMAINS', 'LOST_REF_DOMAINS')").fetchall()
        # the run lock is a table of its own, released by every run
        locks = cur.execute('SELECT count(*) FROM serpstat."_REFDOMAINS_LOCK" WHERE holder IS NOT NULL').fetchall()
    assert duck_new and duck_lost, "the history has no NEW or no LOST rows to compare"
    assert snow_new == duck_new
    assert snow_lost == duck_lost
    assert models == [(2,)]
    assert locks == [(0,)]
    # the alerts: the same events, each sent once (the runs send them; `alerts` finds none left)
    assert received["/duckdb"] and sorted(received["/snowflake"]) == sorted(received["/duckdb"])
    assert len(set(received["/snowflake"])) == len(received["/snowflake"])
