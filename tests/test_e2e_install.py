"""A new user's first day, from a built wheel: install it into a fresh venv, `refdomains init`
an empty folder, fill in the token, run, report, status; then the GitHub Actions workflow's
`run:` steps on a fresh runner, and the Airflow DAG in a real Airflow.

`make e2e` runs these (`make test` leaves them out: they build venvs and take minutes). The
user's venv gets the wheel the way a careful user installs a release: hash-checked, with the
dependency versions this repository's tests pass with (requirements.lock as constraints); the
workflow's runner installs it as the workflow does, with the newest dependencies in range.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest
import yaml

from tests.helpers import PG_URL, needs_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW = "apache-airflow==2.10.5"
NEW_USER_BAR = 300.0  # seconds: the "installs it into their own repo in minutes"
TODAY = dt.datetime.now(dt.UTC).date()  # what `refdomains run` files its snapshots under
DOMAINS = '["acme-shop.com", {query = "news-portal.org", competitors = ["rival-news.org"]}]'
TOKEN = "e2e-token"
SECRET = re.compile(r"\$\{\{\s*secrets\.(\w+)\s*\}\}")
GIT_REQUIREMENT = re.compile(r'"serpstat-refdomains @ git\+[^"]+"')


def _env(venv: Path | None = None, **extra: str) -> dict[str, str]:
    """This machine's environment (pip's settings included) with none of the caller's dlt settings,
    and `venv` first on PATH, as after `source venv/bin/activate` (or setup-python on a runner)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOURCES__", "DESTINATION__", "DLT_", "RUNTIME__", "VIRTUAL_ENV", "PYTHON"))}
    if venv is not None:
        env["PATH"] = f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    return {**env, "RUNTIME__DLTHUB_TELEMETRY": "false", **extra}  # no network here beyond PyPI


def _sh(command: str | list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, shell=isinstance(command, str), capture_output=True,
                          text=True, timeout=timeout, executable="/bin/bash" if isinstance(command, str) else None)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _venv(path: Path) -> Path:
    _sh([sys.executable, "-m", "venv", str(path)], path.parent, _env())
    _sh([str(path / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], path.parent, _env())
    return path


@pytest.fixture(scope="module")
def timings() -> dict[str, float]:
    return {}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory, timings) -> Path:
    """The wheel, built from a copy of the tree: setuptools reuses build/ in place, where a file
    deleted from the package would still ship."""
    started = time.perf_counter()
    work = tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT, work / "src", ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "demo", "tests", "bench"))
    _sh([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(work / "src")],
        work, _env())
    (built,) = (work / "dist").glob("serpstat_refdomains-*.whl")
    timings["build the wheel"] = time.perf_counter() - started
    return built


@pytest.fixture(scope="module")
def user_venv(tmp_path_factory, wheel, timings) -> Path:
    """A fresh venv with the wheel: hash-checked, its dependencies at the lock's versions."""
    started = time.perf_counter()
    venv = _venv(tmp_path_factory.mktemp("user") / "venv")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    requirement = venv.parent / "requirements.txt"
    requirement.write_text(f"serpstat-refdomains @ {wheel.as_uri()} --hash=sha256:{digest}\n")
    _sh([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "requirements.lock"),
         "-r", str(requirement)], venv.parent, _env())
    timings["install it into a fresh venv"] = time.perf_counter() - started
    return venv


@pytest.fixture(scope="module")
def emulator_url(user_venv):
    """`refdomains emulator` from the user's venv, serving today."""
    process = subprocess.Popen([str(user_venv / "bin" / "refdomains"), "emulator", "--port", "0", "--token", TOKEN,
                                "--day", TODAY.isoformat(), "--profile", "acme-shop.com=1500"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        line = process.stdout.readline()
        match = re.search(r"on (http://\S+/v4)", line)
        assert match, line + process.stderr.read()
        yield match[1]
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def project(tmp_path_factory, user_venv, emulator_url, timings) -> Path:
    """An empty folder made a project as the README's Install says, committed to git."""
    started = time.perf_counter()
    folder = tmp_path_factory.mktemp("project")
    env = _env(user_venv)
    done = _sh(["refdomains", "init", "--schedule", "github-actions"], folder, env)
    assert done.stdout.splitlines()[:4] == ["created .dlt/config.toml", "created .dlt/secrets.toml",
                                            "created .gitignore", "created .github/workflows/refdomains.yml"]
    # what the user edits: their domains, the token, and here the emulator instead of Serpstat
    config, secrets = folder / ".dlt" / "config.toml", folder / ".dlt" / "secrets.toml"
    text = config.read_text()
    assert "domains = []  # required" in text and '# api_url = "https://api.serpstat.com/v4"' in text
    config.write_text(text.replace("domains = []  # required", f"domains = {DOMAINS}")
                      .replace('# api_url = "https://api.serpstat.com/v4"', f'api_url = "{emulator_url}"'))
    secrets.write_text(secrets.read_text().replace('api_token = ""', f'api_token = "{TOKEN}"', 1))
    git = ["git", "-c", "user.name=e2e", "-c", "user.email=e2e@example.com"]
    _sh("git init -q && git add -A", folder, env)
    _sh([*git, "commit", "-q", "-m", "serpstat-refdomains"], folder, env)
    timings["init and edit the project"] = time.perf_counter() - started
    return folder


def test_a_new_user_installs_the_wheel_inits_a_folder_and_runs(project, user_venv, timings, capsys):
    started = time.perf_counter()
    env = _env(user_venv)
    run = subprocess.run(["refdomains", "run"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    # a first run pulls full snapshots only: its day's last_week would list nothing they do not
    rows = [line.split() for line in run.stdout.splitlines()[1:4]]
    # columns: target (competitor), kind, date, status, rows, credits
    assert {(r[0], r[-3]) for r in rows} == {("acme-shop.com", "complete"), ("news-portal.org", "complete"),
                                             ("rival-news.org", "complete")}, run.stdout
    assert all(r[-4] == TODAY.isoformat() for r in rows) and "credits spent: " in run.stdout
    report = _sh(["refdomains", "report", "--format", "html", "--output", "r.html"], project, env)
    assert report.stdout.strip() == "wrote r.html" and "<html" in (project / "r.html").read_text()[:500].lower()
    status = _sh(["refdomains", "status"], project, env)
    assert "acme-shop.com" in status.stdout and "credits left" in status.stdout, status.stdout
    timings["run, report, status"] = time.perf_counter() - started
    # what git keeps is what the user may commit: never the token, the database or dlt's state
    committed = _sh(["git", "ls-files"], project, env).stdout.split()
    assert sorted(committed) == [".dlt/config.toml", ".github/workflows/refdomains.yml", ".gitignore"]
    ignored = _sh("git status --porcelain --ignored", project, env).stdout
    for path in (".dlt/secrets.toml", "serpstat_refdomains.duckdb", ".dlt/pipelines/"):
        assert f"!! {path}" in ignored, ignored
    total = sum(timings.values())
    with capsys.disabled():  # shown by `make e2e`: the measured time is the point of this test
        print("\nnew user, from the source tree to a report: " + ", ".join(
            f"{step} {seconds:.0f} s" for step, seconds in timings.items()) + f"; total {total:.0f} s")
    assert total < NEW_USER_BAR, timings


@pytest.fixture
def database():
    """A database of its own on the test server, for a workflow that loads the default dataset."""
    name = f"rd_e2e_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(PG_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _snapshots(url: str) -> list[tuple]:
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute("SELECT target_domain, snapshot_kind, snapshot_date, status FROM serpstat.snapshots ORDER BY 1, 2")
        return cur.fetchall()


@needs_postgres
def test_the_github_actions_steps_run_on_a_fresh_runner(project, wheel, database, tmp_path):
    """Each `run:` step of the committed workflow, in a fresh clone (actions/checkout) with a fresh
    venv first on PATH (setup-python); the wheel stands in for the git URL it installs."""
    workflow = yaml.safe_load((project / ".github" / "workflows" / "refdomains.yml").read_text())
    secrets = {"SERPSTAT_API_TOKEN": TOKEN, "WAREHOUSE_POSTGRES_URL": database}
    runner = _venv(tmp_path / "runner")
    for attempt in ("first", "rerun"):  # a rerun on another fresh runner spends nothing
        checkout = tmp_path / attempt
        _sh(["git", "clone", "-q", str(project), str(checkout)], tmp_path, _env())
        outputs, installs = [], 0
        for step in workflow["jobs"]["load"]["steps"]:
            if "run" not in step:
                continue  # actions/checkout and setup-python: done above
            command, found = GIT_REQUIREMENT.subn(f'"{wheel}"', step["run"])
            installs += found
            env = {name: SECRET.sub(lambda m: secrets[m[1]], value) for name, value in step.get("env", {}).items()}
            assert "${{" not in command + "".join(env.values()), step
            outputs.append(_sh(command, checkout, _env(runner, **env)).stdout)
        assert installs == 1, "the workflow no longer installs the package from its git URL"
        assert "credits spent: " in outputs[-1], outputs
    assert "credits spent: 0," in outputs[-1] and "already_complete" in outputs[-1], outputs[-1]
    assert {(t, k, d, s) for t, k, d, s in _snapshots(database)} == {
        (t, "full", TODAY, "complete") for t in ("acme-shop.com", "news-portal.org", "rival-news.org")}


AIRFLOW_DAG_TEST = """
import sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag("refdomains")
run = dag.test()
print("DAG", dag.task_ids, run.state, [(ti.task_id, ti.state) for ti in run.get_task_instances()])
"""


@needs_postgres
def test_the_airflow_dag_runs_the_pipeline_in_airflow(project, wheel, database, tmp_path):
    """`refdomains init --schedule airflow` in the committed project, then the DAG parsed and run by
    Airflow itself (`dag.test()`: the scheduler's parse and the task's run in one process)."""
    venv = _venv(tmp_path / "airflow-venv")
    _sh([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", AIRFLOW, str(wheel)], tmp_path, _env())
    checkout = tmp_path / "project"
    _sh(["git", "clone", "-q", str(project), str(checkout)], tmp_path, _env())
    done = _sh(["refdomains", "init", "--schedule", "airflow"], checkout, _env(venv))
    assert "created dags/refdomains.py" in done.stdout and "kept .dlt/config.toml" in done.stdout
    (tmp_path / "dag_test.py").write_text(AIRFLOW_DAG_TEST)
    airflow = {"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "DESTINATION__POSTGRES__CREDENTIALS": database}
    _sh(["airflow", "db", "migrate"], tmp_path, _env(venv, **airflow))
    command = ["python", str(tmp_path / "dag_test.py"), str(checkout / "dags")]
    ran = _sh(command, tmp_path, _env(venv, SOURCES__SERPSTAT__API_TOKEN=TOKEN, **airflow))
    assert "DAG ['run'] success [('run', 'success')]" in ran.stdout, ran.stdout + ran.stderr
    assert {row[2] for row in _snapshots(database)} == {TODAY}  # today's date, not Airflow's ds
    # a configuration error (the command's exit 2) fails at once: a retry cannot fix it
    refused = _sh(command, tmp_path, _env(venv, SOURCES__SERPSTAT__API_TOKEN="wrong-token", **airflow))
    logs = refused.stdout + refused.stderr
    assert "DAG ['run'] failed [('run', 'failed')]" in refused.stdout, logs  # failed, not up_for_retry
    assert "AirflowFailException" in logs and "Invalid token!" in logs, logs
