"""Competitors of a tracked domain (README: Competitors and link gap).

A `domains` item may name its competitors:

    domains = [{query = "mysite.com", competitors = ["rival-a.com", {query = "rival-b.com", search_type = "domain"}]}]

Each competitor is snapshotted like any tracked domain (same kinds, schedule and ledger; its own
series), once however many targets name it. Which target a competitor belongs to is
configuration, which the SQL models cannot read: every run writes it to the table
`target_competitors`, and `link_gap` joins on it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import constants as S

if TYPE_CHECKING:
    import dlt

    from .config import Settings, Target

logger = logging.getLogger(__name__)

TABLE = S.COMPETITORS_TABLE
ITEM_KEYS = ("query", "search_type", "competitors")
COMPETITOR_KEYS = ("query", "search_type")
# (name, dlt data type, meaning): the table's columns, declared once for the DDL and dlt's schema
COLUMNS = (
    ("target_domain", "text", "A tracked domain, normalized"),
    ("search_type", "text", "The tracked domain's search type"),
    ("competitor_domain", "text", "One of its competitors, normalized; null for a tracked domain without competitors"),
    ("competitor_search_type", "text", "The competitor's search type (its own, else its target's)"),
)
DESCRIPTION = ("Configuration, written by every `refdomains run`: each tracked domain (a row with a null competitor "
               "when it has none) and each of its competitors. link_gap and alerts read it.")


@dataclass(frozen=True)
class CompetitorSet:
    """A tracked domain and its competitors, in configuration order."""

    target: Target
    competitors: tuple[Target, ...] = ()


def _fold_www(domain: str) -> str:
    return domain[4:] if domain.startswith("www.") and domain.count(".") > 1 else domain


def parse_competitors(value: Any, target: Target, make_target: Callable[[Any, Any, str], Target]) -> CompetitorSet:
    """The `competitors` of one `domains` item, validated: every mistake is one ConfigError line.

    `make_target(query, search_type, target_domain)` turns a query and search type into a Target (config's
    own rules and messages). A competitor without its own search_type takes its target's, so both
    sides of the gap are counted the same way."""
    from .errors import ConfigError

    if value is None:
        return CompetitorSet(target)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"competitors of {target.domain} must be a list, got {type(value).__name__}: "
                          f"write competitors = [\"rival.com\", {{query = \"rival.org\", search_type = \"domain\"}}]")
    competitors: list[Target] = []
    for item in value:
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(COMPETITOR_KEYS))
            if unknown or "query" not in item:
                reason = f"unknown key {', '.join(map(repr, unknown))}" if unknown else "no 'query'"
                raise ConfigError(f"competitor {item!r} of {target.domain} needs exactly 'query' and optionally "
                                  f"'search_type' ({reason}): write \"rival.com\" or "
                                  "{query = \"rival.com\", search_type = \"domain\"}")
            query, search_type = item["query"], item.get("search_type", target.search_type)
        else:
            query, search_type = item, target.search_type
        competitor = make_target(query, search_type, target.domain)
        if _fold_www(competitor.domain) == _fold_www(target.domain):
            raise ConfigError(f"competitor {competitor.domain} of {target.domain} is the tracked domain itself: "
                              "remove it from competitors")
        if any(c.domain == competitor.domain for c in competitors):
            raise ConfigError(f"competitor {competitor.domain} is listed twice for {target.domain}: keep one")
        competitors.append(competitor)
    return CompetitorSet(target, tuple(competitors))


def as_item(competitor_set: CompetitorSet) -> dict:
    """The `domains` item that configures this set again (for `--domain`, which keeps it whole)."""
    item: dict[str, Any] = {"query": competitor_set.target.domain, "search_type": competitor_set.target.search_type}
    if competitor_set.competitors:
        item["competitors"] = [{"query": c.domain, "search_type": c.search_type} for c in competitor_set.competitors]
    return item


def competitor_only(settings: Settings) -> set[Target]:
    """Series fetched only because a tracked domain names them as competitors."""
    tracked = {s.target for s in settings.competitors}
    return {c for s in settings.competitors for c in s.competitors if c not in tracked}


# --- the table ---------------------------------------------------------------------------
def ensure_table(client, dialect: str) -> None:
    """Create `target_competitors` when missing (a dataset loaded before competitors existed, or
    data written by other means), so link_gap always has its input."""
    from sqlglot import exp

    text = exp.DataType.build("text").sql(dialect=dialect)
    table = client.make_qualified_table_name(TABLE)
    columns = ", ".join(f"{client.escape_column_name(name)} {text}" for name, _, _ in COLUMNS)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")


def record(pipeline: dlt.Pipeline, settings: Settings) -> None:
    """Replace `target_competitors` with this run's configuration, in one transaction.

    The whole configuration, also under `--domain` (config keeps it in `settings.competitors`):
    link_gap then always reads the latest run's competitors, whichever domains it fetched."""
    from .models import destination_dialect

    rows: list[tuple[str, str, str | None, str | None]] = [
        (s.target.domain, s.target.search_type, c.domain, c.search_type)
            for s in settings.competitors for c in s.competitors]
    rows += [(s.target.domain, s.target.search_type, None, None) for s in settings.competitors if not s.competitors]
    with pipeline.sql_client() as client:
        dialect = destination_dialect(pipeline)
        table = client.make_qualified_table_name(TABLE)
        if not client.has_dataset():
            client.create_dataset()
        with client.begin_transaction():
            ensure_table(client, dialect)
            client.execute_sql(f"DELETE FROM {table}")
            names = ", ".join(client.escape_column_name(name) for name, _, _ in COLUMNS)
            for row in rows:
                client.execute_sql(f"INSERT INTO {table} ({names}) VALUES (%s, %s, %s, %s)", *row)
    register(pipeline)


def record_for_run(pipeline: dlt.Pipeline, settings: Settings) -> None:
    """`record`, for a run: a failure is a warning (the snapshots are loaded; the models then
    read the configuration the previous run recorded)."""
    try:
        record(pipeline, settings)
    except Exception as error:  # never costs the run its loaded snapshots
        from .errors import first_line

        logger.debug("recording competitors failed", exc_info=True)
        logger.warning("could not record the competitors in %s (%s): link_gap reads the previous run's",
                       TABLE, first_line(error))


def register(pipeline: dlt.Pipeline) -> None:
    """Declare the table in the pipeline's dlt schema, so `pipeline.dataset()` reads it.

    Write disposition `skip` and no seen-data mark, like the models: dlt never loads, alters or
    drops it (this module writes it)."""
    from dlt.common.schema.utils import new_table

    if pipeline.default_schema_name is None:
        return
    schema = pipeline.default_schema
    if TABLE in schema.tables:
        return
    table = new_table(TABLE, write_disposition="skip", resource=TABLE,
                      columns=[{"name": name, "data_type": kind, "nullable": True, "description": meaning}
                               for name, kind, meaning in COLUMNS])
    table["description"] = DESCRIPTION
    schema.update_table(table)
    pipeline.schemas.save_schema(schema)


def read(pipeline: dlt.Pipeline) -> list[tuple[str, str, str | None, str | None]]:
    """The configuration the latest run recorded; [] when no run has recorded one."""
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(TABLE)
            return [tuple(r) for r in client.execute_sql(
                f"SELECT target_domain, search_type, competitor_domain, competitor_search_type FROM {table} "
                "ORDER BY 1, 2, 3") or []]
    except DatabaseUndefinedRelation:
        return []
