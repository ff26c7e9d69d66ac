-- materialized: view
-- Each side's referring domains at each observation of a tracked domain's gap, keyed by
-- `gap_key`: ref_domain without a leading `www.` (unless that is all of its registrable domain),
-- so www.example.com and example.com are one site whichever spelling each side lists.
with states as (
    select * from int_link_gap_observations
),

snapshot_rows as (
    select * from stg_ref_domains
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
        snapshot_rows.ref_domain,
        snapshot_rows.ref_domain_unicode,
        snapshot_rows.registrable_domain,
        snapshot_rows.domain_rank,
        snapshot_rows.ref_pages,
        (
            snapshot_rows.ref_domain like 'www.%'
            and snapshot_rows.ref_domain <> snapshot_rows.registrable_domain
        ) as is_www_alias
    from states
    inner join snapshot_rows on snapshot_rows.snapshot_key = states.snapshot_key
),

keyed as (
    select
        side_rows.*,
        case when is_www_alias then substr(ref_domain, 5) else ref_domain end as gap_key,
        case when is_www_alias then substr(ref_domain_unicode, 5) else ref_domain_unicode end as gap_key_unicode
    from side_rows
)

select * from keyed
