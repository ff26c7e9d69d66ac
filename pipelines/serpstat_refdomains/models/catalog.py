"""What the models mean: each model's doc file beside its SQL (sql/<layer>/<model>.toml: its
description, columns and data tests), read and checked; and where the meanings go after a
build: the warehouse's `COMMENT ON` (what SQL clients and BI tools show) and the pipeline's dlt
schema (so `pipeline.dataset()` and dlt's tools read the models like loaded tables; see
`schema_table` for why dlt never writes them)."""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import dlt
from dlt.common.data_types.typing import TDataType
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTableSchema
from dlt.common.schema.utils import new_table

from ..contract import LOADED_TABLES
from ..errors import ModelGraphError
from ..warehouse import stored_name
from .dialects import literal
from .graph import layer_files, sql_root
from .names import NAMES_READ_TABLE, NAMES_TABLE

logger = logging.getLogger(__name__)

# Warehouses whose `COMMENT ON TABLE/VIEW/COLUMN ... IS '...'` the runner writes.
COMMENT_DIALECTS = {"duckdb", "postgres"}
# Marks a dlt schema table as one of ours, so a model dropped from sql/ leaves the schema too.
MODEL_HINT = "x-refdomains-model"
# The tables the runner keeps besides the SQL models, registered and documented like them.
RUNNER_TABLES = (NAMES_TABLE, NAMES_READ_TABLE)


# The keys a doc file may hold, so a misspelt one is an error rather than a test never run.
_DOC_KEYS = {"summary", "description", "unique_key", "columns", "data_tests"}
_COLUMN_KEYS = {"name", "type", "description", "data_tests"}
_ASSERTION_KEYS = {"name", "description", "sql"}


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # a dlt data type: text, bigint, date, bool, ...
    description: str
    not_null: bool = False  # data test: no row has it null
    accepted_values: tuple[str, ...] = ()  # data test: a value it holds is one of these (or null)


@dataclass(frozen=True)
class Assertion:
    """A data test written as SQL: a SELECT (DuckDB's dialect, models by bare name) of the rows
    that break it."""
    name: str
    description: str
    sql: str


@dataclass(frozen=True)
class ModelDoc:
    name: str
    description: str
    columns: tuple[Column, ...]
    summary: str = ""  # what a row is, in a line: the README's table and docs/models.md
    layer: str = ""  # the folder under sql/ the doc file is in
    unique_key: tuple[str, ...] = ()  # data test: no two rows share these columns
    assertions: tuple[Assertion, ...] = ()


@lru_cache(maxsize=1)
def catalog() -> dict[str, ModelDoc]:
    """Every model's doc file (sql/<layer>/<model>.toml, beside its SQL; the runner's own tables'
    in sql/staging/): its meaning, its columns in order, and its data tests."""
    docs = {}
    for layer, file in sorted(layer_files(sql_root(), ".toml"), key=lambda found: found[1].name):
        name = file.name[:-len(".toml")]
        docs[name] = _model_doc(name, layer, tomllib.loads(file.read_text(encoding="utf-8")))
    return docs


def _model_doc(name: str, layer: str, spec: dict) -> ModelDoc:
    where = f"sql/{layer}/{name}.toml"
    _known(where, spec, _DOC_KEYS)
    columns = []
    for column in spec["columns"]:
        _known(f"{where}, column {column.get('name')}", column, _COLUMN_KEYS)
        tests = column.get("data_tests", [])
        accepted = [test["accepted_values"] for test in tests if isinstance(test, dict) and "accepted_values" in test]
        unknown = [test for test in tests if test != "not_null" and not (isinstance(test, dict)
                                                                          and set(test) == {"accepted_values"})]
        if unknown:
            raise ModelGraphError(f"{where}, column {column['name']}: unknown data test {unknown[0]!r} "
                                  "(not_null or {{ accepted_values = [...] }})")
        columns.append(Column(column["name"], column["type"], column["description"], "not_null" in tests,
                              tuple(accepted[0]) if accepted else ()))
    unique_key = tuple(spec.get("unique_key", ()))
    missing = [key for key in unique_key if key not in {c.name for c in columns}]
    if missing:
        raise ModelGraphError(f"{where}: unique_key names {', '.join(missing)}, which it has no column of")
    assertions = []
    for test in spec.get("data_tests", []):
        _known(f"{where}, data test {test.get('name')}", test, _ASSERTION_KEYS)
        assertions.append(Assertion(test["name"], test["description"], test["sql"]))
    return ModelDoc(name, spec["description"], tuple(columns), spec.get("summary", ""), layer, unique_key,
                    tuple(assertions))


def _known(where: str, spec: dict, keys: set[str]) -> None:
    unknown = sorted(set(spec) - keys)
    if unknown:
        raise ModelGraphError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})")


def write_comments(client, name: str, kind: str, dialect: str) -> None:
    """COMMENT ON the model (a TABLE or VIEW) and each of its columns, where the warehouse has them."""
    if dialect not in COMMENT_DIALECTS:
        return
    doc = catalog()[name]
    target = client.make_qualified_table_name(name)
    client.execute_sql(f"COMMENT ON {kind} {target} IS {literal(doc.description)}")
    for column in doc.columns:
        client.execute_sql(f"COMMENT ON COLUMN {target}.{client.escape_column_name(column.name)} "
                           f"IS {literal(column.description)}")


def write_loaded_comments(client, dialect: str) -> None:
    """COMMENT ON each loaded table (ref_domains, snapshots, snapshot_attempts, target_competitors)
    and each of its columns, from contract.py's meanings, where the warehouse has them: dlt keeps
    the meanings in its schema but writes no comments. A table not loaded yet is left out, and so
    is a column a table loaded by an earlier version lacks; dlt's own columns (_dlt_id, ...) have none."""
    if dialect not in COMMENT_DIALECTS:
        return
    for table in LOADED_TABLES:
        found = {row[0] for row in client.execute_sql(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            stored_name(client, client.dataset_name), stored_name(client, table.name)) or []}
        if not found:
            continue
        target = client.make_qualified_table_name(table.name)
        client.execute_sql(f"COMMENT ON TABLE {target} IS {literal(table.description)}")
        for column in table.columns:
            if stored_name(client, column.name) in found:
                client.execute_sql(f"COMMENT ON COLUMN {target}.{client.escape_column_name(column.name)} "
                                   f"IS {literal(column.description)}")


def schema_table(name: str, materialized: str) -> TTableSchema:
    """A model as a dlt schema table, which dlt's tools list like a loaded one.

    write_disposition "skip": dlt never loads into it; a load only creates or alters the tables it
    has data for, so it never touches a model. A model materialized as a table is marked as holding
    data (`seen-data`, dlt's mark of a loaded table): dlt's dashboard (`dlt pipeline ... show`)
    lists only such tables, and `info` says it received data. dlt's drop and refresh
    (`dlt pipeline drop`, refresh="drop_sources") DROP TABLE the tables so marked, which the next
    build makes again; a view has no such mark, since a DROP TABLE fails on a view: they only take
    it out of the schema, and the next build puts it back.
    """
    doc = catalog()[name]
    table = new_table(name, write_disposition="skip", resource=name,
                      columns=[{"name": c.name, "data_type": cast(TDataType, c.data_type), "nullable": True,
                                "description": c.description} for c in doc.columns])
    table["description"] = doc.description
    if materialized != "view":
        mark_seen(table)
    # dlt keeps "x-" hints in a table schema, but its TypedDict has no key for them
    table[MODEL_HINT] = {"materialized": materialized}  # type: ignore[literal-required]
    return table


def mark_seen(table: TTableSchema) -> None:
    """dlt's own mark of a table that holds data (what its normalizer sets on a table's first rows)."""
    table["x-normalizer"] = {"seen-data": True}


def register_in_schema(pipeline: dlt.Pipeline, materialized: dict[str, str]) -> None:
    """Make the built models known to the pipeline's dlt schema, locally and in the warehouse's
    `_dlt_version`, so `pipeline.dataset()` and a fresh `dlt.dataset(...)` list and read them."""
    schema = dlt_schema(pipeline)
    if schema is None:
        logger.warning("the pipeline has no dlt schema yet: models are not registered with dlt")
        return
    wanted = {**dict.fromkeys(RUNNER_TABLES, "table"), **materialized}
    for name, kind in wanted.items():
        table = schema_table(name, kind)
        if _described(schema.tables.get(name)) != _described(table):
            if name in schema.tables:
                schema.drop_tables([name])
            schema.update_table(table)
    stale = [name for name, table in schema.tables.items() if MODEL_HINT in table and name not in wanted]
    if stale:
        schema.drop_tables(stale)
    if schema.is_modified:
        pipeline.schemas.save_schema(schema)
    # stores the schema in the warehouse when its hash is new there; models already exist with
    # these columns, so dlt finds nothing to create or alter
    pipeline.sync_schema()


def retired_models(pipeline: dlt.Pipeline, current: set[str]) -> list[str]:
    """Models an earlier version built and registered that sql/ no longer has (renamed or
    removed): the build drops them, so a warehouse holds no stale view of rows that moved on.
    Only what the schema marks as a model is touched, never a user's own table or view."""
    schema = dlt_schema(pipeline)
    if schema is None:
        return []
    return sorted(name for name, table in schema.tables.items()
                  if MODEL_HINT in table and name not in current and name not in RUNNER_TABLES)


def dlt_schema(pipeline: dlt.Pipeline) -> Schema | None:
    """The pipeline's dlt schema; from the warehouse on a fresh runner; None before any load."""
    if pipeline.default_schema_name is None:
        pipeline.sync_destination()
    return pipeline.default_schema if pipeline.default_schema_name is not None else None


def _described(table: TTableSchema | None) -> Any:
    if table is None:
        return None
    return (table.get("description"), table.get("write_disposition"), table.get("resource"), table.get(MODEL_HINT),
            table.get("x-normalizer"),
            [(c["name"], c.get("data_type"), c.get("description")) for c in table["columns"].values()])
