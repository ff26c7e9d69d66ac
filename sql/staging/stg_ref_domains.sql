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
        readable.snapshot_kind,
        readable.snapshot_date,
        readable.full_seq,
        readable.previous_full_seq,
        readable.previous_full_date,
        loaded_rows.ref_domain,
        coalesce(names.ref_domain_unicode, loaded_rows.ref_domain) as ref_domain_unicode,
        loaded_rows.registrable_domain,
        loaded_rows.domain_rank,
        loaded_rows.ref_pages
    from loaded_rows
    inner join readable on readable.snapshot_key = loaded_rows.snapshot_key
    left join names on names.ref_domain = loaded_rows.ref_domain
)

select * from snapshot_rows
