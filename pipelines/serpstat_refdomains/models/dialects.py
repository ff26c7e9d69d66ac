"""The models' SQL for each warehouse: written once in DuckDB's dialect, qualified with the
dataset and transpiled by sqlglot, with the few rewrites a dialect needs to mean the same, or to
be planned well, written out here with their reasons."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, UnsupportedError

# The dialect every model, data test and runner statement in sql/ is written in.
SOURCE_DIALECT = "duckdb"


def literal(text: str) -> str:
    """A SQL string literal: quotes doubled (the values are descriptions and domain names)."""
    return "'" + text.replace("'", "''") + "'"


def transpile(sql: str, dialect: str, dataset: str, tables: AbstractSet[str]) -> str:
    """The SELECT for `dialect`, with our tables qualified by `dataset`; raises on anything
    sqlglot cannot express in that dialect."""
    return _transpiled(sql, dialect, dataset, frozenset(tables))


# Parsing and writing a model's SQL is most of a small build's time on DuckDB (sqlglot, in
# Python): a process that builds more than once (a scheduler's worker, the test suite) writes
# each model's SQL once. The result is a string, so no caller can change what is kept.
@lru_cache(maxsize=1024)
def _transpiled(sql: str, dialect: str, dataset: str, tables: frozenset[str]) -> str:
    return generate(rewritten(sql, dialect, dataset, tables), dialect)


def rewritten(sql: str, dialect: str, dataset: str, tables: AbstractSet[str]) -> exp.Expr:
    """transpile()'s tree before it is written out, for a caller that wraps it in more SQL."""
    tree = sqlglot.parse_one(sql, read=SOURCE_DIALECT)
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    for table in tree.find_all(exp.Table):
        if table.name in tables and table.name not in ctes and not table.args.get("db"):
            table.set("db", exp.to_identifier(dataset))
    tree = _inline_imports(tree).transform(lambda node: _epoch_micros(_iso_week_start(node, dialect), dialect))
    if dialect == "postgres":
        tree = _inline_single_use_ctes(_drop_date_beside_key(tree))
    return tree


def generate(tree: exp.Expr, dialect: str) -> str:
    return tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, comments=False)


def _inline_imports(tree: exp.Expr) -> exp.Expr:
    """Each import CTE (`rows as (select * from a_table)`, how a model names what it reads) is
    replaced by its table, read under the import's name. An import is a name, not a computation,
    so a model may read one twice; DuckDB and PostgreSQL would materialize a CTE read twice,
    copying the whole table it names before reading it."""
    with_ = tree.args.get("with_")
    if with_ is None or any(w is not with_ for w in tree.find_all(exp.With)):
        return tree  # none, or nested WITHs whose names could shadow these
    for cte in list(with_.expressions):
        name, body = cte.alias_or_name, cte.this
        from_ = body.args.get("from_") if isinstance(body, exp.Select) else None
        source = from_.this if from_ is not None else None
        if (not isinstance(source, exp.Table) or source.name == name or source.alias or _column_aliases(cte)
                or [type(e) for e in body.expressions] != [exp.Star]
                or {key for key, value in body.args.items() if value} != {"expressions", "from_"}):
            continue  # not a bare `select * from table`: a computation
        reads = [t for t in tree.find_all(exp.Table) if t.name == name and not t.args.get("db")]
        if any(_column_aliases(read) for read in reads):
            continue
        for read in reads:
            table = source.copy()
            table.set("alias", exp.TableAlias(this=exp.to_identifier(read.alias or name)))
            read.replace(table)
        cte.pop()
    if not with_.expressions:
        tree.set("with_", None)
    return tree


def _inline_single_use_ctes(tree: exp.Expression) -> exp.Expression:
    """Each CTE read once becomes a subquery in its place (the last first, so the ones it reads
    follow it in). PostgreSQL never pulls a view whose query has a WITH into the query that reads
    it: every read of stg_ref_domains computed the view over the whole history before the
    reader's join could narrow it to the snapshots it wanted. A subquery without WITH is pulled
    up and planned with its reader. CTEs read twice stay."""
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
    selectivities as if independent, underestimates the rows such a join returns, and hashes
    the whole history where it should hash the few snapshots joined to it. Joining on the key
    alone everywhere slows DuckDB instead (bench/README.md): the adaptation is PostgreSQL's."""
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


# `epoch_us(t)`, DuckDB's whole microseconds since 1970-01-01 UTC of a timestamp with time zone, in
# each dialect: a key built from a time must not depend on an engine's rounding (`epoch(t)` is
# fractional seconds on DuckDB, whole seconds as Spark's UNIX_TIMESTAMP, and TIME_TO_UNIX, which
# BigQuery and ClickHouse lack). Each spelling is an integer, exact to the microsecond.
_EPOCH_MICROS = {
    "duckdb": "EPOCH_US({t})",
    "motherduck": "EPOCH_US({t})",
    # EXTRACT(EPOCH ...) is numeric since PostgreSQL 14 (exact); before it, a double whose
    # rounding to the microsecond is still exact for this century's timestamps
    "postgres": "CAST(ROUND(EXTRACT(EPOCH FROM {t}) * 1000000) AS BIGINT)",
    "redshift": "DATEDIFF(MICROSECOND, CAST('1970-01-01 00:00:00+00' AS TIMESTAMPTZ), {t})",
    "spark": "UNIX_MICROS({t})",
    "databricks": "UNIX_MICROS({t})",
    "bigquery": "UNIX_MICROS({t})",
    "snowflake": "DATE_PART(EPOCH_MICROSECOND, {t})",
    "tsql": "DATEDIFF_BIG(MICROSECOND, CAST('1970-01-01 00:00:00+00:00' AS DATETIMEOFFSET), {t})",
    "clickhouse": "toUnixTimestamp64Micro({t})",
    # Trino's timestamps (Athena's too) have no function to whole microseconds: from seconds, rounded
    "athena": "CAST(ROUND(TO_UNIXTIME({t}) * 1000000) AS BIGINT)",
    "trino": "CAST(ROUND(TO_UNIXTIME({t}) * 1000000) AS BIGINT)",
}


def _epoch_micros(node: exp.Expression, dialect: str) -> exp.Expression:
    """`epoch_us(t)` spelled out for `dialect` (see _EPOCH_MICROS); a dialect without a spelling
    raises, rather than be given a function sqlglot guesses."""
    if not (isinstance(node, exp.UnixMicros)
            or (isinstance(node, exp.Anonymous) and node.name.upper() == "EPOCH_US")):
        return node
    argument = node.this if isinstance(node, exp.UnixMicros) else node.expressions[0]
    template = _EPOCH_MICROS.get(dialect)
    if template is None:
        raise UnsupportedError(f"epoch_us() has no spelling for dialect {dialect!r}: add one to _EPOCH_MICROS")
    spelled = sqlglot.parse_one(template.format(t="__t__"), read=dialect)
    # the argument as a tree, so it is written out in the dialect with the rest
    return spelled.transform(lambda n: argument.copy() if isinstance(n, exp.Column) and n.name == "__t__" else n)
