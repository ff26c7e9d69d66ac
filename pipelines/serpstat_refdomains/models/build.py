"""One models build: every model of sql/ materialized in the pipeline's dataset and its data
tests run, inside one transaction, so a dashboard reads either the old models or the new ones,
never half of each, nor models whose tests fail; then the models registered with dlt."""

from __future__ import annotations

import logging

import dlt
from dlt.common.schema.utils import new_table

from ..competitor_table import ensure_table
from ..constants import DEFAULT_LOST_CONFIRMATION_SNAPSHOTS, PULLED_AT, REF_DOMAINS_TABLE, SNAPSHOTS_TABLE
from ..errors import first_line, unwrap
from ..warehouse import destination_dialect, has_column, table_exists
from .catalog import (
    RUNNER_TABLES,
    dlt_schema,
    register_in_schema,
    retired_models,
    write_comments,
    write_loaded_comments,
)
from .checks import run_data_tests
from .graph import SOURCE_TABLES, Model, load_models, model_params, render
from .materialize import drop_statement, materialize
from .names import update_names

logger = logging.getLogger(__name__)


def build(pipeline: dlt.Pipeline,
          lost_confirmation_snapshots: int = DEFAULT_LOST_CONFIRMATION_SNAPSHOTS, *,
          full_refresh: bool = False) -> list[str]:
    """Materialize every model in the pipeline's dataset; returns their names.

    Incremental models keep their rows and add what the new snapshots need; `full_refresh`
    builds them from nothing, as a first build does. Returns [] when nothing has been loaded yet
    (no ledger to read).
    """
    dialect = destination_dialect(pipeline)
    models = load_models()
    params = model_params(lost_confirmation_snapshots)
    with pipeline.sql_client() as client:
        if not _tables_exist(client):
            logger.info("no snapshots loaded yet: models not built")
            return []
    retired = retired_models(pipeline, {m.name for m in models})
    _ensure_pulled_at(pipeline)
    _comment_loaded_tables(pipeline, dialect)
    with pipeline.sql_client() as client:
        with client.begin_transaction():
            if dialect == "postgres":
                # PostgreSQL multiplies the selectivities of the models' multi-column joins (series +
                # snapshot number + domain) into an estimate of one row and picks nested loops that
                # take tens of minutes on a million rows; these are whole-table analytical joins,
                # where hash joins are right. Fresh statistics help the rest of the plan.
                client.execute_sql("SET LOCAL enable_nestloop = off")
                for table in (REF_DOMAINS_TABLE, SNAPSHOTS_TABLE):
                    client.execute_sql(f"ANALYZE {client.make_qualified_table_name(table)}")
            # first, so no view of an earlier version is left reading a model rebuilt below
            for name in retired:
                client.execute_sql(drop_statement(client, name))
            update_names(client, dialect)
            for table in RUNNER_TABLES:
                write_comments(client, table, "TABLE", dialect)
            ensure_table(client, dialect)  # link_gap's input, on a dataset loaded before it existed
            materialize_all(client, models, dialect, params, full_refresh=full_refresh)
            # before the commit: a test that finds a row rolls every model back
            run_data_tests(client, [*RUNNER_TABLES, *(m.name for m in models)], dialect, params,
                           SOURCE_TABLES | set(RUNNER_TABLES) | {m.name for m in models})
    register_in_schema(pipeline, {m.name: m.materialized for m in models})
    return [m.name for m in models]


def materialize_all(client, models: list[Model], dialect: str, params: dict[str, int], *,
                    full_refresh: bool = False, step_rows: int | None = None) -> None:
    """Every model in build order, in the client's dataset, inside the caller's transaction;
    `step_rows` overrides the size of an incremental model's steps."""
    tables = SOURCE_TABLES | {m.name for m in models}
    for model in models:
        materialize(client, model, render(model, params), dialect, tables, full_refresh=full_refresh,
                    step_rows=step_rows)


def _ensure_pulled_at(pipeline: dlt.Pipeline) -> None:
    """Rows loaded before `pulled_at` existed: their table lacks the column until a load adds it,
    and stg_snapshots reads it. Added here the way a load adds it (to dlt's schema, then synced to
    the warehouse, so the next load finds it known), empty: such rows are judged by count."""
    with pipeline.sql_client() as client:
        found = has_column(client, REF_DOMAINS_TABLE, PULLED_AT)
    schema = dlt_schema(pipeline)
    if found or schema is None:
        return
    logger.info("adding %s to %s (rows loaded by an earlier version)", PULLED_AT, REF_DOMAINS_TABLE)
    schema.update_table(new_table(REF_DOMAINS_TABLE, columns=[
        {"name": PULLED_AT, "data_type": "timestamp", "nullable": True, "timezone": True}]))
    pipeline.schemas.save_schema(schema)
    pipeline.sync_schema()


def _comment_loaded_tables(pipeline: dlt.Pipeline, dialect: str) -> None:
    """The loaded tables documented like the models, in a transaction of its own: only a table's
    owner may comment on it, and a loader role that may write but not own the tables still builds
    the models (as warehouse.ensure_snapshot_key_index does without its index)."""
    from dlt.destinations.exceptions import DatabaseTerminalException

    try:
        with pipeline.sql_client() as client, client.begin_transaction():
            write_loaded_comments(client, dialect)
    except DatabaseTerminalException as error:
        logger.warning("could not comment on the loaded tables (%s): comment on them as their owner",
                       first_line(unwrap(error)))


def _tables_exist(client) -> bool:
    return all(table_exists(client, table) for table in (REF_DOMAINS_TABLE, SNAPSHOTS_TABLE))
