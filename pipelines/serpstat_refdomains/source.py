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

from typing import Any, Callable, Iterable, Iterator

import dlt
from dlt.extract.resource import DltResource

from . import settings as S
from .client import DEFAULT_API_URL, SerpstatClient
from .config import build_settings, parse_date
from .errors import SnapshotNotCommitted
from .ledger import SNAPSHOT_KEY, WRITE_DISPOSITION, attempt_row, ledger_row, outcome_tables
from .paging import Prefetcher, SnapshotFetcher, SnapshotSpec

# dlt runs a load job again when a crash hits after the job ran but before it was marked done;
# the staging table then holds the rows twice. A primary key makes delete-insert deduplicate
# staging, so a replayed job cannot double a snapshot. (snapshot_key, ref_domain) is safe from
# the concatenation issue of compound keys (see ledger.SNAPSHOT_KEY): every snapshot_key ends in a full YYYY-MM-DD date, so no key is
# a proper prefix of another.
REF_DOMAINS_PRIMARY_KEY = (SNAPSHOT_KEY, "ref_domain")

# Table hints travel with the items: one resource writes both tables, and hints set on the
# resource itself would give the ledger the rows' primary key columns too.
# With the primary key, dlt's delete-insert joins the whole table on (key AND domain) OR key and
# numbers staging rows: the largest cost of a load, growing with the history (0.35 s a snapshot
# at 1M rows). `refdomains run` therefore merges on the key alone and repairs the one case the
# primary key guards against, a replayed job, where it can happen: when it finishes an
# interrupted load (ledger.repair_replayed_snapshots). The plain source keeps the primary key.
REF_DOMAINS_HINTS = dlt.mark.make_hints(
    table_name=S.REF_DOMAINS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
)
REF_DOMAINS_DEDUPLICATED_HINTS = dlt.mark.make_hints(
    table_name=S.REF_DOMAINS_TABLE, write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY,
    primary_key=REF_DOMAINS_PRIMARY_KEY,
)


def ref_domains_resource(
    fetchers: Iterable[SnapshotFetcher | Prefetcher],
    keep: Callable[[Any], bool] = lambda fetcher: True,
    deduplicate_in_merge: bool = True,
) -> DltResource:
    """Rows of each snapshot, then its ledger and attempt rows, as one stream into three tables.

    A row is one referring domain in one snapshot. Write disposition: merge, delete-insert on
    `snapshot_key`, because a snapshot is replaced whole by its rerun (`--force`, or the retry of
    an incomplete one) and must never mix rows of two fetches. The ledger row travels in the same
    load package and table-level merge, so the ledger never describes rows that were not loaded.
    `keep` is asked once a fetch is done; False aborts the load (nothing of it is written).
    `deduplicate_in_merge=False` is for a caller that repairs replayed load jobs itself (see
    REF_DOMAINS_HINTS).
    """
    hints = REF_DOMAINS_DEDUPLICATED_HINTS if deduplicate_in_merge else REF_DOMAINS_HINTS

    def rows() -> Iterator[Any]:
        for fetcher in fetchers:
            for table in fetcher.tables():
                yield dlt.mark.with_hints(table, hints)
            if not keep(fetcher):
                raise SnapshotNotCommitted(fetcher.stats)
            yield from outcome_tables([ledger_row(fetcher.spec, fetcher.stats)],
                                      [attempt_row(fetcher.spec, fetcher.stats)])

    return dlt.resource(rows, name=S.REF_DOMAINS_TABLE, table_name=S.REF_DOMAINS_TABLE,
                        write_disposition=WRITE_DISPOSITION, merge_key=SNAPSHOT_KEY)


@dlt.source(name="serpstat", max_table_nesting=0)
def serpstat(
    domains: Any = dlt.config.value,
    api_token: str = dlt.secrets.value,
    api_url: str = DEFAULT_API_URL,
    search_type: str = S.DEFAULT_SEARCH_TYPE,
    complex_filter: Any = None,
    page_size: int = S.DEFAULT_PAGE_SIZE,
    requests_per_second: float = S.DEFAULT_REQUESTS_PER_SECOND,
    snapshot_date: str | None = None,
    kind: str = "full",
) -> DltResource:
    """Snapshots of the referring domains of every configured domain, as one load.

    Args:
        domains: tracked domains; an item is "example.com" or {query=..., search_type=...}.
        api_token: Serpstat API token (secret).
        api_url: Serpstat endpoint, or the local emulator.
        search_type: default for items without their own.
        complex_filter: a Serpstat complexFilter applied to every pull.
        page_size: rows per request, 1-1000.
        requests_per_second: the plan's rate limit.
        snapshot_date: YYYY-MM-DD the snapshot is filed under (default: today, UTC).
        kind: "full" (every referring domain) or "last_week" (Serpstat's last_week filter).

    This source neither skips completed snapshots nor isolates targets: `refdomains run` does,
    by loading each snapshot through `ref_domains_resource` on its own.
    """
    settings = build_settings(domains=domains, api_url=api_url, search_type=search_type,
                              complex_filter=complex_filter, page_size=page_size,
                              requests_per_second=requests_per_second)
    if kind not in S.KINDS:
        raise ValueError(f"kind {kind!r} is unknown: use one of {', '.join(S.KINDS)}")
    day = parse_date(snapshot_date, "snapshot_date")
    client = SerpstatClient(api_token, api_url=settings.api_url,
                            requests_per_second=settings.requests_per_second)
    fetchers = [
        SnapshotFetcher(client, SnapshotSpec(target, kind, day, settings.complex_filter, settings.filter_hash,
                                             settings.page_size))
        for target in settings.targets
    ]
    return ref_domains_resource(fetchers)
