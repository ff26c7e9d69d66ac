-- materialized: table
-- The donor states that link_gap and link_gap_changes show: in the gap now, or at the first or
-- last observation of a stretch in the gap; with the names of the competitors listing the donor,
-- its registrable domain and its display name, worked out for these rows only.
with history as (
    select * from int_link_gap_history
),

side_rows as (
    select * from int_link_gap_side_rows
),

milestones as (
    select * from history
    where observation_seq = latest_seq or is_gap_start or is_gap_end
),

linking as (
    select
        side_rows.target_domain,
        side_rows.search_type,
        side_rows.observation_seq,
        side_rows.gap_key,
        string_agg(distinct side_rows.side_domain, ', ' order by side_rows.side_domain nulls first)
            as competitor_domains,
        min(side_rows.registrable_domain) as registrable_domain
    from side_rows
    inner join milestones
        on milestones.target_domain = side_rows.target_domain
        and milestones.search_type = side_rows.search_type
        and milestones.observation_seq = side_rows.observation_seq
        and milestones.ref_domain = side_rows.gap_key
    where not side_rows.is_target
    group by side_rows.target_domain, side_rows.search_type, side_rows.observation_seq, side_rows.gap_key
),

final as (
    select
        milestones.target_domain,
        milestones.search_type,
        milestones.observation_seq,
        milestones.observed_on,
        milestones.latest_seq,
        milestones.ref_domain,
        -- the display form of the donor, loaded with or without the www. the key dropped
        coalesce(bare.ref_domain_unicode, substr(www.ref_domain_unicode, 5), milestones.ref_domain)
            as ref_domain_unicode,
        linking.registrable_domain,
        milestones.competitors_linking,
        linking.competitor_domains,
        milestones.max_domain_rank,
        milestones.competitor_ref_pages,
        milestones.comparable_from_seq,
        milestones.is_gap_start,
        milestones.is_gap_end,
        milestones.in_gap_since
    from milestones
    inner join linking
        on linking.target_domain = milestones.target_domain
        and linking.search_type = milestones.search_type
        and linking.observation_seq = milestones.observation_seq
        and linking.gap_key = milestones.ref_domain
    left join stg_ref_domain_names as bare on bare.ref_domain = milestones.ref_domain
    left join stg_ref_domain_names as www on www.ref_domain = 'www.' || milestones.ref_domain
)

select * from final
