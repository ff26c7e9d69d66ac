"""Runs the SQL models of sql/ against the pipeline's destination.

Models are written once, in DuckDB's dialect, as plain SELECTs, one model a file, in layers like
dbt's: sql/staging/ (the loaded tables made readable), sql/intermediate/ (steps shared by several
models) and sql/marts/ (what users query). A model reads other models and the loaded tables by
their bare names; the runner parses each model with sqlglot, builds them in the order those
references give, qualifies the names with the pipeline's dataset, transpiles for the destination
and materializes every model inside one transaction, so a dashboard reads either the old models or
the new ones, never half of each.

sql/models.toml declares each model's columns, types and meanings. After a build they are written
to the warehouse as comments and to the pipeline's dlt schema, so `pipeline.dataset()` and dlt's
tools read the models like loaded tables (see `register_in_schema` for why dlt never writes them).
"""

from __future__ import annotations

import graphlib
import logging
import re
import tomllib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, cast

import dlt
import pyarrow as pa
import sqlglot
from dlt.common.data_types.typing import TDataType
from dlt.common.schema import Schema
from dlt.common.schema.typing import TTableSchema
from dlt.common.schema.utils import new_table
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError

from . import constants as S
from .competitor_table import ensure_table as ensure_competitors_table
from .errors import ModelGraphError
from .warehouse import destination_dialect, has_column

logger = logging.getLogger(__name__)

SOURCE_DIALECT = "duckdb"
_MATERIALIZED = re.compile(r"^--\s*materialized:\s*(view|table|incremental)\s*$", re.MULTILINE)
# An incremental model keeps its rows between builds: `unique_key` names the column that groups
# them, `keys` the model that lists the keys still wanted (see materialize_incremental).
_UNIQUE_KEY = re.compile(r"^--\s*unique_key:\s*(\w+)\s*$", re.MULTILINE)
_KEYS = re.compile(r"^--\s*keys:\s*(\w+)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Warehouses whose `COMMENT ON TABLE/VIEW/COLUMN ... IS '...'` the runner writes.
COMMENT_DIALECTS = {"duckdb", "postgres"}
# Kept by the runner, not by a SQL file: IDNA names decoded in Python (no warehouse decodes punycode).
NAMES_TABLE = "stg_ref_domain_names"
# The snapshots, as loaded, whose rows NAMES_TABLE has read: a build reads the rows of new ones only.
NAMES_READ_TABLE = "stg_ref_domain_names_read"
# Marks a dlt schema table as one of ours, so a model dropped from sql/ leaves the schema too.
MODEL_HINT = "x-refdomains-model"
_INSERT_BATCH = 5000
# The loaded rows an incremental model's SELECT reads at most in one step (int_snapshot_pair_changes:
# the rows of the snapshot pairs it compares): a first build over a year of history is many steps
# of this size, not one the size of the history. DuckDB compares inside the run's own process, so
# a step bounds the run's memory. A warehouse compares on its server, which spills within its own
# settings, and every step scans the loaded rows again: there, fewer and larger steps.
PAIR_BATCH_ROWS = {"duckdb": 500_000}
WAREHOUSE_PAIR_BATCH_ROWS = 5_000_000


# Tables the models read that no SQL file builds: loaded by the pipeline, or kept by this runner.
SOURCE_TABLES = frozenset({S.REF_DOMAINS_TABLE, S.SNAPSHOTS_TABLE, NAMES_TABLE, S.COMPETITORS_TABLE})
# Build order among models that do not depend on each other, for a readable log and plan.
LAYERS = ("staging", "intermediate", "marts")


@dataclass(frozen=True)
class Model:
    name: str
    materialized: str  # "view", "table" or "incremental"
    sql: str  # a SELECT in DuckDB's dialect, with {placeholders}
    layer: str = ""  # the folder under sql/: staging, intermediate or marts
    depends_on: tuple[str, ...] = ()  # the models and loaded tables it reads, as its SQL names them
    unique_key: str | None = None  # incremental: the column whose values the rows are kept by
    keys_from: str | None = None  # incremental: the model listing the keys still wanted


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # a dlt data type: text, bigint, date, bool, ...
    description: str


@dataclass(frozen=True)
class ModelDoc:
    name: str
    description: str
    columns: tuple[Column, ...]


@lru_cache(maxsize=1)
def catalog() -> dict[str, ModelDoc]:
    """sql/models.toml: every model's meaning and columns, in order."""
    text = resources.files("serpstat_refdomains.sql").joinpath("models.toml").read_text(encoding="utf-8")
    return {name: ModelDoc(name, spec["description"],
                           tuple(Column(c["name"], c["type"], c["description"]) for c in spec["columns"]))
            for name, spec in tomllib.loads(text).items()}


def load_models(root: Traversable | None = None) -> list[Model]:
    """The models under `root` (default: sql/ shipped in the package), in build order: every model
    after the models it reads. The order comes from each model's own table references, so a new
    model is one .sql file in a layer's folder (and its entry in sql/models.toml)."""
    root = root if root is not None else resources.files("serpstat_refdomains.sql")
    models: dict[str, Model] = {}
    for layer, file in _sql_files(root):
        name = file.name[:-len(".sql")]
        if name in models:
            raise ModelGraphError(f"two SQL models are named {name!r} ({models[name].layer}/ and {layer}/): "
                                  "model names must be unique across sql/")
        text = file.read_text(encoding="utf-8")
        match = _MATERIALIZED.search(text)
        materialized = match.group(1) if match else "table"
        unique_key, keys_from = _UNIQUE_KEY.search(text), _KEYS.search(text)
        depends_on = _references(name, text, reads_itself=materialized == "incremental")
        if materialized == "incremental" and not (unique_key and keys_from and keys_from.group(1) in depends_on):
            raise ModelGraphError(f"incremental SQL model {name!r} needs `-- unique_key: <column>` and "
                                  "`-- keys: <model it reads that lists the keys to keep>`")
        models[name] = Model(name=name, materialized=materialized, sql=text, layer=layer, depends_on=depends_on,
                             unique_key=unique_key.group(1) if unique_key and materialized == "incremental" else None,
                             keys_from=keys_from.group(1) if keys_from and materialized == "incremental" else None)
    return _build_order(models)


def _sql_files(folder: Traversable, layer: str = "") -> list[tuple[str, Traversable]]:
    files = []
    for entry in folder.iterdir():
        if entry.is_dir():
            files += _sql_files(entry, f"{layer}/{entry.name}" if layer else entry.name)
        elif entry.name.endswith(".sql"):
            files.append((layer, entry))
    return files


def _references(name: str, sql: str, reads_itself: bool = False) -> tuple[str, ...]:
    """The tables a model's SELECT reads, less its own CTEs (and itself, for an incremental model,
    which reads the rows it kept): what sqlglot parses for transpile()."""
    try:
        tree = sqlglot.parse_one(_PLACEHOLDER.sub("0", sql), read=SOURCE_DIALECT)
    except ParseError as error:
        raise ModelGraphError(f"SQL model {name!r} does not parse: {str(error).splitlines()[0]}") from None
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return tuple(sorted({table.name for table in tree.find_all(exp.Table)
                         if table.name not in ctes and not (reads_itself and table.name == name)
                         and not table.args.get("db")}))


def _build_order(models: dict[str, Model]) -> list[Model]:
    for model in models.values():
        unknown = [table for table in model.depends_on if table not in models and table not in SOURCE_TABLES]
        if unknown:
            raise ModelGraphError(f"SQL model {model.name!r} reads {', '.join(map(repr, unknown))}, which is neither "
                                  f"a model in sql/ nor a loaded table ({', '.join(sorted(SOURCE_TABLES))})")
    sorter = graphlib.TopologicalSorter({name: [table for table in model.depends_on if table in models]
                                         for name, model in models.items()})
    try:
        sorter.prepare()
    except graphlib.CycleError as error:
        raise ModelGraphError("SQL models read each other in a cycle: " + " -> ".join(error.args[1])) from None
    order: list[Model] = []
    while sorter.is_active():
        ready = sorted((models[name] for name in sorter.get_ready()), key=_layer_rank)
        order += ready
        sorter.done(*(model.name for model in ready))
    return order


def _layer_rank(model: Model) -> tuple[int, str]:
    top = model.layer.split("/", 1)[0]
    return (LAYERS.index(top) if top in LAYERS else len(LAYERS), model.name)


def model_names() -> list[str]:
    return [m.name for m in load_models()]


def render(model: Model, params: dict[str, int]) -> str:
    """Fill {placeholders}; only integers are accepted, so nothing can be injected."""
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in params or not isinstance(params[key], int) or isinstance(params[key], bool):
            raise ModelGraphError(f"model {model.name} needs an integer parameter {key}")
        return str(params[key])
    return _PLACEHOLDER.sub(value, model.sql)


def transpile(sql: str, dialect: str, dataset: str, tables: AbstractSet[str]) -> str:
    """The SELECT for `dialect`, with our tables qualified by `dataset`; raises on anything
    sqlglot cannot express in that dialect."""
    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name in tables and table.name not in ctes and not table.args.get("db"):
            table.set("db", exp.to_identifier(dataset))
    tree = tree.transform(lambda node: _iso_week_start(node, dialect))
    if dialect == "postgres":
        tree = _inline_single_use_ctes(_drop_date_beside_key(tree))
    return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, comments=False)


def _inline_single_use_ctes(tree: exp.Expression) -> exp.Expression:
    """Each CTE read once becomes a subquery in its place (the last first, so the ones it reads
    follow it in). PostgreSQL never pulls a view whose query has a WITH into the query that reads
    it: every read of stg_ref_domains computed the view over the whole history (13.5M rows,
    sorted on disk) before the reader's join could narrow it to the snapshots it wanted. A
    subquery without WITH is pulled up and planned with its reader. CTEs read twice stay."""
    with_ = tree.args.get("with_")
    if with_ is None or any(w is not with_ for w in tree.find_all(exp.With)):
        return tree  # none, or nested WITHs whose names could shadow these
    for cte in reversed(list(with_.expressions)):
        name = cte.alias_or_name
        reads = [t for t in tree.find_all(exp.Table) if t.name == name and not t.args.get("db")]
        if len(reads) != 1 or _column_aliases(cte) or _column_aliases(reads[0]):
            continue  # read twice, or its columns renamed by a list the subquery would drop
        read = reads[0]
        read.replace(exp.Subquery(this=cte.this.copy(),
                                  alias=exp.TableAlias(this=exp.to_identifier(read.alias or name))))
        cte.pop()
    if not with_.expressions:
        tree.set("with_", None)
    return tree


def _column_aliases(node: exp.Expression) -> list:
    alias = node.args.get("alias")
    return list(alias.columns) if isinstance(alias, exp.TableAlias) else []


def _drop_date_beside_key(tree: exp.Expression) -> exp.Expression:
    """`a.snapshot_date = b.snapshot_date` left out of a join that also matches
    `a.snapshot_key = b.snapshot_key`: the key names its date, so the result is the same. The
    models join on both so DuckDB skips other days' blocks; PostgreSQL multiplies the two
    selectivities as if independent, estimates 2% of the rows such a join returns, and hashes
    the whole history where it should hash the few snapshots joined to it."""
    def columns_equal(term: exp.Expression, column: str) -> frozenset[str] | None:
        if (isinstance(term, exp.EQ) and isinstance(term.this, exp.Column)
                and isinstance(term.expression, exp.Column)
                and term.this.name == column == term.expression.name):
            return frozenset((term.this.table, term.expression.table))
        return None

    for join in tree.find_all(exp.Join):
        on = join.args.get("on")
        if not isinstance(on, exp.And):
            continue
        terms = [cast(exp.Expression, term) for term in on.flatten()]
        keyed = {columns_equal(term, "snapshot_key") for term in terms} - {None}
        kept = [term for term in terms if columns_equal(term, "snapshot_date") not in keyed]
        if len(kept) < len(terms):
            join.set("on", exp.and_(*kept))
    return tree


def _iso_week_start(node: exp.Expression, dialect: str) -> exp.Expression:
    """`date_trunc('week', d)` means the Monday of d's ISO week in DuckDB and PostgreSQL, but sqlglot
    writes BigQuery's TIMESTAMP_TRUNC(d, WEEK) (a Sunday week, on a timestamp) and Snowflake's
    DATE_TRUNC('WEEK', d) (whatever the session's WEEK_START says). Spell the Monday out there."""
    if not isinstance(node, (exp.DateTrunc, exp.TimestampTrunc)) or node.text("unit").upper() != "WEEK":
        return node
    day = node.this
    if dialect == "bigquery":
        return exp.Anonymous(this="DATE_TRUNC", expressions=[day.copy(), exp.var("ISOWEEK")])
    if dialect == "snowflake":
        # DAYOFWEEKISO is 1 on Monday whatever WEEK_START is
        return exp.DateAdd(this=day.copy(), unit=exp.var("DAY"),
                           expression=exp.Sub(this=exp.Literal.number(1), expression=exp.DayOfWeekIso(this=day.copy())))
    return node


def model_params(lost_confirmation_snapshots: int = S.DEFAULT_LOST_CONFIRMATION_SNAPSHOTS,
                 dialect: str = SOURCE_DIALECT) -> dict[str, int]:
    """The values of the models' {placeholders} on a destination of `dialect`."""
    return {"lost_confirmation_snapshots": int(lost_confirmation_snapshots),
            "pair_batch_rows": PAIR_BATCH_ROWS.get(dialect, WAREHOUSE_PAIR_BATCH_ROWS)}


def build(pipeline: dlt.Pipeline,
          lost_confirmation_snapshots: int = S.DEFAULT_LOST_CONFIRMATION_SNAPSHOTS, *,
          full_refresh: bool = False) -> list[str]:
    """Materialize every model in the pipeline's dataset; returns their names.

    Incremental models keep their rows and add what the new snapshots need; `full_refresh`
    builds them from nothing, as a first build does. Returns [] when nothing has been loaded yet
    (no ledger to read).
    """
    dialect = destination_dialect(pipeline)
    models = load_models()
    params = model_params(lost_confirmation_snapshots, dialect)
    tables = SOURCE_TABLES | {m.name for m in models}
    with pipeline.sql_client() as client:
        if not _tables_exist(client):
            logger.info("no snapshots loaded yet: models not built")
            return []
    retired = _retired_models(pipeline, {m.name for m in models})
    _ensure_pulled_at(pipeline)
    with pipeline.sql_client() as client:
        with client.begin_transaction():
            if dialect == "postgres":
                # PostgreSQL multiplies the selectivities of the models' multi-column joins (series +
                # snapshot number + domain) into an estimate of one row and picks nested loops that
                # take tens of minutes on a million rows; these are whole-table analytical joins,
                # where hash joins are right. Fresh statistics help the rest of the plan.
                client.execute_sql("SET LOCAL enable_nestloop = off")
                for table in (S.REF_DOMAINS_TABLE, S.SNAPSHOTS_TABLE):
                    client.execute_sql(f"ANALYZE {client.make_qualified_table_name(table)}")
            # first, so no view of an earlier version is left reading a model rebuilt below
            for name in retired:
                client.execute_sql(_drop(client, name, client.make_qualified_table_name(name)))
            _update_names(client, dialect)
            ensure_competitors_table(client, dialect)  # issue 15: link_gap's input, on any dataset
            for model in models:
                select = transpile(render(model, params), dialect, client.dataset_name, tables)
                materialize(client, model, select, dialect, full_refresh=full_refresh)
    register_in_schema(pipeline, {m.name: m.materialized for m in models})
    return [m.name for m in models]


def _ensure_pulled_at(pipeline: dlt.Pipeline) -> None:
    """Rows loaded before `pulled_at` existed: their table lacks the column until a load adds it,
    and stg_snapshots reads it. Added here the way a load adds it (to dlt's schema, then synced to
    the warehouse, so the next load finds it known), empty: such rows are judged by count."""
    with pipeline.sql_client() as client:
        found = has_column(client, S.REF_DOMAINS_TABLE, S.PULLED_AT)
    schema = _dlt_schema(pipeline)
    if found or schema is None:
        return
    logger.info("adding %s to %s (rows loaded by an earlier version)", S.PULLED_AT, S.REF_DOMAINS_TABLE)
    schema.update_table(new_table(S.REF_DOMAINS_TABLE, columns=[
        {"name": S.PULLED_AT, "data_type": "timestamp", "nullable": True, "timezone": True}]))
    pipeline.schemas.save_schema(schema)
    pipeline.sync_schema()


def materialize(client, model: Model, select: str, dialect: str, *, full_refresh: bool = False) -> None:
    """Build one model from its transpiled SELECT, through a dlt sql client (or one alike)."""
    target = client.make_qualified_table_name(model.name)
    if model.materialized == "incremental":
        materialize_incremental(client, model, select, dialect, full_refresh=full_refresh)
        kind = "TABLE"
    else:
        kind = "VIEW" if model.materialized == "view" else "TABLE"
        client.execute_sql(_drop(client, model.name, target))
        client.execute_sql(f"CREATE {kind} {target} AS {select}")
    if dialect in COMMENT_DIALECTS:
        for statement in _comments(client, model.name, kind):
            client.execute_sql(statement)
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
        client.execute_sql(_drop(client, model.name, target))
    if _table_columns(client, model.name) is None:
        types = {c.name: _sql_type(c.data_type, dialect) for c in catalog()[model.name].columns}
        client.execute_sql(f"CREATE TABLE {target} ("
                           + ", ".join(f"{client.escape_column_name(c)} {types[c]}" for c in columns) + ")")
    key = client.escape_column_name(model.unique_key)
    keys = client.make_qualified_table_name(model.keys_from)
    # NOT EXISTS, never NOT IN: PostgreSQL hashes a NOT IN subquery only while it fits work_mem,
    # and beyond rescans it for every row (an outside review: 38 s a count at a year of history,
    # 0.5 s as NOT EXISTS)
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


# --- IDN display names ---------------------------------------------------------------------
def unicode_name(ref_domain: str) -> str:
    """The Unicode display form of a normalized (punycode) domain. Names were validated as IDNA
    when they were loaded, so display needs only the punycode decoding of each xn-- label (the
    idna package's full UTS 46 check costs ~100 µs a name); a label that does not decode shows
    the whole name as it is."""
    labels = []
    for label in ref_domain.split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                return ref_domain
            if label.isascii():  # punycode of plain ASCII is no IDN label
                return ref_domain
        labels.append(label)
    return ".".join(labels)


def _update_names(client, dialect: str) -> None:
    """Add the display form of every xn-- domain in the complete snapshots loaded since the last
    build. Incremental twice over: only the rows of snapshots not read yet (NAMES_READ_TABLE:
    key, finished_at and rows as loaded; a snapshot pulled again is read again), and only names
    not known yet. Reading every row's name each build cached the whole history's names column in
    DuckDB's memory (99 MB at 41 weeks of the year soak) and grew with it."""
    names = client.make_qualified_table_name(NAMES_TABLE)
    read = client.make_qualified_table_name(NAMES_READ_TABLE)
    ledger = client.make_qualified_table_name(S.SNAPSHOTS_TABLE)
    text = exp.DataType.build("text").sql(dialect=dialect)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {names} (ref_domain {text}, ref_domain_unicode {text})")
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {read} AS "
                       f"SELECT snapshot_key, finished_at, rows_loaded FROM {ledger} WHERE 1 = 0")
    fresh = (f"SELECT ledger.snapshot_key, ledger.snapshot_date, ledger.finished_at, ledger.rows_loaded "
             f"FROM {ledger} ledger WHERE ledger.status = 'complete' AND NOT EXISTS (SELECT 1 FROM {read} done "
             "WHERE done.snapshot_key = ledger.snapshot_key AND done.finished_at IS NOT DISTINCT FROM "
             "ledger.finished_at AND done.rows_loaded IS NOT DISTINCT FROM ledger.rows_loaded)")
    # by date as well as key: DuckDB then reads only the new snapshots' blocks
    missing = client.execute_sql(
        f"SELECT DISTINCT loaded.ref_domain FROM {client.make_qualified_table_name(S.REF_DOMAINS_TABLE)} loaded "
        f"INNER JOIN ({fresh}) fresh ON fresh.snapshot_date = loaded.snapshot_date "
        "AND fresh.snapshot_key = loaded.snapshot_key "
        f"WHERE loaded.ref_domain LIKE %s AND NOT EXISTS "
        f"(SELECT 1 FROM {names} known WHERE known.ref_domain = loaded.ref_domain)", "%xn--%") or []
    rows = [(name, unicode_name(name)) for (name,) in missing]
    if rows and dialect == "duckdb":
        # DuckDB parses a long VALUES list slowly (70k names: 3.3 s, bound parameters 37 s); it
        # reads an Arrow table in place
        arrow = pa.table({"ref_domain": [r[0] for r in rows], "ref_domain_unicode": [r[1] for r in rows]})
        connection = client.native_connection
        connection.register("refdomains_new_names", arrow)
        try:
            client.execute_sql(f"INSERT INTO {names} (ref_domain, ref_domain_unicode) "
                               "SELECT ref_domain, ref_domain_unicode FROM refdomains_new_names")
        finally:
            connection.unregister("refdomains_new_names")
        rows = []
    # elsewhere literals in batches, not bound parameters (a thousand a statement bind slowly);
    # quotes are doubled and the values are domain names
    for start in range(0, len(rows), _INSERT_BATCH):
        batch = rows[start:start + _INSERT_BATCH]
        values = ", ".join(f"({_literal(name)}, {_literal(shown)})" for name, shown in batch)
        client.execute_sql(f"INSERT INTO {names} (ref_domain, ref_domain_unicode) VALUES {values}")
    client.execute_sql(f"DELETE FROM {read} WHERE snapshot_key IN (SELECT snapshot_key FROM ({fresh}) fresh)")
    client.execute_sql(f"INSERT INTO {read} (snapshot_key, finished_at, rows_loaded) "
                       f"SELECT snapshot_key, finished_at, rows_loaded FROM ({fresh}) fresh")
    if dialect in COMMENT_DIALECTS:
        for table in (NAMES_TABLE, NAMES_READ_TABLE):
            for statement in _comments(client, table, "TABLE"):
                client.execute_sql(statement)


# --- documentation -------------------------------------------------------------------------
def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comments(client, name: str, kind: str) -> list[str]:
    """COMMENT ON the model and each of its columns, from sql/models.toml."""
    doc = catalog()[name]
    target = client.make_qualified_table_name(name)
    statements = [f"COMMENT ON {kind} {target} IS {_literal(doc.description)}"]
    statements += [f"COMMENT ON COLUMN {target}.{client.escape_column_name(c.name)} IS {_literal(c.description)}"
                   for c in doc.columns]
    return statements


def schema_table(name: str, materialized: str) -> TTableSchema:
    """A model as a dlt schema table.

    write_disposition "skip": dlt never loads into it; no `seen-data` mark: dlt's drop and refresh
    (`dlt pipeline drop`, refresh="drop_sources") take it out of the schema but never DROP it in
    the warehouse, where it may be a view that a DROP TABLE would fail on. A load only creates or
    alters the tables it has data for, so it never touches a model; the next build puts it back.
    """
    doc = catalog()[name]
    table = new_table(name, write_disposition="skip", resource=name,
                      columns=[{"name": c.name, "data_type": cast(TDataType, c.data_type), "nullable": True,
                                "description": c.description} for c in doc.columns])
    table["description"] = doc.description
    # dlt keeps "x-" hints in a table schema, but its TypedDict has no key for them
    table[MODEL_HINT] = {"materialized": materialized}  # type: ignore[literal-required]
    return table


def register_in_schema(pipeline: dlt.Pipeline, materialized: dict[str, str]) -> None:
    """Make the built models known to the pipeline's dlt schema, locally and in the warehouse's
    `_dlt_version`, so `pipeline.dataset()` and a fresh `dlt.dataset(...)` list and read them."""
    schema = _dlt_schema(pipeline)
    if schema is None:
        logger.warning("the pipeline has no dlt schema yet: models are not registered with dlt")
        return
    wanted = {NAMES_TABLE: "table", NAMES_READ_TABLE: "table", **materialized}
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


def _dlt_schema(pipeline: dlt.Pipeline) -> Schema | None:
    if pipeline.default_schema_name is None:
        pipeline.sync_destination()  # a fresh runner: the schema is in the warehouse
    return pipeline.default_schema if pipeline.default_schema_name is not None else None


def _retired_models(pipeline: dlt.Pipeline, current: set[str]) -> list[str]:
    """Models an earlier version built and registered that sql/ no longer has (renamed or
    removed): the build drops them, so a warehouse holds no stale view of rows that moved on.
    Only what the schema marks as a model is touched, never a user's own table or view."""
    schema = _dlt_schema(pipeline)
    if schema is None:
        return []
    return sorted(name for name, table in schema.tables.items()
                  if MODEL_HINT in table and name not in current and name not in (NAMES_TABLE, NAMES_READ_TABLE))


def _described(table: TTableSchema | None) -> Any:
    if table is None:
        return None
    return (table.get("description"), table.get("write_disposition"), table.get("resource"), table.get(MODEL_HINT),
            [(c["name"], c.get("data_type"), c.get("description")) for c in table["columns"].values()])


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
