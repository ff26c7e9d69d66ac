-- materialized: table
-- ISO weeks (starting Monday) in which the target has a readable snapshot.
with readable as (
    select
        target_domain,
        search_type,
        snapshot_kind,
        snapshot_date,
        rows_loaded,
        cast(date_trunc('week', snapshot_date) as date) as week_start
    from stg_snapshots
),

weeks as (
    select distinct target_domain, search_type, week_start
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

new_per_week as (
    select
        target_domain,
        search_type,
        cast(date_trunc('week', detected_on) as date) as week_start,
        count(*) as new_ref_domains
    from new_ref_domains
    group by target_domain, search_type, cast(date_trunc('week', detected_on) as date)
),

lost_per_week as (
    select
        target_domain,
        search_type,
        cast(date_trunc('week', lost_on) as date) as week_start,
        count(*) as lost_ref_domains
    from lost_ref_domains
    group by target_domain, search_type, cast(date_trunc('week', lost_on) as date)
),

final as (
    select
        weeks.target_domain,
        weeks.search_type,
        weeks.week_start,
        latest_full.rows_loaded as ref_domains,
        coalesce(new_per_week.new_ref_domains, 0) as new_ref_domains,
        coalesce(lost_per_week.lost_ref_domains, 0) as lost_ref_domains,
        coalesce(new_per_week.new_ref_domains, 0) - coalesce(lost_per_week.lost_ref_domains, 0) as net_change
    from weeks
    left join latest_full
        on latest_full.target_domain = weeks.target_domain
        and latest_full.search_type = weeks.search_type
        and latest_full.week_start = weeks.week_start
        and latest_full.recency = 1
    left join new_per_week
        on new_per_week.target_domain = weeks.target_domain
        and new_per_week.search_type = weeks.search_type
        and new_per_week.week_start = weeks.week_start
    left join lost_per_week
        on lost_per_week.target_domain = weeks.target_domain
        and lost_per_week.search_type = weeks.search_type
        and lost_per_week.week_start = weeks.week_start
)

select * from final
