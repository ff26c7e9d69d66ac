-- materialized: table
-- The changes between consecutive complete full snapshots of a series, one row per domain and
-- change: `added` at F(i+1) when it is in F(i+1) and not in F(i), `removed` at F(i+1) when it is
-- in F(i) and not in F(i+1). What new_ref_domains (added) and lost_ref_domains (removed) read.
--
-- One window over (series, domain) ordered by snapshot number gives each full row the snapshots
-- that held the same domain just before and after it: one sort of the history instead of an
-- anti-join of every snapshot against its neighbour. A table, so that sort runs once a build,
-- not once for each model that reads it. (snapshot_key, ref_domain) is the key of ref_domains:
-- a domain is in a snapshot once.
with snapshot_rows as (
    select * from stg_ref_domains
),

readable as (
    select * from stg_snapshots
),

held as (
    select
        series_key,
        full_seq,
        snapshot_date,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        domain_rank,
        ref_pages,
        -- one window spec for all four: one sort (a named WINDOW clause is not portable)
        lag(full_seq) over (partition by series_key, ref_domain order by full_seq) as held_seq_before,
        lead(full_seq) over (partition by series_key, ref_domain order by full_seq) as held_seq_after,
        lead(snapshot_date) over (partition by series_key, ref_domain order by full_seq) as held_date_after,
        first_value(full_seq) over (partition by series_key, ref_domain order by full_seq) as first_seq
    from snapshot_rows
    where snapshot_kind = 'full'
),

-- F0, the baseline, adds nothing; a row of the series' last snapshot is removed from no later
-- one: both drop out at the join with the snapshot the change is seen in, below
flagged as (
    select
        held.*,
        held_seq_before is null or held_seq_before < full_seq - 1 as added_here,
        held_seq_after is null or held_seq_after > full_seq + 1 as removed_next
    from held
),

changed_rows as (
    select * from flagged
    where added_here or removed_next
),

-- a domain held in F(i) only is both added at F(i) and removed at F(i+1): two rows
change_kinds as (
    select 'added' as change
    union all
    select 'removed' as change
),

events as (
    select
        changed_rows.*,
        change_kinds.change,
        case when change_kinds.change = 'added' then full_seq else full_seq + 1 end as change_seq
    from changed_rows
    inner join change_kinds
        on (change_kinds.change = 'added' and changed_rows.added_here)
        or (change_kinds.change = 'removed' and changed_rows.removed_next)
),

-- the full snapshot each change is seen in, and the one before it
seen_in as (
    select series_key, target_domain, search_type, full_seq, snapshot_date, previous_full_date, last_full_seq
    from readable
    where snapshot_kind = 'full'
),

final as (
    select
        seen_in.series_key,
        seen_in.target_domain,
        seen_in.search_type,
        seen_in.full_seq,
        seen_in.snapshot_date,
        seen_in.previous_full_date as previous_snapshot_date,
        events.ref_domain,
        events.ref_domain_unicode,
        events.change,
        events.registrable_domain,
        events.domain_rank,
        events.ref_pages,
        events.first_seq,
        case when events.change = 'removed' then events.held_seq_after end as returned_seq,
        case when events.change = 'removed' then events.held_date_after end as returned_on,
        seen_in.last_full_seq
    from events
    inner join seen_in
        on seen_in.series_key = events.series_key
        and seen_in.full_seq = events.change_seq
    where seen_in.previous_full_date is not null
)

select * from final
