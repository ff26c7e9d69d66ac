-- materialized: view
-- The complete full snapshots of each series, numbered F0, F1, ... (the spine of new and lost).
with readable as (
    select * from stg_snapshots
),

full_snapshots as (
    select target_domain, search_type, filter_hash, snapshot_date, full_seq
    from readable
    where snapshot_kind = 'full'
)

select * from full_snapshots
