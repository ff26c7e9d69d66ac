"""Runs the SQL models of sql/ against the pipeline's destination.

Models are written once, in DuckDB's dialect, as plain SELECTs. This runner qualifies their table
names with the pipeline's dataset, transpiles them with sqlglot for the destination, and
materializes them in file order, inside one transaction, so a dashboard reads either the old
models or the new ones, never half of each.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import dlt
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from . import settings as S

logger = logging.getLogger(__name__)

SOURCE_DIALECT = "duckdb"
# dlt destination type -> sqlglot dialect
DIALECTS = {
    "duckdb": "duckdb",
    "motherduck": "duckdb",
    "postgres": "postgres",
    "redshift": "redshift",
    "bigquery": "bigquery",
    "snowflake": "snowflake",
    "mssql": "tsql",
    "synapse": "tsql",
    "databricks": "databricks",
    "clickhouse": "clickhouse",
    "athena": "athena",
}
_MATERIALIZED = re.compile(r"^--\s*materialized:\s*(view|table)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Model:
    name: str
    materialized: str  # "view" or "table"
    sql: str  # a SELECT in DuckDB's dialect, with {placeholders}


def load_models() -> list[Model]:
    """The models shipped in the package (sql/NNN_name.sql), in run order."""
    files = sorted((f for f in resources.files("serpstat_refdomains.sql").iterdir()
                    if f.name.endswith(".sql")), key=lambda f: f.name)
    models = []
    for file in files:
        text = file.read_text(encoding="utf-8")
        match = _MATERIALIZED.search(text)
        name = file.name[:-4].split("_", 1)[1]
        models.append(Model(name=name, materialized=match.group(1) if match else "table", sql=text))
    return models


def model_names() -> list[str]:
    return [m.name for m in load_models()]


def render(model: Model, params: dict[str, int]) -> str:
    """Fill {placeholders}; only integers are accepted, so nothing can be injected."""
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in params or not isinstance(params[key], int) or isinstance(params[key], bool):
            raise ValueError(f"model {model.name} needs an integer parameter {key}")
        return str(params[key])
    return _PLACEHOLDER.sub(value, model.sql)


def transpile(sql: str, dialect: str, dataset: str, tables: set[str]) -> str:
    """The SELECT for `dialect`, with our tables qualified by `dataset`; raises on anything
    sqlglot cannot express in that dialect."""
    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name in tables and table.name not in ctes and not table.args.get("db"):
            table.set("db", exp.to_identifier(dataset))
    return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, comments=False)


def destination_dialect(pipeline: dlt.Pipeline) -> str:
    destination_type = pipeline.destination.destination_type.rsplit(".", 1)[-1]
    try:
        return DIALECTS[destination_type]
    except KeyError:
        raise ValueError(f"models have no SQL dialect for destination {destination_type!r}") from None


def build(pipeline: dlt.Pipeline, lost_confirmation_snapshots: int = S.DEFAULT_LOST_CONFIRMATION_SNAPSHOTS) -> list[str]:
    """Materialize every model in the pipeline's dataset; returns their names.

    Returns [] when nothing has been loaded yet (no ledger to read).
    """
    dialect = destination_dialect(pipeline)
    models = load_models()
    params = {"lost_confirmation_snapshots": int(lost_confirmation_snapshots)}
    tables = {S.REF_DOMAINS_TABLE, S.SNAPSHOTS_TABLE} | {m.name for m in models}
    with pipeline.sql_client() as client:
        if not _tables_exist(client):
            logger.info("no snapshots loaded yet: models not built")
            return []
        statements = []
        if dialect == "postgres":
            # PostgreSQL multiplies the selectivities of the models' multi-column joins (series
            # columns + snapshot number + domain) into an estimate of one row and picks nested
            # loops that take tens of minutes on a million rows; these are whole-table analytical
            # joins, where hash joins are right. Fresh statistics help the rest of the plan.
            statements.append("SET LOCAL enable_nestloop = off")
            statements += [f"ANALYZE {client.make_qualified_table_name(t)}"
                           for t in (S.REF_DOMAINS_TABLE, S.SNAPSHOTS_TABLE)]
        for model in models:
            target = client.make_qualified_table_name(model.name)
            select = transpile(render(model, params), dialect, client.dataset_name, tables)
            kind = "VIEW" if model.materialized == "view" else "TABLE"
            statements.append(_drop(client, model.name, target))
            statements.append(f"CREATE {kind} {target} AS {select}")
            if dialect == "postgres" and kind == "TABLE":
                statements.append(f"ANALYZE {target}")
        with client.begin_transaction():
            for statement in statements:
                client.execute_sql(statement)
    return [m.name for m in models]


def _drop(client, name: str, target: str) -> str:
    """Drop whatever the model is now (a view or a table: materialization may have changed)."""
    rows = client.execute_sql(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        client.dataset_name, name)
    if not rows:
        return "SELECT 1"
    kind = "VIEW" if "VIEW" in str(rows[0][0]).upper() else "TABLE"
    return f"DROP {kind} IF EXISTS {target} CASCADE"


def _tables_exist(client) -> bool:
    rows = client.execute_sql(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s AND table_name IN (%s, %s)",
        client.dataset_name, S.REF_DOMAINS_TABLE, S.SNAPSHOTS_TABLE)
    return bool(rows) and rows[0][0] == 2
