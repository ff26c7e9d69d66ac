"""The donors' display names: the Unicode form of every IDNA (xn--) referring domain, decoded in
Python because no warehouse decodes punycode, and kept by the runner in a table of its own that
stg_ref_domains reads like a loaded table."""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

from ..constants import REF_DOMAINS_TABLE, SNAPSHOTS_TABLE
from .dialects import literal

# Kept by the runner, not by a SQL file: IDNA names decoded in Python.
NAMES_TABLE = "stg_ref_domain_names"
# The snapshots, as loaded, whose rows NAMES_TABLE has read: a build reads the rows of new ones only.
NAMES_READ_TABLE = "stg_ref_domain_names_read"
_INSERT_BATCH = 5000


def unicode_name(ref_domain: str) -> str:
    """The Unicode display form of a normalized (punycode) domain. Names were validated as IDNA
    when they were loaded, so display needs only the punycode decoding of each xn-- label (the
    idna package's full UTS 46 check is far slower a name); a label that does not decode shows
    the whole name as it is."""
    labels = []
    for label in ref_domain.split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                return ref_domain
            if label.isascii():  # punycode of plain ASCII is no IDN label
                return ref_domain
        labels.append(label)
    return ".".join(labels)


def update_names(client, dialect: str) -> None:
    """Add the display form of every xn-- domain in the complete snapshots loaded since the last
    build. Incremental twice over: only the rows of snapshots not read yet (NAMES_READ_TABLE:
    key, finished_at and rows as loaded; a snapshot pulled again is read again), and only names
    not known yet. Reading every row's name each build would hold the whole history's names
    column in DuckDB's memory, growing with it."""
    names = client.make_qualified_table_name(NAMES_TABLE)
    read = client.make_qualified_table_name(NAMES_READ_TABLE)
    ledger = client.make_qualified_table_name(SNAPSHOTS_TABLE)
    text = exp.DataType.build("text").sql(dialect=dialect)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {names} (ref_domain {text}, ref_domain_unicode {text})")
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {read} AS "
                       f"SELECT snapshot_key, finished_at, rows_loaded FROM {ledger} WHERE 1 = 0")
    fresh = (f"SELECT ledger.snapshot_key, ledger.snapshot_date, ledger.finished_at, ledger.rows_loaded "
             f"FROM {ledger} ledger WHERE ledger.status = 'complete' AND NOT EXISTS (SELECT 1 FROM {read} done "
             "WHERE done.snapshot_key = ledger.snapshot_key AND done.finished_at IS NOT DISTINCT FROM "
             "ledger.finished_at AND done.rows_loaded IS NOT DISTINCT FROM ledger.rows_loaded)")
    # by date as well as key: DuckDB then reads only the new snapshots' blocks
    missing = client.execute_sql(
        f"SELECT DISTINCT loaded.ref_domain FROM {client.make_qualified_table_name(REF_DOMAINS_TABLE)} loaded "
        f"INNER JOIN ({fresh}) fresh ON fresh.snapshot_date = loaded.snapshot_date "
        "AND fresh.snapshot_key = loaded.snapshot_key "
        f"WHERE loaded.ref_domain LIKE %s AND NOT EXISTS "
        f"(SELECT 1 FROM {names} known WHERE known.ref_domain = loaded.ref_domain)", "%xn--%") or []
    rows = [(name, unicode_name(name)) for (name,) in missing]
    if rows and dialect == "duckdb":
        # DuckDB parses a long VALUES list slowly, and binds parameters more slowly still; it
        # reads an Arrow table in place
        arrow = pa.table({"ref_domain": [r[0] for r in rows], "ref_domain_unicode": [r[1] for r in rows]})
        connection = client.native_connection
        connection.register("refdomains_new_names", arrow)
        try:
            client.execute_sql(f"INSERT INTO {names} (ref_domain, ref_domain_unicode) "
                               "SELECT ref_domain, ref_domain_unicode FROM refdomains_new_names")
        finally:
            connection.unregister("refdomains_new_names")
        rows = []
    # elsewhere literals in batches, not bound parameters (a thousand a statement bind slowly)
    for start in range(0, len(rows), _INSERT_BATCH):
        batch = rows[start:start + _INSERT_BATCH]
        values = ", ".join(f"({literal(name)}, {literal(shown)})" for name, shown in batch)
        client.execute_sql(f"INSERT INTO {names} (ref_domain, ref_domain_unicode) VALUES {values}")
    client.execute_sql(f"DELETE FROM {read} WHERE snapshot_key IN (SELECT snapshot_key FROM ({fresh}) fresh)")
    client.execute_sql(f"INSERT INTO {read} (snapshot_key, finished_at, rows_loaded) "
                       f"SELECT snapshot_key, finished_at, rows_loaded FROM ({fresh}) fresh")
