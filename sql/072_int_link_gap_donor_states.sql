-- materialized: table
-- Every donor any side of a tracked domain's gap lists, at each observation: whether the tracked
-- domain has it, which competitors do, and, while it is in the gap, the stretch of consecutive
-- observations it has been there. Donors are keyed by `ref_domain` without a leading `www.`
-- (unless that is all of the registrable domain): www.example.com and example.com are one site,
-- whichever spelling each side lists.
with states as (
    select * from int_link_gap_observations
),

full_rows as (
    select * from stg_full_ref_domains
),

side_rows as (
    select
        states.target_domain,
        states.search_type,
        states.observed_on,
        states.observation_seq,
        states.latest_seq,
        states.side_domain,
        states.is_target,
        states.comparable_from_seq,
        full_rows.ref_domain,
        coalesce(names.ref_domain_unicode, full_rows.ref_domain) as ref_domain_unicode,
        full_rows.registrable_domain,
        full_rows.domain_rank,
        full_rows.ref_pages,
        (full_rows.ref_domain like 'www.%' and full_rows.ref_domain <> full_rows.registrable_domain) as is_www_alias
    from states
    inner join full_rows
        on full_rows.target_domain = states.side_domain
        and full_rows.search_type = states.side_search_type
        and full_rows.snapshot_date = states.snapshot_date
    left join stg_ref_domain_names as names on names.ref_domain = full_rows.ref_domain
),

keyed as (
    select
        side_rows.*,
        case when is_www_alias then substr(ref_domain, 5) else ref_domain end as gap_key,
        case when is_www_alias then substr(ref_domain_unicode, 5) else ref_domain_unicode end as gap_key_unicode
    from side_rows
),

-- competitor figures count competitors' rows only; string_agg skips the nulls of the target's
donor_states as (
    select
        target_domain,
        search_type,
        observation_seq,
        observed_on,
        latest_seq,
        gap_key as ref_domain,
        min(gap_key_unicode) as ref_domain_unicode,
        min(registrable_domain) as registrable_domain,
        coalesce(bool_or(is_target), false) as target_links,
        count(distinct case when not is_target then side_domain end) as competitors_linking,
        string_agg(distinct case when not is_target then side_domain end, ', '
                   order by case when not is_target then side_domain end nulls first) as competitor_domains,
        max(case when not is_target then domain_rank end) as max_domain_rank,
        -- a sum of bigints is HUGEINT in DuckDB and numeric in PostgreSQL
        cast(sum(case when not is_target then ref_pages end) as bigint) as competitor_ref_pages,
        min(case when not is_target then comparable_from_seq end) as comparable_from_seq
    from keyed
    group by target_domain, search_type, observation_seq, observed_on, latest_seq, gap_key
),

flagged as (
    select
        donor_states.*,
        (competitors_linking > 0 and not target_links) as in_gap
    from donor_states
),

-- consecutive observations in the gap share one stretch number
stretches as (
    select
        flagged.*,
        observation_seq - row_number() over (
            partition by target_domain, search_type, ref_domain, in_gap
            order by observation_seq
        ) as stretch
    from flagged
),

final as (
    select
        target_domain,
        search_type,
        observation_seq,
        observed_on,
        latest_seq,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        target_links,
        competitors_linking,
        competitor_domains,
        max_domain_rank,
        competitor_ref_pages,
        comparable_from_seq,
        in_gap,
        case when in_gap then min(observation_seq) over (
            partition by target_domain, search_type, ref_domain, in_gap, stretch
        ) end as gap_start_seq,
        case when in_gap then max(observation_seq) over (
            partition by target_domain, search_type, ref_domain, in_gap, stretch
        ) end as gap_end_seq,
        case when in_gap then min(observed_on) over (
            partition by target_domain, search_type, ref_domain, in_gap, stretch
        ) end as in_gap_since
    from stretches
)

select * from final
