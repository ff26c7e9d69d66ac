-- materialized: view
-- Rows of readable snapshots only, carrying their series and position in it.
with readable as (
    select * from stg_snapshots
),

snapshot_rows as (
    select
        readable.target_domain,
        readable.search_type,
        readable.filter_hash,
        readable.snapshot_kind,
        readable.snapshot_date,
        readable.full_seq,
        ref_domains.ref_domain,
        ref_domains.registrable_domain,
        ref_domains.domain_rank,
        ref_domains.ref_pages
    from ref_domains
    inner join readable on readable.snapshot_key = ref_domains.snapshot_key
)

select * from snapshot_rows
