-- materialized: view
-- Rows of readable snapshots only, each with its snapshot's series and place in it, and the
-- donor's display form: looked up here once, so every model that shows a donor carries it along.
with readable as (
    select * from stg_snapshots
),

loaded_rows as (
    select * from ref_domains
),

names as (
    select * from stg_ref_domain_names
),

snapshot_rows as (
    select
        readable.snapshot_key,
        readable.series_key,
        readable.target_domain,
        readable.search_type,
        readable.filter_hash,
        loaded_rows.snapshot_kind,
        loaded_rows.snapshot_date,
        readable.full_seq,
        readable.previous_full_seq,
        readable.previous_full_date,
        loaded_rows.ref_domain,
        coalesce(names.ref_domain_unicode, loaded_rows.ref_domain) as ref_domain_unicode,
        loaded_rows.registrable_domain,
        loaded_rows.domain_rank,
        loaded_rows.ref_pages
    -- The names first, then the readable snapshots. Within a build's transaction DuckDB has no
    -- statistics for the tables the build has just made: joined the other way round it takes
    -- ref_domains joined to stg_snapshots for the small side and builds a hash table of the
    -- whole history to look names up in.
    -- The kind and date are the loaded rows' own (the ledger's, under the same key), so a filter
    -- on them reaches the scan of ref_domains.
    from loaded_rows
    left join names on names.ref_domain = loaded_rows.ref_domain
    inner join readable
        on readable.snapshot_key = loaded_rows.snapshot_key
        and readable.snapshot_date = loaded_rows.snapshot_date
)

select * from snapshot_rows
