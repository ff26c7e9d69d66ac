-- materialized: table
-- When each donor entered (gap_opened) or left (gap_closed) a tracked domain's link gap, one row
-- per event (README: Competitors and link gap). Like F0 for new_ref_domains, a donor found in the
-- gap at the first observation a competitor is compared at is the baseline, not an opening.
with donor_states as (
    select * from int_link_gap_donor_states
),

observations as (
    select distinct target_domain, search_type, observation_seq, observed_on
    from int_link_gap_observations
),

opened as (
    select
        observed_on as event_date,
        target_domain,
        search_type,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        'gap_opened' as change,
        cast(null as boolean) as won,
        competitors_linking,
        competitor_domains,
        max_domain_rank,
        competitor_ref_pages
    from donor_states
    where in_gap
        and observation_seq = gap_start_seq
        and comparable_from_seq < observation_seq
),

-- the last observation of a stretch in the gap that a later observation ended
stretch_ends as (
    select * from donor_states
    where in_gap
        and observation_seq = gap_end_seq
        and gap_end_seq < latest_seq
),

closed as (
    select
        closing.observed_on as event_date,
        stretch_ends.target_domain,
        stretch_ends.search_type,
        stretch_ends.ref_domain,
        stretch_ends.ref_domain_unicode,
        stretch_ends.registrable_domain,
        'gap_closed' as change,
        coalesce(after_end.target_links, false) as won,
        stretch_ends.competitors_linking,
        stretch_ends.competitor_domains,
        stretch_ends.max_domain_rank,
        stretch_ends.competitor_ref_pages
    from stretch_ends
    inner join observations as closing
        on closing.target_domain = stretch_ends.target_domain
        and closing.search_type = stretch_ends.search_type
        and closing.observation_seq = stretch_ends.observation_seq + 1
    left join donor_states as after_end
        on after_end.target_domain = stretch_ends.target_domain
        and after_end.search_type = stretch_ends.search_type
        and after_end.ref_domain = stretch_ends.ref_domain
        and after_end.observation_seq = closing.observation_seq
),

final as (
    select * from opened
    union all
    select * from closed
)

select * from final
