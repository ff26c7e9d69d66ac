"""The table `target_competitors`: which competitors each tracked domain has, as the latest run
configured them (docs/data.md, "Competitors and link gap").

Which target a competitor belongs to is configuration, which the SQL models cannot read: every
run writes it here, and `link_gap` and the alerts join on it. This module writes, reads and
declares the table; parsing the configuration is targets.py.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlglot import exp

from .constants import COMPETITORS_TABLE as TABLE
from .contract import TARGET_COMPETITORS
from .errors import first_line
from .reconnect import reconnecting
from .warehouse import destination_dialect

if TYPE_CHECKING:
    import dlt

    from .config import Settings

logger = logging.getLogger(__name__)

COLUMNS = TARGET_COMPETITORS.names


def ensure_table(client, dialect: str) -> None:
    """Create `target_competitors` when missing (a dataset loaded before competitors existed, or
    data written by other means), so link_gap always has its input."""
    text = exp.DataType.build("text").sql(dialect=dialect)
    table = client.make_qualified_table_name(TABLE)
    columns = ", ".join(f"{client.escape_column_name(name)} {text}" for name in COLUMNS)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")


def record(pipeline: dlt.Pipeline, settings: Settings) -> None:
    """Replace `target_competitors` with this run's configuration, in one transaction.

    The whole configuration, also under `--domain` (config keeps it in `settings.competitors`):
    link_gap then always reads the latest run's competitors, whichever domains it fetched."""
    rows: list[tuple[str, str, str | None, str | None]] = [
        (s.target.domain, s.target.search_type, c.domain, c.search_type)
            for s in settings.competitors for c in s.competitors]
    rows += [(s.target.domain, s.target.search_type, None, None) for s in settings.competitors if not s.competitors]
    with pipeline.sql_client() as client:
        dialect = destination_dialect(pipeline)
        table = client.make_qualified_table_name(TABLE)
        if not client.has_dataset():
            client.create_dataset()
        with client.begin_transaction():
            ensure_table(client, dialect)
            client.execute_sql(f"DELETE FROM {table}")
            names = ", ".join(client.escape_column_name(name) for name in COLUMNS)
            for row in rows:
                client.execute_sql(f"INSERT INTO {table} ({names}) VALUES (%s, %s, %s, %s)", *row)
    register(pipeline)


def record_for_run(pipeline: dlt.Pipeline, settings: Settings) -> None:
    """`record`, for a run: a failure is a warning (the snapshots are loaded; the models then
    read the configuration the previous run recorded)."""
    try:
        reconnecting(pipeline, lambda: record(pipeline, settings))
    except Exception as error:  # never costs the run its loaded snapshots
        logger.debug("recording competitors failed", exc_info=True)
        logger.warning("could not record the competitors in %s (%s): link_gap reads the previous run's",
                       TABLE, first_line(error))


def register(pipeline: dlt.Pipeline) -> None:
    """Declare the table in the pipeline's dlt schema, so `pipeline.dataset()` reads it and dlt's
    dashboard lists it.

    Like a model that is a table (models.catalog.schema_table): write disposition `skip` (dlt
    never loads or alters it: this module writes it), marked as holding data. dlt's drop of every
    resource drops it with the loaded tables; the next run records it again."""
    from dlt.common.schema.utils import new_table

    if pipeline.default_schema_name is None:
        return
    schema = pipeline.default_schema
    table = new_table(TABLE, write_disposition="skip", resource=TABLE,
                      columns=[{"name": name, "data_type": "text", "nullable": True, "description": meaning}
                               for name, meaning in TARGET_COMPETITORS.described().items()])
    table["description"] = TARGET_COMPETITORS.description
    table["x-normalizer"] = {"seen-data": True}
    held = schema.tables.get(TABLE)
    if held is not None and held.get("x-normalizer") == table["x-normalizer"]:
        return
    if held is not None:  # as an earlier version declared it
        schema.drop_tables([TABLE])
    schema.update_table(table)
    pipeline.schemas.save_schema(schema)


def read(pipeline: dlt.Pipeline) -> list[tuple[str, str, str | None, str | None]]:
    """The configuration the latest run recorded; [] when no run has recorded one."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE)
            return [tuple(r) for r in client.execute_sql(
                f"SELECT target_domain, search_type, competitor_domain, competitor_search_type FROM {table} "
                "ORDER BY 1, 2, 3") or []]
    except DatabaseUndefinedRelation:
        return []
