-- materialized: table
-- The pairs of snapshots whose difference the models need, each under a key that names both
-- snapshots as they are loaded now (stg_snapshots.snapshot_version): a snapshot pulled again, or
-- one that leaves or joins the readable ones, gives its pairs new keys, so
-- int_snapshot_pair_changes compares the new pairs and forgets the old.
--   full:      consecutive full snapshots of a series, F(i) and F(i+1); F0 (full_seq 1) is paired
--              with nothing, so every donor it holds is its baseline.
--   last_week: a last_week pull and the latest full snapshot dated before it (or nothing).
-- Small: one row per snapshot.
with readable as (
    select * from stg_snapshots
),

-- the full snapshots, as the earlier side of a pair
earlier as (
    select series_key, full_seq, snapshot_key, snapshot_date, rows_loaded, snapshot_version
    from readable
    where snapshot_kind = 'full'
),

pairs as (
    select
        coalesce(earlier.snapshot_version, '') || ' > ' || readable.snapshot_version as pair_key,
        readable.snapshot_kind as pair_kind,
        readable.series_key,
        readable.target_domain,
        readable.search_type,
        readable.full_seq,
        readable.snapshot_date,
        readable.snapshot_key,
        earlier.full_seq as previous_full_seq,
        earlier.snapshot_date as previous_snapshot_date,
        earlier.snapshot_key as previous_snapshot_key,
        coalesce(earlier.rows_loaded, 0) + readable.rows_loaded as pair_rows,
        readable.last_full_seq,
        readable.target_role,
        readable.competitor_of
    from readable
    left join earlier
        on earlier.series_key = readable.series_key
        and earlier.full_seq = readable.previous_full_seq
)

select * from pairs
