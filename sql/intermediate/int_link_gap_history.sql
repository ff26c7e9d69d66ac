-- materialized: table
-- Every observation at which a donor is in a tracked domain's gap: listed by at least one
-- competitor and not by the tracked domain. Marks where each unbroken stretch in the gap starts
-- and ends. Numbers only besides the keys, plain aggregates and one window sort: at a year of
-- history this reads millions of rows, which DuckDB must spill within its memory limit, and an
-- ordered or DISTINCT aggregate, or the display names carried along, would not fit or be far slower
-- (bench/README.md). The rows link_gap shows get their names in int_link_gap_milestones.
with side_rows as (
    select * from int_link_gap_side_rows
),

-- one row per side and donor: a side listing both www.x and x counts once
per_side as (
    select
        target_domain,
        search_type,
        observation_seq,
        side_domain,
        is_target,
        gap_key,
        max(observed_on) as observed_on,
        max(latest_seq) as latest_seq,
        max(comparable_from_seq) as comparable_from_seq,
        max(domain_rank) as domain_rank,
        sum(ref_pages) as ref_pages
    from side_rows
    group by target_domain, search_type, observation_seq, side_domain, is_target, gap_key
),

donor_states as (
    select
        target_domain,
        search_type,
        observation_seq,
        gap_key as ref_domain,
        max(observed_on) as observed_on,
        max(latest_seq) as latest_seq,
        max(case when is_target then 1 else 0 end) as target_links,
        count(case when not is_target then 1 end) as competitors_linking,
        max(case when not is_target then domain_rank end) as max_domain_rank,
        -- a sum of bigints is HUGEINT in DuckDB and numeric in PostgreSQL
        cast(sum(case when not is_target then ref_pages end) as bigint) as competitor_ref_pages,
        min(case when not is_target then comparable_from_seq end) as comparable_from_seq
    from per_side
    group by target_domain, search_type, observation_seq, gap_key
),

in_gap as (
    select * from donor_states
    where competitors_linking > 0 and target_links = 0
),

-- the neighbouring observations in the gap: one window spec, one sort
neighbours as (
    select
        in_gap.*,
        lag(observation_seq) over (
            partition by target_domain, search_type, ref_domain order by observation_seq
        ) as previous_seq,
        lead(observation_seq) over (
            partition by target_domain, search_type, ref_domain order by observation_seq
        ) as next_seq
    from in_gap
),

final as (
    select
        target_domain,
        search_type,
        observation_seq,
        observed_on,
        latest_seq,
        ref_domain,
        competitors_linking,
        max_domain_rank,
        competitor_ref_pages,
        comparable_from_seq,
        (previous_seq is null or previous_seq < observation_seq - 1) as is_gap_start,
        (next_seq is null or next_seq > observation_seq + 1) as is_gap_end
    from neighbours
)

select * from final
