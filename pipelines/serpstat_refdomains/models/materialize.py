"""Turning one model's SELECT into what its file says it is: a view, a table, or an incremental
table that keeps its rows between builds and adds those of the keys it lacks."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import sqlglot
from sqlglot import exp

from ..errors import ModelGraphError
from ..warehouse import stored_name, table_type
from .catalog import catalog, write_comments
from .dialects import SOURCE_DIALECT, transpile
from .graph import Model

# The loaded rows an incremental model's SELECT reads at most in one step (int_snapshot_pair_changes:
# the rows of the snapshot pairs it compares): a first build over a long history is many steps
# of this size, not one the size of the history. DuckDB compares inside the run's own process, so
# a step bounds the run's memory. A warehouse compares on its server, which spills within its own
# settings, and every step scans the loaded rows again: there, fewer and larger steps.
STEP_ROWS = {"duckdb": 500_000}
WAREHOUSE_STEP_ROWS = 5_000_000


def materialize(client, model: Model, sql: str, dialect: str, tables: AbstractSet[str], *,
                full_refresh: bool = False, step_rows: int | None = None) -> None:
    """Build one model from its rendered SQL (DuckDB's dialect, names bare) in the client's
    dataset, through a dlt sql client (or one alike); `tables` are the names to qualify."""
    target = client.make_qualified_table_name(model.name)
    if model.materialized == "incremental":
        step_rows = step_rows if step_rows is not None else STEP_ROWS.get(dialect, WAREHOUSE_STEP_ROWS)
        materialize_incremental(client, model, sql, dialect, tables, full_refresh=full_refresh, step_rows=step_rows)
        kind = "TABLE"
    else:
        kind = "VIEW" if model.materialized == "view" else "TABLE"
        client.execute_sql(drop_statement(client, model.name))
        client.execute_sql(f"CREATE {kind} {target} AS {transpile(sql, dialect, client.dataset_name, tables)}")
    write_comments(client, model.name, kind, dialect)
    if dialect == "postgres" and kind == "TABLE":
        client.execute_sql(f"ANALYZE {target}")


def materialize_incremental(client, model: Model, sql: str, dialect: str, tables: AbstractSet[str], *,
                            full_refresh: bool = False, step_rows: int) -> None:
    """Keep an incremental model's rows and bring them up to date, like dbt's delete+insert.

    The rows of keys that `model.keys_from` no longer lists are deleted; then the model's SELECT
    runs over the listed keys it holds no rows of, a step of them at a time: keys in key order
    while their `model.size_column` adds up to `step_rows` (at least one a step). The SELECT reads
    `model.keys_from` as those keys only, so it says what a row is, never which rows are due. A
    table whose columns are not the catalog's (an older version of the model), or `full_refresh`,
    starts from nothing.
    """
    assert model.unique_key and model.keys_from
    target = client.make_qualified_table_name(model.name)
    columns = [c.name for c in catalog()[model.name].columns]
    # as the warehouse lists them (Snowflake: upper case)
    if full_refresh or _table_columns(client, model.name) not in (None, [stored_name(client, c) for c in columns]):
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
    size = client.escape_column_name(model.size_column) if model.size_column else "0"
    pending = (f"FROM {keys} listed WHERE NOT EXISTS (SELECT 1 FROM {target} held WHERE held.{key} = listed.{key})")
    listed = ", ".join(client.escape_column_name(c) for c in columns)
    for first, last in _steps(client.execute_sql(f"SELECT listed.{key}, {size} {pending} ORDER BY listed.{key}"),
                              step_rows):
        select = transpile(_reading_keys(model, sql, first, last), dialect, client.dataset_name, tables)
        # the column list names each column of the SELECT: one the model lacks fails here
        client.execute_sql(f"INSERT INTO {target} ({listed}) SELECT {listed} FROM ({select}) model_rows")
    left = _count(client, f"SELECT count(*) {pending}")
    if left:
        raise ModelGraphError(f"incremental SQL model {model.name!r} added no rows for {left} keys of "
                              f"{model.keys_from} it was given: its SELECT must return rows for every key")


def _steps(pending: list[tuple], step_rows: int) -> list[tuple[str, str]]:
    """The first and last key of each step over `pending` ((key, size) in key order): keys while
    their sizes add up to `step_rows`, and at least one."""
    steps: list[list] = []
    total = 0
    for key, size in pending:
        if not steps or total + int(size or 0) > step_rows:
            steps.append([key, key])
            total = 0
        steps[-1][1] = key
        total += int(size or 0)
    return [(first, last) for first, last in steps]


def _reading_keys(model: Model, sql: str, first: str, last: str) -> str:
    """`sql` with every read of `model.keys_from` narrowed to the keys from `first` to `last` that
    the model holds no rows of (still DuckDB's dialect, names bare)."""
    narrowed = exp.replace_placeholders(sqlglot.parse_one(
        f"SELECT * FROM {model.keys_from} AS listed WHERE listed.{model.unique_key} BETWEEN :first AND :last "
        f"AND NOT EXISTS (SELECT 1 FROM {model.name} AS held WHERE held.{model.unique_key} = "
        f"listed.{model.unique_key})", read=SOURCE_DIALECT), first=first, last=last)
    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    for read in [t for t in tree.find_all(exp.Table) if t.name == model.keys_from and not t.args.get("db")]:
        read.replace(exp.Subquery(this=narrowed.copy(),
                                  alias=exp.TableAlias(this=exp.to_identifier(read.alias or model.keys_from))))
    return tree.sql(dialect=SOURCE_DIALECT)


def _count(client, sql: str) -> int:
    rows = client.execute_sql(sql)
    return int(rows[0][0]) if rows else 0


def _table_columns(client, name: str) -> list[str] | None:
    """A table's columns in order; None if the dataset has no table of that name."""
    rows = client.execute_sql(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "ORDER BY ordinal_position", stored_name(client, client.dataset_name), stored_name(client, name))
    if not rows:
        return None
    return [r[0] for r in rows] if table_type(client, name) == "TABLE" else []


def _sql_type(data_type: str, dialect: str) -> str:
    return exp.DataType.build({"bool": "boolean"}.get(data_type, data_type)).sql(dialect=dialect)


def drop_statement(client, name: str) -> str:
    """Drop whatever the model is now (a view or a table: materialization may have changed)."""
    kind = table_type(client, name)
    if kind is None:
        return "SELECT 1"
    return f"DROP {kind} IF EXISTS {client.make_qualified_table_name(name)} CASCADE"
