-- materialized: table
-- One row per snapshot that models may read: `complete` in the ledger AND with exactly the rows
-- the ledger promises. The second test keeps out a snapshot whose load was cut between its two
-- tables (a crash mid-load): such a snapshot would otherwise read as "everything lost".
with ledger as (
    select
        snapshot_key,
        target_domain,
        search_type,
        filter_hash,
        snapshot_kind,
        snapshot_date,
        rows_loaded
    from snapshots
    where status = 'complete'
),

loaded as (
    select snapshot_key, count(*) as rows_present
    from ref_domains
    group by snapshot_key
),

consistent as (
    select ledger.*
    from ledger
    left join loaded on loaded.snapshot_key = ledger.snapshot_key
    where coalesce(loaded.rows_present, 0) = ledger.rows_loaded
),

-- full snapshots are numbered within their series (target, search type, filter): F0, F1, ...
numbered as (
    select
        consistent.*,
        case
            when snapshot_kind = 'full' then row_number() over (
                partition by target_domain, search_type, filter_hash, snapshot_kind
                order by snapshot_date
            )
        end as full_seq
    from consistent
)

select * from numbered
