-- materialized: view
-- The role of every target the pipeline has loaded or the latest run configured: `tracked` (one of
-- the user's own sites) or `competitor` (configured only as a competitor), and for a competitor
-- the tracked domains that name it. Read from target_competitors, which every run replaces with
-- its configuration. stg_snapshots attaches it to every snapshot, so the marts carry it without
-- joining it again.
--   A target configured both as tracked and as another's competitor is `tracked`: its rows are the
--   user's own, and competitor_of is null, as for every tracked target (target_competitors and
--   link_gap's competitor_domains still name it as that site's competitor).
--   A target loaded but in no configuration of the latest run (removed since) has no role (null).
--   A dataset no run of this version wrote has no configuration at all: every target is tracked.
with configured as (
    select * from target_competitors
),

ledger as (
    select * from snapshots
),

tracked as (
    select distinct target_domain, search_type
    from configured
),

-- each competitor with each tracked domain naming it, once (whatever search types name it)
named_by as (
    select distinct
        competitor_domain as target_domain,
        competitor_search_type as search_type,
        target_domain as tracked_domain
    from configured
    where competitor_domain is not null
),

-- sorted, comma-separated; `nulls first` (there are none) is the order sqlglot can write for
-- every warehouse's STRING_AGG / LISTAGG
competitor_lists as (
    select
        target_domain,
        search_type,
        string_agg(tracked_domain, ', ' order by tracked_domain nulls first) as competitor_of
    from named_by
    group by target_domain, search_type
),

targets as (
    select target_domain, search_type from tracked
    union
    select target_domain, search_type from named_by
    union
    select target_domain, search_type from ledger
),

configuration as (
    select count(*) as configured_rows
    from configured
),

final as (
    select
        targets.target_domain,
        targets.search_type,
        case
            when tracked.target_domain is not null or configuration.configured_rows = 0 then 'tracked'
            when competitor_lists.target_domain is not null then 'competitor'
        end as target_role,
        case when tracked.target_domain is null then competitor_lists.competitor_of end as competitor_of
    from targets
    cross join configuration
    left join tracked
        on tracked.target_domain = targets.target_domain
        and tracked.search_type = targets.search_type
    left join competitor_lists
        on competitor_lists.target_domain = targets.target_domain
        and competitor_lists.search_type = targets.search_type
)

select * from final
