-- materialized: view
-- Each side's referring domains at each observation of a tracked domain's gap, keyed by
-- `gap_key`: ref_domain without a leading `www.` (unless that is all of its registrable domain),
-- so www.example.com and example.com are one site whichever spelling each side lists.
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
        case
            when full_rows.ref_domain like 'www.%' and full_rows.ref_domain <> full_rows.registrable_domain
                then substr(full_rows.ref_domain, 5)
            else full_rows.ref_domain
        end as gap_key,
        full_rows.registrable_domain,
        full_rows.domain_rank,
        full_rows.ref_pages
    from states
    inner join full_rows
        on full_rows.target_domain = states.side_domain
        and full_rows.search_type = states.side_search_type
        and full_rows.snapshot_date = states.snapshot_date
)

select * from side_rows
