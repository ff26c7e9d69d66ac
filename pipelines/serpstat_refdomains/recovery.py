"""What a killed run left behind, finished before a new run plans: its load packages loaded,
and the rows a replayed load job wrote twice collapsed (docs/operations.md, "Reruns, forcing and recovery")."""

from __future__ import annotations

import logging

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.pipeline.exceptions import PipelineStepFailed

from . import ledger
from .constants import REF_DOMAINS_TABLE
from .contract import SNAPSHOT_KEY
from .errors import first_line, unwrap
from .reconnect import collapse_identical_rows, reconnecting

logger = logging.getLogger(__name__)


def finish_interrupted_load(pipeline: dlt.Pipeline) -> None:
    """Load what a killed run had already fetched and packaged, before planning (again on a fresh
    connection if one drops: a package's completed jobs are not run again).

    Otherwise dlt would load that package in place of the next snapshot's data (and drop the
    latter), and the snapshot it holds would be fetched and paid for again.
    """
    if pipeline.has_pending_data:
        logger.warning("finishing the load that an interrupted run left behind")
        if pipeline.list_normalized_load_packages():
            # whole packages first: a broken one below must not cost them
            reconnecting(pipeline, pipeline.load)
        if pipeline.list_extracted_load_packages():
            try:
                pipeline.normalize()
            except PipelineStepFailed as error:
                # killed while dlt was still writing the package: nothing of it can load, and a
                # snapshot without its ledger row is fetched again anyway
                logger.warning("dropping a package an interrupted run left half-written (%s)",
                               first_line(unwrap(error)))
                pipeline.abort_packages()
        reconnecting(pipeline, pipeline.load)
        repair_replayed_snapshots(pipeline)
        ledger.repair_replayed_attempts(pipeline)


def repair_replayed_snapshots(pipeline: dlt.Pipeline) -> list[str]:
    """Collapse the rows a replayed load job wrote twice; returns the snapshot keys repaired.

    A job that ran before a crash but was not yet marked done runs again when its package is
    loaded; for ref_domains that copies the rows into staging a second time, and the merge (on
    the snapshot key alone, see source.REF_DOMAINS_HINTS) writes them twice. The copies are
    identical, so DISTINCT restores the snapshot exactly, one key per transaction.
    """
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(REF_DOMAINS_TABLE)
            doubled = [row[0] for row in client.execute_sql(
                f"SELECT snapshot_key FROM {table} GROUP BY snapshot_key "
                "HAVING count(*) > count(DISTINCT ref_domain)") or []]
            scratch = client.make_qualified_table_name("_ref_domains_repair")
            for key in doubled:
                logger.warning("%s: rows written twice by a replayed load job; collapsing them", key)
                collapse_identical_rows(client, table, f"{SNAPSHOT_KEY} = %s", [key], scratch)
            return doubled
    except DatabaseUndefinedRelation:
        return []
