-- materialized: view
-- What each last_week pull detects: the domains it lists that the latest full snapshot dated
-- before it did not hold (all it lists, when there is none). Read from the comparisons
-- int_snapshot_pair_changes keeps, never from the history's rows. What new_ref_domains'
-- last_week detector and ref_domains_current's first sightings read.
with pairs as (
    select * from int_snapshot_pairs
),

pair_changes as (
    select * from int_snapshot_pair_changes
),

additions as (
    select
        pairs.series_key,
        pairs.target_domain,
        pairs.search_type,
        pairs.snapshot_date,
        pairs.previous_full_seq,
        pairs.previous_snapshot_date,
        pair_changes.ref_domain,
        pair_changes.ref_domain_unicode,
        pair_changes.registrable_domain,
        pair_changes.domain_rank,
        pair_changes.ref_pages,
        pairs.target_role,
        pairs.competitor_of
    from pair_changes
    inner join pairs
        on pairs.pair_key = pair_changes.pair_key
        and pairs.pair_kind = 'last_week'
    where pair_changes.change = 'added'
)

select * from additions
