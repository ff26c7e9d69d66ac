"""The tables the pipeline loads and writes, in one place: their columns, types and meanings, and
the snapshot key that names a snapshot everywhere (docs/data.md).

Every layer reads its tables from here: the rows (rows.py) and the ledger (ledger.py) build Arrow
tables of these schemas, the source gives dlt their keys and column descriptions, every models build
writes the descriptions as the warehouse's comments, and `target_competitors` is created from its columns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pyarrow as pa
from dlt.common.schema.typing import TDeleteInsertStrategyDict

from .constants import ATTEMPTS_TABLE, COMPETITORS_TABLE, PULLED_AT, REF_DOMAINS_TABLE, SNAPSHOTS_TABLE

# --- the snapshot key --------------------------------------------------------------------
# A snapshot is replaced whole by its rerun: delete-insert on ONE synthetic key column, for the
# rows and the ledger alike. Compound merge keys are concatenated before comparison in some dlt
# code paths (dlt#4244), so ("a.com", "bc") could match ("a.comb", "c"); the key joins its parts
# with "|", which no domain, search type, kind or date contains, and ends in a full YYYY-MM-DD,
# so no key is a proper prefix of another.
SNAPSHOT_KEY = "snapshot_key"
WRITE_DISPOSITION: TDeleteInsertStrategyDict = {"disposition": "merge", "strategy": "delete-insert"}


def snapshot_key(target_domain: str, search_type: str, kind: str, snapshot_date: dt.date | str) -> str:
    """The single synthetic merge key of a snapshot: `target|search_type|kind|YYYY-MM-DD`."""
    return f"{target_domain}|{search_type}|{kind}|{snapshot_date}"


# --- the tables --------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    arrow: pa.DataType
    description: str
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow, nullable=c.nullable) for c in self.columns])

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def described(self) -> dict[str, str]:
        """Column name -> meaning."""
        return {c.name: c.description for c in self.columns}


_UTC = pa.timestamp("us", tz="UTC")
_KEY = Column(SNAPSHOT_KEY, pa.string(), "The snapshot's key: target_domain|search_type|snapshot_kind|snapshot_date "
              "(the merge key: a rerun replaces exactly these rows)", nullable=False)
_TARGET = Column("target_domain", pa.string(), "The tracked domain (or competitor) the snapshot is of, normalized")
_SEARCH_TYPE = Column("search_type", pa.string(), "domain (the domain alone) / domain_with_subdomains")
_KIND = Column("snapshot_kind", pa.string(), "full (every referring domain) / last_week (Serpstat's last_week "
               "filter: domains it found in the last 7 days)")
_DATE = Column("snapshot_date", pa.date32(), "The date the snapshot is filed under (the day it was pulled, UTC)")
_FILTER = Column("filter_hash", pa.string(), "Fingerprint of the complex_filter the snapshot was pulled with; a "
                 "changed filter starts a new series")

REF_DOMAINS = Table(REF_DOMAINS_TABLE, "One row per referring domain per snapshot, as Serpstat listed it.", (
    _KEY,
    _TARGET,
    _SEARCH_TYPE,
    _DATE,
    _KIND,
    Column("ref_domain", pa.string(), "The referring domain, normalized: lowercase IDNA ASCII (punycode), no "
           "trailing dot", nullable=False),
    Column("domain_from", pa.string(), "The referring domain exactly as the API returned it"),
    Column("registrable_domain", pa.string(), "eTLD+1 of ref_domain (the Public Suffix List bundled with the package)"),
    Column("ref_pages", pa.int64(), "Pages of the referring domain linking to the target (NULL when Serpstat sent "
           "an unusable value)"),
    Column("domain_rank", pa.int64(), "Serpstat Domain Rank of the referring domain, 0-100 (NULL when unusable)"),
    # rows and their ledger row are merged in two transactions: a load cut between them can leave
    # the rows of one pull under the ledger row of another, even as many; the models and the
    # planner compare the two
    Column(PULLED_AT, _UTC, "When the pull that fetched the row started (its ledger row's started_at)"),
))

_STARTED = Column("started_at", _UTC, "When the pull started; its rows carry it as pulled_at")
_FINISHED = Column("finished_at", _UTC, "When the pull ended")
_STATUS = Column("status", pa.string(), "complete / incomplete / failed / skipped_budget / suspect_empty")
_ROWS = Column("rows_loaded", pa.int64(), "Rows of the snapshot loaded into ref_domains")
_REQUESTS = Column("requests", pa.int64(), "Requests sent to Serpstat")
_CREDITS = Column("credits_spent", pa.int64(), "API credits Serpstat billed for them")
_ERROR = Column("error", pa.string(), "Why the snapshot is not complete, and notes on rejected rows or unusable "
                "metrics; never holds the API token")

SNAPSHOTS = Table(SNAPSHOTS_TABLE, "The ledger: one row per snapshot, its latest outcome, which always agrees with "
                  "its rows in ref_domains.", (
    _KEY,
    _TARGET,
    _SEARCH_TYPE,
    _KIND,
    _DATE,
    _FILTER,
    Column("complex_filter", pa.string(), "The complex_filter as JSON; NULL for none"),
    _STATUS,
    Column("expected_total", pa.int64(), "Rows Serpstat reported (summary_info.total, summed over partitions)"),
    _ROWS,
    _REQUESTS,
    _CREDITS,
    Column("credits_left", pa.int64(), "The account's balance after the pull (left_lines)"),
    Column("rows_rejected", pa.int64(), "Rows the API sent that could not be loaded (no usable name); why is in error"),
    Column("metrics_nulled", pa.int64(), "Unusable metric values of loaded rows, loaded as NULL"),
    Column("partitions", pa.int64(), "Partitions the result was read in (more than 1 past Serpstat's depth cap)"),
    Column("partition_plan", pa.string(), "The leaf partitions as JSON, so the next pull starts from them"),
    _STARTED,
    _FINISHED,
    _ERROR,
))

ATTEMPTS = Table(ATTEMPTS_TABLE, "One row per fetch attempt, whatever became of it (append-only): credits here add "
                 "up to what Serpstat charged.", (
    _KEY,
    _TARGET,
    _SEARCH_TYPE,
    _KIND,
    _DATE,
    _FILTER,
    _STATUS,
    _REQUESTS,
    _CREDITS,
    _ROWS,
    _STARTED,
    _FINISHED,
    _ERROR,
))

TARGET_COMPETITORS = Table(COMPETITORS_TABLE, "Configuration, written by every `refdomains run`: each tracked domain "
                           "(a row with a null competitor when it has none) and each of its competitors. link_gap and "
                           "alerts read it.", (
    Column("target_domain", pa.string(), "A tracked domain, normalized"),
    Column("search_type", pa.string(), "The tracked domain's search type"),
    Column("competitor_domain", pa.string(), "One of its competitors, normalized; null for a tracked domain without "
           "competitors"),
    Column("competitor_search_type", pa.string(), "The competitor's search type (its own, else its target's)"),
))

LOADED_TABLES = (REF_DOMAINS, SNAPSHOTS, ATTEMPTS, TARGET_COMPETITORS)
