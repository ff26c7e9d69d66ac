"""serpstat-refdomains on Airflow: `refdomains run` once a day, as one task.

Install the package into Airflow's environment, pinned to a release:
    pip install "serpstat-refdomains @ git+https://github.com/<org>/serpstat-refdomains@v<version>"
Keep this file in dags/ of the project folder that holds .dlt/config.toml (or set DLT_PROJECT_DIR to
that folder). Secrets in that folder's .dlt/secrets.toml or in Airflow's environment:
SOURCES__SERPSTAT__API_TOKEN and DESTINATION__POSTGRES__CREDENTIALS.

The task does what the command does (`run_configured`): the same configuration, every setting,
the models, the alerts. Its snapshots are filed under today's date, UTC, like the command's: not
under Airflow's logical date (`ds`), which in Airflow 2 is the day before the run, while Serpstat
answers with today's index (the pipeline refuses any other date). It fails as the command exits 1,
with the line the command prints, when a snapshot is not complete; completed ones are kept, so
Airflow's retry fetches only the rest. A configuration error (the command's exit 2) fails without
retries: a retry cannot fix it.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException

PROJECT_DIR = Path(__file__).resolve().parents[1]  # the folder that holds .dlt/
DESTINATION = "postgres"  # workers keep no files from one run to the next: load into a warehouse


@dag(schedule="15 5 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=1, default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=30)},
     tags=["seo", "dlt"])
def refdomains():
    @task
    def run() -> int:
        from serpstat_refdomains import run_configured
        from serpstat_refdomains.errors import ConfigError, UsageError

        try:
            report = run_configured(destination=DESTINATION, project_dir=str(PROJECT_DIR))
        except (ConfigError, UsageError) as error:
            raise AirflowFailException(str(error)) from None
        for line in report.lines():
            print(line)
        if report.failure:
            raise RuntimeError(report.failure)
        return report.credits_spent

    run()


refdomains()
