"""The models' data tests, run by every build on the user's own data, like `dbt build`.

Each model's doc file declares them: `unique_key` (no two rows share these columns), a column's
`not_null` and `accepted_values`, and assertions written as SQL that select the rows breaking
them. The build runs them inside its transaction once every model is built, in build order; the
first test that finds a row raises ModelTestFailed, which rolls the whole build back, so the
models stay as the previous build left them. A model's column tests share one scan of it; a
test is run on its own only to name the one that failed.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import lru_cache

import sqlglot
from sqlglot import exp

from ..errors import ModelTestFailed
from .catalog import ModelDoc, catalog
from .dialects import SOURCE_DIALECT, generate, literal, rewritten
from .graph import render_sql

logger = logging.getLogger(__name__)
# an example row is shown up to this length, so the error stays one readable line
_EXAMPLE_CHARS = 300


@dataclass(frozen=True)
class DataTest:
    model: str
    name: str  # as the error and docs/models.md name it
    sql: str  # a SELECT of the rows that break the test: DuckDB's dialect, names bare
    columns: tuple[str, ...] = ()  # the columns of `select *` from the model, to name an example's values


def data_tests(doc: ModelDoc, params: dict[str, int]) -> tuple[DataTest | None, list[DataTest], list[DataTest]]:
    """A model's data tests: one scan for all its column tests (None without any), each column
    test on its own, and its other tests."""
    conditions = []
    for column in doc.columns:
        if column.not_null:
            conditions.append((f"not_null({column.name})", f"{column.name} is null"))
        if column.accepted_values:
            values = ", ".join(literal(value) for value in column.accepted_values)
            conditions.append((f"accepted_values({column.name})", f"{column.name} not in ({values})"))
    names = tuple(c.name for c in doc.columns)
    columns = [DataTest(doc.name, name, f"select * from {doc.name} where {condition}", names)
               for name, condition in conditions]
    scan = DataTest(doc.name, "column tests", f"select * from {doc.name} where "
                    + " or ".join(f"({condition})" for _, condition in conditions), names) if conditions else None
    others = []
    if doc.unique_key:
        key = ", ".join(doc.unique_key)
        others.append(DataTest(doc.name, f"unique_key({key})", f"select {key}, count(*) as rows_with_the_key "
                                                               f"from {doc.name} group by {key} having count(*) > 1"))
    others += [DataTest(doc.name, a.name, render_sql(f"{doc.name} data test {a.name}", a.sql, params))
               for a in doc.assertions]
    return scan, columns, others


def run_data_tests(client, names: Iterable[str], dialect: str, params: dict[str, int],
                   tables: AbstractSet[str]) -> int:
    """Run the data tests of the models `names`, in that order; raises ModelTestFailed at the
    first that finds a row. Returns how many tests ran."""
    started, ran = time.monotonic(), 0
    for name in names:
        scan, columns, others = data_tests(catalog()[name], params)
        ran += len(columns) + len(others)
        if scan is not None and _failing(client, scan, dialect, tables):
            for test in columns:
                _check(client, test, dialect, tables)
        for test in others:
            _check(client, test, dialect, tables)
    logger.info("data tests: %d passed in %.2fs", ran, time.monotonic() - started)
    return ran


def _check(client, test: DataTest, dialect: str, tables: AbstractSet[str]) -> None:
    count = _failing(client, test, dialect, tables)
    if count:
        offending = _offending(test.sql, dialect, client.dataset_name, tables)
        example = client.execute_sql(generate(exp.select("*").from_(offending).limit(1), dialect))
        raise ModelTestFailed(test.model, test.name, count, _example(test, example[0] if example else ()))


def _failing(client, test: DataTest, dialect: str, tables: AbstractSet[str]) -> int:
    rows = client.execute_sql(_count_sql(test.sql, dialect, client.dataset_name, frozenset(tables)))
    return int(rows[0][0]) if rows else 0


@lru_cache(maxsize=1024)  # written once a process, as dialects.transpile is
def _count_sql(sql: str, dialect: str, dataset: str, tables: frozenset[str]) -> str:
    """The count of a data test's offending rows."""
    counted = exp.select(exp.Count(this=exp.Star()).as_("failing"))
    return generate(counted.from_(_offending(sql, dialect, dataset, tables)), dialect)


def _offending(sql: str, dialect: str, dataset: str, tables: AbstractSet[str]) -> exp.Subquery:
    return exp.Subquery(this=rewritten(sql, dialect, dataset, tables),
                        alias=exp.TableAlias(this=exp.to_identifier("offending")))


def _shown(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.date) else repr(value)


def _example(test: DataTest, row: tuple) -> str:
    """A row as `column=value, ...`, the columns named as the test's SELECT names them."""
    tree = sqlglot.parse_one(test.sql, read=SOURCE_DIALECT)
    names = list(test.columns) or (tree.named_selects if isinstance(tree, exp.Select) else [])
    if "*" in names or len(names) != len(row):
        names = [f"#{n}" for n in range(1, len(row) + 1)]
    text = ", ".join(f"{name}={_shown(value)}" for name, value in zip(names, row, strict=True))
    return text if len(text) <= _EXAMPLE_CHARS else text[:_EXAMPLE_CHARS - 1] + "…"
