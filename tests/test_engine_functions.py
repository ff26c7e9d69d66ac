"""No model calls a function its warehouse lacks. BigQuery has no emulator this project can run,
so every model, transpiled for BigQuery by the runner's own transpile(), is checked call by call
against BigQuery's documented function list (tests/data/bigquery_functions.txt, with its URL):
sqlglot writes a function it has no BigQuery spelling for under a name of its own (DuckDB's
`epoch(t)` became TIME_TO_UNIX, which BigQuery does not have), and its unsupported_level=RAISE
does not catch that. Spark SQL's models are executed, not listed (tests/test_engines_spark.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

from serpstat_refdomains.models import SOURCE_TABLES, load_models, model_params, render, transpile

FUNCTION_LISTS = Path(__file__).parent / "data"
_CALL = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\(")


def documented(name: str) -> frozenset[str]:
    lines = (line.strip() for line in (FUNCTION_LISTS / f"{name}_functions.txt").read_text().splitlines())
    return frozenset(line.upper() for line in lines if line and not line.startswith("#"))


def called_functions(sql: str, dialect: str) -> set[str]:
    """The name of every function call in `sql` as `dialect` writes it (upper-case): each
    function node of sqlglot's tree, written back out, starts with its name and a parenthesis
    (CASE, its WHENs, and operators, which are no calls, do not)."""
    names = set()
    for node in sqlglot.parse_one(sql, read=dialect).find_all(exp.Func):
        if isinstance(node, exp.Anonymous):
            names.add(node.name.upper())
        elif not isinstance(node, (exp.Binary, exp.Connector, exp.Case)) and not (
                isinstance(node, exp.If) and isinstance(node.parent, exp.Case)):  # a WHEN of a CASE
            match = _CALL.match(node.sql(dialect=dialect))
            if match:
                names.add(match.group(1).upper())
    return names


def transpiled_models(dialect: str) -> dict[str, str]:
    models = load_models()
    tables = set(SOURCE_TABLES) | {m.name for m in models}
    return {m.name: transpile(render(m, model_params(2)), dialect, "serpstat", tables) for m in models}


def test_every_bigquery_model_calls_only_documented_functions():
    allowed = documented("bigquery")
    unknown = {name: sorted(called_functions(sql, "bigquery") - allowed)
               for name, sql in transpiled_models("bigquery").items()}
    assert {name: calls for name, calls in unknown.items() if calls} == {}
    # and the check saw the calls it vouches for: the key's integer time, the week's Monday
    calls = set().union(*(called_functions(sql, "bigquery") for sql in transpiled_models("bigquery").values()))
    assert {"UNIX_MICROS", "DATE_TRUNC", "ROW_NUMBER", "STRING_AGG", "COALESCE"} <= calls


def test_the_check_finds_a_function_bigquery_lacks():
    """DuckDB's epoch(), as stg_snapshots used it before its key took integer microseconds:
    sqlglot writes BigQuery's SQL without complaint, and the list refuses it."""
    stg = next(m for m in load_models() if m.name == "stg_snapshots")
    assert "epoch_us(finished_at)" in stg.sql
    old = stg.sql.replace("epoch_us(finished_at)", "epoch(finished_at)")
    sql = transpile(render(stg, {}), "bigquery", "serpstat", set(SOURCE_TABLES))
    old_sql = transpile(old, "bigquery", "serpstat", set(SOURCE_TABLES))
    assert called_functions(old_sql, "bigquery") - documented("bigquery") == {"TIME_TO_UNIX"}
    assert called_functions(sql, "bigquery") - documented("bigquery") == set()


@pytest.mark.parametrize(("sql", "expected"), [
    ("SELECT COALESCE(a, 0) AND b > 1 FROM t", {"COALESCE"}),
    ("SELECT CASE WHEN a THEN 1 WHEN b THEN 2 END, CAST(a AS INT64) FROM t", {"CAST"}),
    ("SELECT my_udf(a), ROW_NUMBER() OVER (ORDER BY a) FROM t", {"MY_UDF", "ROW_NUMBER"}),
])
def test_calls_are_named_as_written(sql, expected):
    assert called_functions(sql, "bigquery") == expected
