"""Airflow DAG for serpstat-refdomains (copy into your dags/ folder).

Two ways, both with the project installed in the Airflow environment (pip install -r
requirements.lock && pip install --no-deps .) and the token in Airflow's environment as
SOURCES__SERPSTAT__API_TOKEN (or in .dlt/secrets.toml next to the DAG):

1. `refdomains_run` (recommended): the full `refdomains run` flow — skips snapshots already
   complete, one load per snapshot, ledger, budget, models.
2. `refdomains_dlt_helper`: dlt's Airflow helper running the plain `serpstat()` source, for teams
   that standardise on PipelineTasksGroup; it loads one full snapshot of every domain as one load
   (no skipping, no per-target isolation), then builds the models.
"""

from __future__ import annotations

import pendulum
from airflow.decorators import dag, task

default_args = {"retries": 1, "retry_delay": pendulum.duration(minutes=30)}


@dag(schedule="15 5 * * *", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=1, default_args=default_args, tags=["seo", "dlt"])
def refdomains_run():
    @task
    def load(ds: str | None = None) -> int:
        from serpstat_refdomains import pipeline
        from serpstat_refdomains.config import parse_date, resolve_settings
        from serpstat_refdomains.results import OK_STATUSES

        settings, token = resolve_settings()
        report = pipeline.run(settings, token, snapshot_date=parse_date(ds), kind="auto",
                              destination="postgres")
        failed = [r for r in report.results if r.status not in OK_STATUSES]
        if failed:  # completed snapshots are kept; Airflow's retry fetches only these again
            raise RuntimeError(f"{len(failed)} snapshot(s) not complete: {[str(r.target) for r in failed]}")
        return report.credits_spent

    load()


@dag(schedule="30 5 * * 1", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False,
     max_active_runs=1, default_args=default_args, tags=["seo", "dlt"])
def refdomains_dlt_helper():
    import dlt
    from dlt.helpers.airflow_helper import PipelineTasksGroup

    from serpstat_refdomains import constants as S, models
    from serpstat_refdomains.source import serpstat

    tasks = PipelineTasksGroup("serpstat_refdomains", use_data_folder=False, wipe_local_data=True)
    pipeline = dlt.pipeline(pipeline_name=S.PIPELINE_NAME, dataset_name=S.DATASET_NAME, destination="postgres")
    tasks.add_run(pipeline, serpstat(kind="full"), decompose="none", trigger_rule="all_done", retries=0)

    @task
    def build_models() -> list[str]:
        return models.build(pipeline)

    tasks >> build_models()


refdomains_run()
refdomains_dlt_helper()
