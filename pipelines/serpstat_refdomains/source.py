"""The dlt source `serpstat`: referring-domain snapshots and their ledger.

Tables (README: Tables):
- `ref_domains`: one row per referring domain per snapshot.
- `snapshots`: the ledger, one row per (target_domain, search_type, snapshot_kind, snapshot_date):
  the latest outcome, which always agrees with the snapshot's rows.
- `snapshot_attempts`: append-only, one row per fetch attempt, whatever became of it: what each
  attempt cost (a merged ledger row keeps only the latest attempt's credits).

`refdomains run` (pipeline.py) loads one snapshot per load package through `ref_domains_resource`,
so that a failure or a crash costs at most the snapshot in flight; `serpstat()` is the plain dlt
source for users who compose their own pipeline.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable, Iterable, Iterator, Sequence

import dlt
import pyarrow as pa
from dlt.extract.resource import DltResource

from . import constants as S
from .client import SerpstatClient
from .config import SerpstatSourceConfiguration, parse_date
from .paging import FetchStats, SnapshotFetcher, SnapshotSpec
from .prefetch import Prefetcher
from .rows import describe_nulled

# delete-insert on ONE synthetic key column: a rerun of a snapshot replaces exactly its rows.
# Compound merge keys are concatenated before comparison in some dlt code paths (dlt#4244), so
# ("a.com", "bc") could match ("a.comb", "c"); `snapshot_key` joins its parts with "|", which no
# domain, search type, kind or date contains.
WRITE_DISPOSITION = {"disposition": "merge", "strategy": "delete-insert"}
SNAPSHOT_KEY = "snapshot_key"

SNAPSHOTS_SCHEMA = pa.schema([
    pa.field("snapshot_key", pa.string(), nullable=False),  # the merge key: never null
    ("target_domain", pa.string()),
    ("search_type", pa.string()),
    ("snapshot_kind", pa.string()),
    ("snapshot_date", pa.date32()),
    ("filter_hash", pa.string()),
    ("complex_filter", pa.string()),
    ("status", pa.string()),
    ("expected_total", pa.int64()),
    ("rows_loaded", pa.int64()),
    ("requests", pa.int64()),
    ("credits_spent", pa.int64()),
    ("credits_left", pa.int64()),
    ("rows_rejected", pa.int64()),
    ("metrics_nulled", pa.int64()),
    ("partitions", pa.int64()),
    ("partition_plan", pa.string()),  # leaf partitions as JSON, so the next pull starts from them
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("error", pa.string()),
])

ATTEMPTS_SCHEMA = pa.schema([
    pa.field("snapshot_key", pa.string(), nullable=False),
    ("target_domain", pa.string()),
    ("search_type", pa.string()),
    ("snapshot_kind", pa.string()),
    ("snapshot_date", pa.date32()),
    ("filter_hash", pa.string()),
    ("status", pa.string()),
    ("requests", pa.int64()),
    ("credits_spent", pa.int64()),
    ("rows_loaded", pa.int64()),
    ("started_at", pa.timestamp("us", tz="UTC")),
    ("finished_at", pa.timestamp("us", tz="UTC")),
    ("error", pa.string()),
])

# dlt runs a load job again when a crash hits after the job ran but before it was marked done;
# the staging table then holds the rows twice. A primary key makes delete-insert deduplicate
# staging, so a replayed job cannot double a snapshot. (snapshot_key, ref_domain) is safe from
# the concatenation issue above: every snapshot_key ends in a full YYYY-MM-DD date, so no key is
# a proper prefix of another.
REF_DOMAINS_PRIMARY_KEY = (SNAPSHOT_KEY, "ref_domain")

# Table hints travel with the items: one resource writes both tables, and hints set on the
# resource itself would give the ledger the rows' primary key columns too.
# With the primary key, dlt's delete-insert joins the whole table on (key AND domain) OR key and
# numbers staging rows: the largest cost of a load, growing with the history (0.35 s a snapshot
# at 1M rows). `refdomains run` therefore merges on the key alone and repairs the one case the
# primary key guards against, a replayed job, where it can happen: when it finishes an
# interrupted load (pipeline.repair_replayed_snapshots). The plain source keeps the primary key.
REF_DOMAINS_HINTS = dlt.mark.make_hints(
    table_name=S.REF_DOMAINS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
)
# dlt's merge_key delete is `WHERE EXISTS (SELECT … FROM staging)`. PostgreSQL plans it before the
# staging table has statistics, guesses that half the history matches, and scans all of it for
# every snapshot: a weekly run got slower with every week of history. The same delete written as
# `= ANY (ARRAY(subquery))` reads the staging keys once (an InitPlan) and then the snapshot_key
# index (warehouse.ensure_snapshot_key_index): 0.39 s instead of 2.7 s when a 54k-row snapshot
# replaces its rows in 5.4M, ~10 ms instead of ~0.7 s for a new snapshot. DuckDB runs the same
# condition as a filter on the key column (0.12 s instead of 0.48 s at 5.4M rows). dlt accepts it
# as the merge's destination scope; other destinations keep the merge key.
SCOPED_WRITE_DISPOSITION = {
    **WRITE_DISPOSITION,
    "destination_scope": f"{SNAPSHOT_KEY} = ANY (ARRAY(SELECT DISTINCT {SNAPSHOT_KEY} FROM {{staging_table}}))",
}
SCOPED_MERGE_DESTINATIONS = ("duckdb", "postgres")
# the scope replaces the merge key (dlt warns on every load when a table has both), so the key's
# hint is switched off explicitly: a table created with it keeps it in its stored schema otherwise
REF_DOMAINS_SCOPED_HINTS = dlt.mark.make_hints(
    table_name=S.REF_DOMAINS_TABLE, write_disposition=SCOPED_WRITE_DISPOSITION,
    columns=[{"name": SNAPSHOT_KEY, "data_type": "text", "nullable": False, "merge_key": False}],
)
REF_DOMAINS_DEDUPLICATED_HINTS = dlt.mark.make_hints(
    table_name=S.REF_DOMAINS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
    primary_key=REF_DOMAINS_PRIMARY_KEY,
)
SNAPSHOTS_HINTS = dlt.mark.make_hints(
    table_name=S.SNAPSHOTS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
    primary_key=SNAPSHOT_KEY,
)
# Append: every attempt is a fact of its own (a failed --force of a complete snapshot spends
# credits while the ledger rightly keeps describing the complete one).
ATTEMPTS_HINTS = dlt.mark.make_hints(table_name=S.ATTEMPTS_TABLE, write_disposition="append")


class SnapshotNotCommitted(Exception):
    """Raised at the end of a fetch whose result must not replace what is loaded (see `keep`)."""

    def __init__(self, stats: FetchStats) -> None:
        super().__init__(f"snapshot ended {stats.status}; the loaded one is kept")
        self.stats = stats


def _identity(spec: SnapshotSpec) -> dict[str, Any]:
    """The columns that name a snapshot, in the ledger and in its attempts."""
    return {
        "snapshot_key": spec.key,
        "target_domain": spec.target.domain,
        "search_type": spec.target.search_type,
        "snapshot_kind": spec.kind,
        "snapshot_date": spec.snapshot_date,
        "filter_hash": spec.filter_hash,
    }


def ledger_row(spec: SnapshotSpec, stats: FetchStats, status: str | None = None,
               error: str | None = None) -> dict[str, Any]:
    """The ledger row of one fetch. `error` never holds the token: client messages are redacted."""
    reasons = "; ".join(f"{reason} ({n})" for reason, n in stats.reject_reasons.most_common(5))
    message = error if error is not None else stats.error
    if stats.rows_rejected:
        rejected = f"{stats.rows_rejected} rows rejected: {reasons}"
        message = f"{message}; {rejected}" if message else rejected
    nulled = describe_nulled(stats.metrics_nulled, stats.nulled_values)
    if nulled:
        message = f"{message}; {nulled}" if message else nulled
    return {
        **_identity(spec),
        "complex_filter": json.dumps(spec.user_filter) if spec.user_filter else None,
        "status": status or stats.status,
        "expected_total": stats.expected_total,
        "rows_loaded": stats.rows_loaded,
        "requests": stats.requests,
        "credits_spent": stats.credits_spent,
        "credits_left": stats.credits_left,
        "rows_rejected": stats.rows_rejected,
        "metrics_nulled": stats.metrics_nulled,
        "partitions": stats.partitions,
        "partition_plan": stats.partition_plan,
        "started_at": stats.started_at,
        "finished_at": stats.finished_at or dt.datetime.now(dt.timezone.utc),
        "error": message,
    }


def ledger_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=SNAPSHOTS_SCHEMA)


def attempt_row(spec: SnapshotSpec, stats: FetchStats, status: str | None = None, error: str | None = None,
                rows_loaded: int | None = None) -> dict[str, Any]:
    """One fetch attempt: what it asked and what it cost, loaded or not."""
    return {
        **_identity(spec),
        "status": status or stats.status,
        "requests": stats.requests,
        "credits_spent": stats.credits_spent,
        "rows_loaded": stats.rows_loaded if rows_loaded is None else rows_loaded,
        "started_at": stats.started_at,
        "finished_at": stats.finished_at or dt.datetime.now(dt.timezone.utc),
        "error": error if error is not None else stats.error,
    }


def attempts_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=ATTEMPTS_SCHEMA)


def ref_domains_resource(
    fetchers: Iterable[SnapshotFetcher | Prefetcher],
    keep: Callable[[Any], bool] = lambda fetcher: True,
    deduplicate_in_merge: bool = True,
    scoped_merge: bool = False,
) -> DltResource:
    """Rows of each snapshot, then its ledger and attempt rows, as one stream into three tables.

    A row is one referring domain in one snapshot. Write disposition: merge, delete-insert on
    `snapshot_key`, because a snapshot is replaced whole by its rerun (`--force`, or the retry of
    an incomplete one) and must never mix rows of two fetches. The ledger row travels in the same
    load package and table-level merge, so the ledger never describes rows that were not loaded.
    `keep` is asked once a fetch is done; False aborts the load (nothing of it is written).
    `deduplicate_in_merge=False` is for a caller that repairs replayed load jobs itself (see
    REF_DOMAINS_HINTS). `scoped_merge` deletes the replaced rows through the snapshot key's
    index instead (see SCOPED_WRITE_DISPOSITION); only for SCOPED_MERGE_DESTINATIONS.
    """
    if deduplicate_in_merge:
        hints = REF_DOMAINS_DEDUPLICATED_HINTS
    else:
        hints = REF_DOMAINS_SCOPED_HINTS if scoped_merge else REF_DOMAINS_HINTS

    def rows() -> Iterator[Any]:
        for fetcher in fetchers:
            for table in fetcher.tables():
                yield dlt.mark.with_hints(table, hints)
            if not keep(fetcher):
                raise SnapshotNotCommitted(fetcher.stats)
            yield dlt.mark.with_hints(ledger_table([ledger_row(fetcher.spec, fetcher.stats)]), SNAPSHOTS_HINTS)
            yield dlt.mark.with_hints(attempts_table([attempt_row(fetcher.spec, fetcher.stats)]), ATTEMPTS_HINTS)

    if scoped_merge and not deduplicate_in_merge:
        return dlt.resource(rows, name=S.REF_DOMAINS_TABLE, table_name=S.REF_DOMAINS_TABLE,
                            write_disposition=SCOPED_WRITE_DISPOSITION)
    return dlt.resource(rows, name=S.REF_DOMAINS_TABLE, table_name=S.REF_DOMAINS_TABLE,
                        write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY)


def snapshots_resource(rows: Sequence[dict[str, Any]], attempts: Sequence[dict[str, Any]] = ()) -> DltResource:
    """Ledger and attempt rows alone: a snapshot that failed or was skipped has no rows to carry them.

    Write dispositions: the ledger merges (delete-insert on `snapshot_key`: one row per snapshot,
    the latest outcome); attempts append. Both go in one load package.
    """
    def outcome() -> Iterator[Any]:
        if rows:
            yield dlt.mark.with_hints(ledger_table(rows), SNAPSHOTS_HINTS)
        if attempts:
            yield dlt.mark.with_hints(attempts_table(attempts), ATTEMPTS_HINTS)

    # hints travel with the items (see REF_DOMAINS_HINTS): the attempts must not get the ledger's keys
    return dlt.resource(outcome, name=S.SNAPSHOTS_TABLE)


@dlt.source(name="serpstat", max_table_nesting=0, spec=SerpstatSourceConfiguration)
def serpstat(
    domains: Any = dlt.config.value,
    api_token: str = dlt.secrets.value,
    api_url: str = dlt.config.value,
    search_type: str = dlt.config.value,
    complex_filter: Any = dlt.config.value,
    page_size: int = dlt.config.value,
    requests_per_second: float = dlt.config.value,
    snapshot_date: str | None = dlt.config.value,
    kind: str = dlt.config.value,
    config: SerpstatSourceConfiguration = None,  # type: ignore[assignment]
) -> DltResource:
    """Snapshots of the referring domains of every configured domain, as one load.

    Args:
        domains, api_token, api_url, search_type, complex_filter, page_size, requests_per_second,
        snapshot_date, kind: as `config.SerpstatSourceConfiguration` declares and documents them;
            dlt resolves those not passed from [sources.serpstat] in .dlt/*.toml or the environment.
        config: filled in by dlt: every setting resolved, the passed ones included.

    This source neither skips completed snapshots nor isolates targets: `refdomains run` does,
    by loading each snapshot through `ref_domains_resource` on its own.
    """
    settings = config.validate(need_token=True)
    if kind not in S.KINDS:
        raise ValueError(f"kind {kind!r} is unknown: use one of {', '.join(S.KINDS)}")
    day = parse_date(snapshot_date, "snapshot_date")
    client = SerpstatClient(config.token, api_url=settings.api_url,
                            requests_per_second=settings.requests_per_second)
    fetchers = [
        SnapshotFetcher(client, SnapshotSpec(target, kind, day, settings.complex_filter, settings.filter_hash,
                                             settings.page_size))
        for target in settings.targets
    ]
    return ref_domains_resource(fetchers)
