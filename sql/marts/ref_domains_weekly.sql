-- materialized: table
-- ISO weeks (starting Monday) in which the target has a readable snapshot.
with readable as (
    select * from stg_snapshots
),

changes as (
    select * from ref_domain_changes
),

-- every readable snapshot date of a target with its week; a change is always dated on one
-- (detected_on: a full snapshot or a last_week pull; lost_on: a full snapshot), so this is where
-- a change finds its week
calendar as (
    select distinct target_domain, search_type, snapshot_date, week_start
    from readable
),

-- a target's role is one for all its snapshots
weeks as (
    select distinct target_domain, search_type, week_start, target_role, competitor_of
    from readable
),

latest_full as (
    select
        target_domain,
        search_type,
        week_start,
        rows_loaded,
        row_number() over (
            partition by target_domain, search_type, week_start
            order by snapshot_date desc
        ) as recency
    from readable
    where snapshot_kind = 'full'
),

changes_per_week as (
    select
        calendar.target_domain,
        calendar.search_type,
        calendar.week_start,
        count(case when changes.change <> 'lost' then 1 end) as new_ref_domains,
        count(case when changes.change = 'lost' then 1 end) as lost_ref_domains
    from changes
    inner join calendar
        on calendar.target_domain = changes.target_domain
        and calendar.search_type = changes.search_type
        and calendar.snapshot_date = changes.event_date
    group by calendar.target_domain, calendar.search_type, calendar.week_start
),

final as (
    select
        weeks.target_domain,
        weeks.search_type,
        weeks.target_role,
        weeks.competitor_of,
        weeks.week_start,
        latest_full.rows_loaded as ref_domains,
        coalesce(changes_per_week.new_ref_domains, 0) as new_ref_domains,
        coalesce(changes_per_week.lost_ref_domains, 0) as lost_ref_domains,
        coalesce(changes_per_week.new_ref_domains, 0)
            - coalesce(changes_per_week.lost_ref_domains, 0) as net_change
    from weeks
    left join latest_full
        on latest_full.target_domain = weeks.target_domain
        and latest_full.search_type = weeks.search_type
        and latest_full.week_start = weeks.week_start
        and latest_full.recency = 1
    left join changes_per_week
        on changes_per_week.target_domain = weeks.target_domain
        and changes_per_week.search_type = weeks.search_type
        and changes_per_week.week_start = weeks.week_start
)

select * from final
