"""Turning one model's SELECT into what its file says it is: a view, a table, or an incremental
table that keeps its rows between builds and adds those of the keys it lacks."""

from __future__ import annotations

from sqlglot import exp

from ..errors import ModelGraphError
from .catalog import catalog, write_comments
from .graph import Model


def materialize(client, model: Model, select: str, dialect: str, *, full_refresh: bool = False) -> None:
    """Build one model from its transpiled SELECT, through a dlt sql client (or one alike)."""
    target = client.make_qualified_table_name(model.name)
    if model.materialized == "incremental":
        materialize_incremental(client, model, select, dialect, full_refresh=full_refresh)
        kind = "TABLE"
    else:
        kind = "VIEW" if model.materialized == "view" else "TABLE"
        client.execute_sql(drop_statement(client, model.name))
        client.execute_sql(f"CREATE {kind} {target} AS {select}")
    write_comments(client, model.name, kind, dialect)
    if dialect == "postgres" and kind == "TABLE":
        client.execute_sql(f"ANALYZE {target}")


def materialize_incremental(client, model: Model, select: str, dialect: str, *, full_refresh: bool = False) -> None:
    """Keep an incremental model's rows and bring them up to date, like dbt's delete+insert.

    The rows of keys that `model.keys_from` no longer lists are deleted; then the model's SELECT,
    which reads the model itself to leave out the keys it holds, runs again and again until every
    listed key has rows (each SELECT may take a bounded share of them). A table whose columns are
    not the catalog's (an older version of the model), or `full_refresh`, starts from nothing.
    """
    assert model.unique_key and model.keys_from
    target = client.make_qualified_table_name(model.name)
    columns = [c.name for c in catalog()[model.name].columns]
    if full_refresh or _table_columns(client, model.name) not in (None, columns):
        client.execute_sql(drop_statement(client, model.name))
    if _table_columns(client, model.name) is None:
        types = {c.name: _sql_type(c.data_type, dialect) for c in catalog()[model.name].columns}
        client.execute_sql(f"CREATE TABLE {target} ("
                           + ", ".join(f"{client.escape_column_name(c)} {types[c]}" for c in columns) + ")")
    key = client.escape_column_name(model.unique_key)
    keys = client.make_qualified_table_name(model.keys_from)
    # NOT EXISTS, never NOT IN: PostgreSQL hashes a NOT IN subquery only while it fits work_mem,
    # and beyond that rescans it for every row
    client.execute_sql(f"DELETE FROM {target} WHERE NOT EXISTS "
                       f"(SELECT 1 FROM {keys} listed WHERE listed.{key} = {target}.{key})")
    listed = ", ".join(client.escape_column_name(c) for c in columns)
    pending_sql = (f"SELECT count(*) FROM {keys} listed WHERE NOT EXISTS "
                   f"(SELECT 1 FROM {target} held WHERE held.{key} = listed.{key})")
    pending = _count(client, pending_sql)
    while pending:
        # the column list names each column of the SELECT: one the model lacks fails here
        client.execute_sql(f"INSERT INTO {target} ({listed}) SELECT {listed} FROM ({select}) model_rows")
        left = _count(client, pending_sql)
        if left >= pending:
            raise ModelGraphError(f"incremental SQL model {model.name!r} added no rows for the {left} keys of "
                                  f"{model.keys_from} it lacks: its SELECT must return rows for some of them")
        pending = left


def _count(client, sql: str) -> int:
    rows = client.execute_sql(sql)
    return int(rows[0][0]) if rows else 0


def _table_columns(client, name: str) -> list[str] | None:
    """A table's columns in order; None if the dataset has no table of that name."""
    rows = client.execute_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", client.dataset_name, name)
    if not rows:
        return None
    kind = client.execute_sql(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        client.dataset_name, name)
    return [r[0] for r in rows] if kind and "VIEW" not in str(kind[0][0]).upper() else []


def _sql_type(data_type: str, dialect: str) -> str:
    return exp.DataType.build({"bool": "boolean"}.get(data_type, data_type)).sql(dialect=dialect)


def drop_statement(client, name: str) -> str:
    """Drop whatever the model is now (a view or a table: materialization may have changed)."""
    rows = client.execute_sql(
        "SELECT table_type FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
        client.dataset_name, name)
    if not rows:
        return "SELECT 1"
    kind = "VIEW" if "VIEW" in str(rows[0][0]).upper() else "TABLE"
    return f"DROP {kind} IF EXISTS {client.make_qualified_table_name(name)} CASCADE"
