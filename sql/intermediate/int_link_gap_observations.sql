-- materialized: table
-- The link gap's timeline (README: Competitors and link gap). For each tracked domain with
-- competitors, an observation is every date from the tracked domain's first complete full
-- snapshot on at which it or a competitor has a complete full snapshot. At each observation every
-- side, the tracked domain and each competitor, is read at its latest complete full snapshot on or
-- before that date: a competitor's incomplete or failed pull changes nothing, its last complete
-- snapshot stands. A side without any is left out. Sides are (domain, search type), and every
-- side is read under the filter of the tracked domain's latest full snapshot: a side read under
-- another filter lists donors the other side's filter leaves out (or keeps), so a filter change
-- would open or close the gap for every one of them. A changed filter starts the gap anew, with
-- the sides that have a snapshot under it, as it starts a new series of new and lost.
with competitors as (
    select * from stg_target_competitors
),

readable as (
    select * from stg_snapshots
),

-- the filter every side of a tracked domain's gap is read under (sides are other targets, so
-- the series key, which names its target, cannot say it)
gap_filter as (
    select target_domain, search_type, filter_hash as gap_filter_hash
    from (
        select
            target_domain,
            search_type,
            filter_hash,
            row_number() over (
                partition by target_domain, search_type order by snapshot_date desc
            ) as recency
        from readable
        where snapshot_kind = 'full'
    ) as latest
    where recency = 1
),

-- the sides of each tracked domain's gap: the domain itself and each of its competitors
sides as (
    select
        target_domain,
        search_type,
        target_domain as side_domain,
        search_type as side_search_type,
        true as is_target
    from competitors
    union
    select target_domain, search_type, competitor_domain, competitor_search_type, false
    from competitors
),

side_snapshots as (
    select
        sides.target_domain,
        sides.search_type,
        sides.side_domain,
        sides.side_search_type,
        sides.is_target,
        snap.snapshot_key,
        snap.snapshot_date,
        lead(snap.snapshot_date) over (
            partition by sides.target_domain, sides.search_type, sides.side_domain, sides.side_search_type
            order by snap.snapshot_date
        ) as next_snapshot_date
    from sides
    inner join gap_filter
        on gap_filter.target_domain = sides.target_domain
        and gap_filter.search_type = sides.search_type
    inner join readable as snap
        on snap.target_domain = sides.side_domain
        and snap.search_type = sides.side_search_type
        and snap.filter_hash = gap_filter.gap_filter_hash
    where snap.snapshot_kind = 'full'
),

target_start as (
    select target_domain, search_type, min(snapshot_date) as first_date
    from side_snapshots
    where is_target
    group by target_domain, search_type
),

observation_dates as (
    select distinct
        side_snapshots.target_domain,
        side_snapshots.search_type,
        side_snapshots.snapshot_date as observed_on
    from side_snapshots
    inner join target_start
        on target_start.target_domain = side_snapshots.target_domain
        and target_start.search_type = side_snapshots.search_type
    where side_snapshots.snapshot_date >= target_start.first_date
),

observations as (
    select
        observation_dates.*,
        row_number() over (partition by target_domain, search_type order by observed_on) as observation_seq,
        count(*) over (partition by target_domain, search_type) as latest_seq
    from observation_dates
),

-- the snapshot each side is read at: the latest on or before the observation
side_states as (
    select
        observations.target_domain,
        observations.search_type,
        observations.observed_on,
        observations.observation_seq,
        observations.latest_seq,
        side_snapshots.side_domain,
        side_snapshots.side_search_type,
        side_snapshots.is_target,
        side_snapshots.snapshot_key,
        side_snapshots.snapshot_date
    from observations
    inner join side_snapshots
        on side_snapshots.target_domain = observations.target_domain
        and side_snapshots.search_type = observations.search_type
        and side_snapshots.snapshot_date <= observations.observed_on
        and (side_snapshots.next_snapshot_date is null or observations.observed_on < side_snapshots.next_snapshot_date)
),

final as (
    select
        side_states.*,
        min(observation_seq) over (
            partition by target_domain, search_type, side_domain, side_search_type
        ) as comparable_from_seq
    from side_states
)

select * from final
