"""The models as written: one SQL file a model under sql/, in layers like dbt's (staging/,
intermediate/, marts/), each a SELECT in DuckDB's dialect that reads other models and the loaded
tables by their bare names. Here they are read, their references parsed with sqlglot, put in
the order those references give, and their integer parameters filled in."""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from ..constants import COMPETITORS_TABLE, DEFAULT_LOST_CONFIRMATION_SNAPSHOTS, REF_DOMAINS_TABLE, SNAPSHOTS_TABLE
from ..errors import ModelGraphError
from .dialects import SOURCE_DIALECT
from .names import NAMES_TABLE

# The package holding sql/ (shipped in the wheel as package data).
SQL_PACKAGE = "serpstat_refdomains.sql"
_MATERIALIZED = re.compile(r"^--\s*materialized:\s*(view|table|incremental)\s*$", re.MULTILINE)
# An incremental model keeps its rows between builds: `unique_key` names the column that groups
# them, `keys` the model that lists the keys wanted, and `size` the column of `keys` that says
# how much a key's rows cost to compute (see materialize.materialize_incremental).
_UNIQUE_KEY = re.compile(r"^--\s*unique_key:\s*(\w+)\s*$", re.MULTILINE)
_KEYS = re.compile(r"^--\s*keys:\s*(\w+)\s*$", re.MULTILINE)
_SIZE = re.compile(r"^--\s*size:\s*(\w+)\s*$", re.MULTILINE)
_INCREMENTAL = {"unique_key": _UNIQUE_KEY, "keys_from": _KEYS, "size_column": _SIZE}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

# Tables the models read that no SQL file builds: loaded by the pipeline, or kept by the runner.
SOURCE_TABLES = frozenset({REF_DOMAINS_TABLE, SNAPSHOTS_TABLE, NAMES_TABLE, COMPETITORS_TABLE})
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
    keys_from: str | None = None  # incremental: the model listing the keys wanted
    size_column: str | None = None  # incremental: the column of keys_from sizing a key's work


def sql_root() -> Traversable:
    return resources.files(SQL_PACKAGE)


def load_models(root: Traversable | None = None) -> list[Model]:
    """The models under `root` (default: sql/ shipped in the package), in build order: every model
    after the models it reads. The order comes from each model's own table references, so a new
    model is one .sql file in a layer's folder (and its doc file beside it)."""
    models: dict[str, Model] = {}
    for layer, file in layer_files(root if root is not None else sql_root(), ".sql"):
        name = file.name[:-len(".sql")]
        if name in models:
            raise ModelGraphError(f"two SQL models are named {name!r} ({models[name].layer}/ and {layer}/): "
                                  "model names must be unique across sql/")
        text = file.read_text(encoding="utf-8")
        match = _MATERIALIZED.search(text)
        materialized = match.group(1) if match else "table"
        depends_on = _references(name, text)
        incremental = {header: match.group(1) for header, pattern in _INCREMENTAL.items()
                       if materialized == "incremental" and (match := pattern.search(text))}
        if materialized == "incremental" and not ({"unique_key", "keys_from"} <= set(incremental)
                                                  and incremental["keys_from"] in depends_on):
            raise ModelGraphError(f"incremental SQL model {name!r} needs `-- unique_key: <column>` and "
                                  "`-- keys: <model it reads that lists the keys to keep>`")
        models[name] = Model(name=name, materialized=materialized, sql=text, layer=layer, depends_on=depends_on,
                             **incremental)
    return _build_order(models)


def layer_files(folder: Traversable, suffix: str, layer: str = "") -> list[tuple[str, Traversable]]:
    """Every file under `folder` whose name ends in `suffix`, with the layer (folder path) it is in."""
    files = []
    for entry in folder.iterdir():
        if entry.is_dir():
            files += layer_files(entry, suffix, f"{layer}/{entry.name}" if layer else entry.name)
        elif entry.name.endswith(suffix):
            files.append((layer, entry))
    return files


@lru_cache(maxsize=256)  # parsed once a process, however many builds read the models
def _references(name: str, sql: str) -> tuple[str, ...]:
    """The tables a model's SELECT reads, less its own CTEs: what sqlglot parses for transpile()."""
    try:
        tree = sqlglot.parse_one(_PLACEHOLDER.sub("0", sql), read=SOURCE_DIALECT)
    except ParseError as error:
        raise ModelGraphError(f"SQL model {name!r} does not parse: {str(error).splitlines()[0]}") from None
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    return tuple(sorted({table.name for table in tree.find_all(exp.Table)
                         if table.name not in ctes and not table.args.get("db")}))


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
    return render_sql(model.name, model.sql, params)


def render_sql(name: str, sql: str, params: dict[str, int]) -> str:
    """render() for any SQL of the models (a model's, or a data test's), `name` naming it in errors."""
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in params or not isinstance(params[key], int) or isinstance(params[key], bool):
            raise ModelGraphError(f"model {name} needs an integer parameter {key}")
        return str(params[key])
    return _PLACEHOLDER.sub(value, sql)


def model_params(lost_confirmation_snapshots: int = DEFAULT_LOST_CONFIRMATION_SNAPSHOTS) -> dict[str, int]:
    """The values of the models' {placeholders}."""
    return {"lost_confirmation_snapshots": int(lost_confirmation_snapshots)}
