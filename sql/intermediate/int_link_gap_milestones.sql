-- materialized: table
-- The rows of the gap's history that link_gap and link_gap_changes show: in the gap now, or at the
-- first or last observation of a stretch in the gap; with the names of the competitors listing the
-- donor, its registrable domain, its display name and since when its stretch has lasted, worked
-- out for these rows only. A table: both models read it.
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

-- the start of the stretch each row belongs to: the latest start at or before it (starts are few;
-- an ordered window over the whole history would do the same where BigQuery allows it)
stretch_starts as (
    select target_domain, search_type, ref_domain, observation_seq, observed_on
    from milestones
    where is_gap_start
),

stretch_of as (
    select
        milestones.target_domain,
        milestones.search_type,
        milestones.ref_domain,
        milestones.observation_seq,
        max(stretch_starts.observed_on) as in_gap_since
    from milestones
    inner join stretch_starts
        on stretch_starts.target_domain = milestones.target_domain
        and stretch_starts.search_type = milestones.search_type
        and stretch_starts.ref_domain = milestones.ref_domain
        and stretch_starts.observation_seq <= milestones.observation_seq
    group by milestones.target_domain, milestones.search_type, milestones.ref_domain, milestones.observation_seq
),

linking as (
    select
        side_rows.target_domain,
        side_rows.search_type,
        side_rows.observation_seq,
        side_rows.gap_key,
        string_agg(distinct side_rows.side_domain, ', ' order by side_rows.side_domain nulls first)
            as competitor_domains,
        min(side_rows.registrable_domain) as registrable_domain,
        min(side_rows.gap_key_unicode) as ref_domain_unicode
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
        linking.ref_domain_unicode,
        linking.registrable_domain,
        milestones.competitors_linking,
        linking.competitor_domains,
        milestones.max_domain_rank,
        milestones.competitor_ref_pages,
        milestones.comparable_from_seq,
        milestones.is_gap_start,
        milestones.is_gap_end,
        stretch_of.in_gap_since
    from milestones
    inner join linking
        on linking.target_domain = milestones.target_domain
        and linking.search_type = milestones.search_type
        and linking.observation_seq = milestones.observation_seq
        and linking.gap_key = milestones.ref_domain
    inner join stretch_of
        on stretch_of.target_domain = milestones.target_domain
        and stretch_of.search_type = milestones.search_type
        and stretch_of.ref_domain = milestones.ref_domain
        and stretch_of.observation_seq = milestones.observation_seq
)

select * from final
