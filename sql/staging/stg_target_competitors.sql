-- materialized: view
-- Each tracked domain's competitors as the latest run recorded them (target_competitors, written
-- by every run from the configuration): the pairs the link gap compares.
with configured as (
    select * from target_competitors
),

pairs as (
    select distinct target_domain, search_type, competitor_domain, competitor_search_type
    from configured
    where competitor_domain is not null
)

select * from pairs
