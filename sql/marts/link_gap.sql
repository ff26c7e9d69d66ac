-- materialized: table
-- Link-building opportunities now: donors of a tracked domain's competitors that do not link to
-- it, from the latest complete full snapshot of each side (README: Competitors and link gap).
-- A link gap is a tracked domain's: its target is configured as tracked (stg_target_competitors),
-- so its role is `tracked`, without a competitor_of (stg_target_roles; a data test holds the two
-- together).
with milestones as (
    select * from int_link_gap_milestones
),

-- the tracked domain's latest complete full snapshot: what it is read at in the latest observation
current_rows as (
    select * from ref_domains_current
),

current_gap as (
    select * from milestones
    where observation_seq = latest_seq
),

-- registrable domains the tracked domain already has a link from (through some host of theirs)
linked_sites as (
    select distinct target_domain, search_type, registrable_domain
    from current_rows
),

final as (
    select
        current_gap.target_domain,
        current_gap.search_type,
        'tracked' as target_role,
        cast(null as varchar) as competitor_of,
        current_gap.ref_domain,
        current_gap.ref_domain_unicode,
        current_gap.registrable_domain,
        current_gap.competitors_linking,
        current_gap.competitor_domains,
        current_gap.max_domain_rank,
        current_gap.competitor_ref_pages,
        linked_sites.registrable_domain is not null as site_already_links,
        current_gap.in_gap_since
    from current_gap
    left join linked_sites
        on linked_sites.target_domain = current_gap.target_domain
        and linked_sites.search_type = current_gap.search_type
        and linked_sites.registrable_domain = current_gap.registrable_domain
)

select * from final
