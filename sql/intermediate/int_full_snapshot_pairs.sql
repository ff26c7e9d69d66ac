-- materialized: table
-- Each pair of consecutive readable full snapshots of a series, F(i) and F(i+1), under a key that
-- names both snapshots as they are loaded now (stg_snapshots.snapshot_version): a snapshot pulled
-- again, or one that leaves or joins the readable ones, gives its pairs new keys, so
-- int_snapshot_pair_changes compares the new pairs and forgets the old. F0 (full_seq 1) is paired
-- with nothing before it: every donor it holds is its baseline, so a domain's changes alone tell
-- whether any full snapshot held it. Small: one row per full snapshot.
with readable as (
    select * from stg_snapshots
),

versions as (
    select
        readable.series_key,
        readable.target_domain,
        readable.search_type,
        readable.snapshot_key,
        readable.snapshot_date,
        readable.full_seq,
        readable.last_full_seq,
        readable.rows_loaded,
        readable.snapshot_version
    from readable
    where readable.snapshot_kind = 'full'
),

-- versions is read twice: imported again, so neither side is materialized for the other
earlier_versions as (
    select * from versions
),

pairs as (
    select
        coalesce(earlier_versions.snapshot_version, '') || ' > ' || versions.snapshot_version as pair_key,
        versions.series_key,
        versions.target_domain,
        versions.search_type,
        versions.full_seq,
        versions.snapshot_date,
        versions.snapshot_key,
        earlier_versions.snapshot_date as previous_snapshot_date,
        earlier_versions.snapshot_key as previous_snapshot_key,
        coalesce(earlier_versions.rows_loaded, 0) + versions.rows_loaded as pair_rows,
        versions.last_full_seq
    from versions
    left join earlier_versions
        on earlier_versions.series_key = versions.series_key
        and earlier_versions.full_seq = versions.full_seq - 1
)

select * from pairs
