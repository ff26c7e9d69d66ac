-- materialized: view
-- Rows of the complete full snapshots only: what snapshot diffs compare.
with snapshot_rows as (
    select * from stg_ref_domains
),

full_rows as (
    select * from snapshot_rows
    where snapshot_kind = 'full'
)

select * from full_rows
