"""Runs the SQL models of sql/ against the pipeline's destination.

Models are written once, in DuckDB's dialect, as plain SELECTs, one model a file, in layers like
dbt's: sql/staging/ (the loaded tables made readable), sql/intermediate/ (steps shared by several
models) and sql/marts/ (what users query). The runner parses each model with sqlglot, builds them
in the order their references give, qualifies the names with the pipeline's dataset, transpiles
for the destination, materializes every model and runs their data tests inside one transaction;
then it registers them with dlt and documents them in the warehouse.

    graph.py        the models as written: reading sql/, references, build order, parameters
    dialects.py     transpiling for a warehouse, and the rewrites a dialect needs
    materialize.py  a model as a view, a table or an incremental table
    checks.py       the data tests each build runs on the models, from their doc files
    names.py        the donors' display names, a table the runner keeps
    catalog.py      the doc files: meanings for COMMENT ON and the dlt schema, data tests declared
    docs.py         docs/models.md and the README's table of models, from the doc files
    build.py        one build: the transaction, in order
"""

from .build import build, materialize_all
from .catalog import MODEL_HINT, catalog, register_in_schema, schema_table
from .checks import run_data_tests
from .dialects import SOURCE_DIALECT, transpile
from .graph import SOURCE_TABLES, Model, load_models, model_names, model_params, render
from .materialize import materialize
from .names import NAMES_READ_TABLE, NAMES_TABLE, unicode_name

__all__ = [
    "MODEL_HINT",
    "NAMES_READ_TABLE",
    "NAMES_TABLE",
    "SOURCE_DIALECT",
    "SOURCE_TABLES",
    "Model",
    "build",
    "catalog",
    "load_models",
    "materialize",
    "materialize_all",
    "model_names",
    "model_params",
    "register_in_schema",
    "render",
    "run_data_tests",
    "schema_table",
    "transpile",
    "unicode_name",
]
