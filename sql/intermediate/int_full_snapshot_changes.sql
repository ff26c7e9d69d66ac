-- materialized: table
-- The changes between consecutive complete full snapshots of a series, one row per domain and
-- change: `added` at F(i+1) when it is in F(i+1) and not in F(i), `removed` at F(i+1) when it is
-- in F(i) and not in F(i+1); and `baseline`, each domain of F0, where its history starts. What
-- new_ref_domains (added) and lost_ref_domains (removed) read, and what tells the other models
-- whether a full snapshot held a domain: the last change at or before it says.
--
-- The comparisons themselves are kept by int_snapshot_pair_changes, which compares each pair of
-- snapshots once; here they are placed in their series. A domain's changes alternate (added,
-- removed, added, ...) from its first, `added` or `baseline`, so its history follows from its
-- changes alone, never from the snapshots' rows: it was first held at its first change, and a
-- `removed` domain returns at its next. One window over the changes, not over every row of every
-- snapshot.
with pairs as (
    select * from int_snapshot_pairs
),

pair_changes as (
    select * from int_snapshot_pair_changes
),

changes as (
    select
        pairs.series_key,
        pairs.target_domain,
        pairs.search_type,
        pairs.full_seq,
        pairs.snapshot_date,
        pairs.previous_snapshot_date,
        pair_changes.ref_domain,
        pair_changes.ref_domain_unicode,
        -- F0 is paired with nothing: its donors are no change, the baseline
        case when pairs.previous_snapshot_key is null then 'baseline' else pair_changes.change end as change,
        pair_changes.registrable_domain,
        pair_changes.domain_rank,
        pair_changes.ref_pages,
        pairs.last_full_seq,
        pairs.target_role,
        pairs.competitor_of
    from pair_changes
    inner join pairs
        on pairs.pair_key = pair_changes.pair_key
        and pairs.pair_kind = 'full'
    where pair_changes.change in ('added', 'removed')
),

-- one window spec for all three: one sort (a named WINDOW clause is not portable)
in_history as (
    select
        changes.*,
        first_value(full_seq) over (partition by series_key, ref_domain order by full_seq) as first_seq,
        lead(full_seq) over (partition by series_key, ref_domain order by full_seq) as next_change_seq,
        lead(snapshot_date) over (partition by series_key, ref_domain order by full_seq) as next_change_date
    from changes
),

final as (
    select
        series_key,
        target_domain,
        search_type,
        full_seq,
        snapshot_date,
        previous_snapshot_date,
        ref_domain,
        ref_domain_unicode,
        change,
        registrable_domain,
        domain_rank,
        ref_pages,
        first_seq,
        case when change = 'removed' then next_change_seq end as returned_seq,
        case when change = 'removed' then next_change_date end as returned_on,
        last_full_seq,
        target_role,
        competitor_of
    from in_history
)

select * from final
