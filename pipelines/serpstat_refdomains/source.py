"""The dlt source `serpstat`: referring-domain snapshots and their ledger.

Tables (docs/data.md):
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

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import dlt
from dlt.common.schema.typing import TDeleteInsertStrategyDict
from dlt.extract.resource import DltResource

from .client import SerpstatClient
from .config import SerpstatSourceConfiguration, known_settings, parse_date, parse_kind
from .config_files import check_written_configuration
from .constants import KINDS, REF_DOMAINS_TABLE
from .contract import SNAPSHOT_KEY, WRITE_DISPOSITION
from .errors import SnapshotNotCommitted
from .ledger import attempt_row, ledger_row, outcome_tables
from .paging import SnapshotFetcher
from .planning import check_today
from .prefetch import Prefetcher
from .spec import SnapshotSpec

# dlt runs a load job again when a crash hits after the job ran but before it was marked done;
# the staging table then holds the rows twice. A primary key makes delete-insert deduplicate
# staging, so a replayed job cannot double a snapshot. (snapshot_key, ref_domain) is safe from
# the concatenation issue of compound keys (see contract.SNAPSHOT_KEY): every snapshot_key ends in
# a full YYYY-MM-DD date, so no key is a proper prefix of another.
REF_DOMAINS_PRIMARY_KEY = (SNAPSHOT_KEY, "ref_domain")

# Table hints travel with the items: one resource writes both tables, and hints set on the
# resource itself would give the ledger the rows' primary key columns too.
# With the primary key, dlt's delete-insert joins the whole table on (key AND domain) OR key and
# numbers staging rows: the largest cost of a load, growing with the history (0.35 s a snapshot
# at 1M rows). `refdomains run` therefore merges on the key alone and repairs the one case the
# primary key guards against, a replayed job, where it can happen: when it finishes an
# interrupted load (recovery.repair_replayed_snapshots). The plain source keeps the primary key.
REF_DOMAINS_HINTS = dlt.mark.make_hints(
    table_name=REF_DOMAINS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
)
# dlt's merge_key delete is `WHERE EXISTS (SELECT … FROM staging)`. PostgreSQL plans it before the
# staging table has statistics, guesses that half the history matches, and scans all of it for
# every snapshot: a weekly run got slower with every week of history. The same delete written as
# `= ANY (ARRAY(subquery))` reads the staging keys once (an InitPlan) and then the snapshot_key
# index (warehouse.ensure_snapshot_key_index): 0.39 s instead of 2.7 s when a 54k-row snapshot
# replaces its rows in 5.4M, ~10 ms instead of ~0.7 s for a new snapshot. DuckDB runs the same
# condition as a filter on the key column (0.12 s instead of 0.48 s at 5.4M rows). dlt accepts it
# as the merge's destination scope; other destinations keep the merge key.
SCOPED_WRITE_DISPOSITION: TDeleteInsertStrategyDict = {
    **WRITE_DISPOSITION,
    "destination_scope": f"{SNAPSHOT_KEY} = ANY (ARRAY(SELECT DISTINCT {SNAPSHOT_KEY} FROM {{staging_table}}))",
}
SCOPED_MERGE_DESTINATIONS = ("duckdb", "postgres")
# the scope replaces the merge key (dlt warns on every load when a table has both), so the key's
# hint is switched off explicitly: a table created with it keeps it in its stored schema otherwise
REF_DOMAINS_SCOPED_HINTS = dlt.mark.make_hints(
    table_name=REF_DOMAINS_TABLE, write_disposition=SCOPED_WRITE_DISPOSITION,
    columns=[{"name": SNAPSHOT_KEY, "data_type": "text", "nullable": False, "merge_key": False}],
)
REF_DOMAINS_DEDUPLICATED_HINTS = dlt.mark.make_hints(
    table_name=REF_DOMAINS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
    primary_key=REF_DOMAINS_PRIMARY_KEY,
)


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
    scoped = scoped_merge and not deduplicate_in_merge
    if scoped:
        hints = REF_DOMAINS_SCOPED_HINTS
    else:
        hints = REF_DOMAINS_DEDUPLICATED_HINTS if deduplicate_in_merge else REF_DOMAINS_HINTS

    def rows() -> Iterator[Any]:
        for fetcher in fetchers:
            for table in fetcher.tables():
                yield dlt.mark.with_hints(table, hints)
            if not keep(fetcher):
                raise SnapshotNotCommitted(fetcher.stats.status)
            yield from outcome_tables([ledger_row(fetcher.spec, fetcher.stats)],
                                      [attempt_row(fetcher.spec, fetcher.stats)])

    # the resource's own table hints agree with its items' (a scoped table has no merge key)
    if scoped:
        return dlt.resource(rows, name=REF_DOMAINS_TABLE, table_name=REF_DOMAINS_TABLE,
                            write_disposition=SCOPED_WRITE_DISPOSITION)
    return dlt.resource(rows, name=REF_DOMAINS_TABLE, table_name=REF_DOMAINS_TABLE,
                        write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY)


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
    # dlt injects it; the annotation stays the plain spec type, which is what dlt reads to build it
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
    check_written_configuration(known_settings())
    settings = config.validate(need_token=True)
    parse_kind(kind, KINDS, "kind")
    day = parse_date(snapshot_date, "snapshot_date")
    check_today(day)  # Serpstat answers with today's index: any other date would file it falsely
    token = config.token
    assert token is not None  # validate(need_token=True) refused a missing one
    client = SerpstatClient(token, api_url=settings.api_url,
                            requests_per_second=settings.requests_per_second)
    fetchers = [
        SnapshotFetcher(client, SnapshotSpec(target, kind, day, settings.complex_filter, settings.filter_hash,
                                             settings.page_size))
        for target in settings.targets
    ]
    return ref_domains_resource(fetchers)
