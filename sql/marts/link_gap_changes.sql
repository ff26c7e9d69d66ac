-- materialized: table
-- When each donor entered (gap_opened) or left (gap_closed) a tracked domain's link gap, one row
-- per event (README: Competitors and link gap). Like F0 for new_ref_domains, a donor found in the
-- gap at the first observation its competitors are compared at is the baseline, not an opening.
-- Its targets are tracked domains, as in link_gap.
with milestones as (
    select * from int_link_gap_milestones
),

states as (
    select * from int_link_gap_observations
),

side_rows as (
    select * from int_link_gap_side_rows
),

observations as (
    select distinct target_domain, search_type, observation_seq, observed_on
    from states
),

opened as (
    select
        observed_on as event_date,
        target_domain,
        search_type,
        'tracked' as target_role,
        cast(null as varchar) as competitor_of,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        'gap_opened' as change,
        cast(null as boolean) as won,
        competitors_linking,
        competitor_domains,
        max_domain_rank,
        competitor_ref_pages
    from milestones
    where is_gap_start
        and comparable_from_seq < observation_seq
),

-- the last observation of a stretch in the gap that a later observation ended
stretch_ends as (
    select * from milestones
    where is_gap_end
        and observation_seq < latest_seq
),

-- the tracked domain's donors at each observation: one of them ends a stretch in the gap as won
target_keys as (
    select distinct target_domain, search_type, observation_seq, gap_key
    from side_rows
    where is_target
),

closed as (
    select
        closing.observed_on as event_date,
        stretch_ends.target_domain,
        stretch_ends.search_type,
        'tracked' as target_role,
        cast(null as varchar) as competitor_of,
        stretch_ends.ref_domain,
        stretch_ends.ref_domain_unicode,
        stretch_ends.registrable_domain,
        'gap_closed' as change,
        target_keys.gap_key is not null as won,
        stretch_ends.competitors_linking,
        stretch_ends.competitor_domains,
        stretch_ends.max_domain_rank,
        stretch_ends.competitor_ref_pages
    from stretch_ends
    inner join observations as closing
        on closing.target_domain = stretch_ends.target_domain
        and closing.search_type = stretch_ends.search_type
        and closing.observation_seq = stretch_ends.observation_seq + 1
    left join target_keys
        on target_keys.target_domain = stretch_ends.target_domain
        and target_keys.search_type = stretch_ends.search_type
        and target_keys.observation_seq = closing.observation_seq
        and target_keys.gap_key = stretch_ends.ref_domain
),

final as (
    select * from opened
    union all
    select * from closed
)

select * from final
