"""The models' documentation in Markdown, written from their doc files: docs/models.md, every model
with its columns and data tests, and the README's short table of models (between its markers).
`make docs` writes both (`python -m serpstat_refdomains.models.docs [repository]`); a test fails
when either differs from what the doc files say."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from .catalog import RUNNER_TABLES, ModelDoc, catalog
from .graph import LAYERS, Model, load_models

REFERENCE = "docs/models.md"
README = "README.md"
README_START = "<!-- models:start -->"
README_END = "<!-- models:end -->"
_GENERATED = "<!-- Written by `make docs` from the doc files in sql/: edit those, not this. -->"


def reference() -> str:
    """docs/models.md: every model, layer by layer in build order."""
    models = {m.name: m for m in load_models()}
    lines = ["# Models", "", _GENERATED, "",
             *_wrapped("Every model the runner builds, layer by layer in build order: what a row is, what it "
                       "means, its columns, and the data tests every build runs on it (a build whose data test "
                       "finds a row fails and is rolled back: README, Operations). Each model is a SELECT in "
                       "`sql/<layer>/<model>.sql`, and what is said of it here is its doc file "
                       "`sql/<layer>/<model>.toml`; the meanings are also in the warehouse (`COMMENT ON`) and "
                       "in the pipeline's dlt schema, where dlt's tools show them (`refdomains dashboard`: "
                       "docs/inspect.md). Every mart row says whose it is: `target_role` (tracked or "
                       "competitor) and, for a competitor, `competitor_of` (stg_target_roles).")]
    for layer in LAYERS:
        lines += ["", f"## {layer.capitalize()}"]
        for doc in _in_build_order(layer):
            lines += ["", *_model_section(doc, models.get(doc.name))]
    return "\n".join(lines) + "\n"


def summary_table() -> str:
    """The README's table: each model, its layer, how it is built, and what a row is."""
    models = {m.name: m for m in load_models()}
    lines = ["| layer | model | built as | one row per … |", "| --- | --- | --- | --- |"]
    for layer in LAYERS:
        for doc in _in_build_order(layer):
            model = models.get(doc.name)
            row = doc.summary.removeprefix("One row per ")
            lines.append(f"| {layer} | [`{doc.name}`]({REFERENCE}#{doc.name}) | {_built_as(model)} | {_cell(row)} |")
    return "\n".join(lines) + "\n"


def with_summary_table(readme: str) -> str:
    """`readme` with the table between its markers replaced by summary_table()."""
    start, end = readme.index(README_START) + len(README_START), readme.index(README_END)
    return readme[:start] + "\n" + summary_table() + readme[end:]


def _in_build_order(layer: str) -> list[ModelDoc]:
    docs = catalog()
    kept = [docs[name] for name in RUNNER_TABLES if docs[name].layer == layer]
    return kept + [docs[m.name] for m in load_models() if m.layer == layer]


def _model_section(doc: ModelDoc, model: Model | None) -> list[str]:
    where = f"sql/{doc.layer}/{doc.name}"
    source = f"[{where}.sql](../{where}.sql)" if model else "kept by the runner, not a SQL file"
    reads = f" · reads {', '.join(f'`{name}`' for name in model.depends_on)}" if model else ""
    lines = [f"### `{doc.name}`", "", *_wrapped(f"*{_built_as(model)}* · {source}{reads}"), "",
             f"{doc.summary}.", "", *_wrapped(doc.description), "", "| column | type | description |",
             "| --- | --- | --- |"]
    lines += [f"| `{c.name}` | {c.data_type} | {_cell(c.description)} |" for c in doc.columns]
    tests = _data_tests(doc)
    if tests:
        lines += ["", "Data tests:", *[f"- {test}" for test in tests]]
    return lines


def _data_tests(doc: ModelDoc) -> list[str]:
    tests = []
    if doc.unique_key:
        tests.append(f"unique: ({', '.join(f'`{c}`' for c in doc.unique_key)})")
    not_null = [f"`{c.name}`" for c in doc.columns if c.not_null]
    if not_null:
        tests.append(f"not null: {', '.join(not_null)}")
    tests += [f"`{c.name}` in {', '.join(c.accepted_values)}" for c in doc.columns if c.accepted_values]
    tests += [f"`{a.name}`: {a.description}" for a in doc.assertions]
    return tests


def _built_as(model: Model | None) -> str:
    return model.materialized if model else "table (runner)"


def _wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, 100, break_long_words=False, break_on_hyphens=False)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def main(argv: list[str]) -> int:
    """Write docs/models.md and the README's table in the repository at argv[0] (default: here)."""
    root = Path(argv[0]) if argv else Path.cwd()
    (root / REFERENCE).write_text(reference(), encoding="utf-8")
    readme = root / README
    readme.write_text(with_summary_table(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {REFERENCE} and the models table of {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
