-- materialized: table
-- The referring domains of each target's latest readable full snapshot.
with readable as (
    select * from stg_snapshots
),

snapshot_rows as (
    select * from stg_ref_domains
),

-- the same rows imported again for the first sightings: a CTE read twice is materialized whole
all_rows as (
    select * from stg_ref_domains
),

latest as (
    select
        snapshot_key,
        row_number() over (
            partition by target_domain, search_type
            order by snapshot_date desc
        ) as recency
    from readable
    where snapshot_kind = 'full'
),

current_rows as (
    select snapshot_rows.*
    from snapshot_rows
    inner join latest on latest.snapshot_key = snapshot_rows.snapshot_key
    where latest.recency = 1
),

-- first readable snapshot of the series (full or last_week) that lists the domain
first_seen as (
    select series_key, ref_domain, min(snapshot_date) as first_seen_on
    from all_rows
    group by series_key, ref_domain
),

final as (
    select
        current_rows.target_domain,
        current_rows.search_type,
        current_rows.snapshot_date,
        current_rows.ref_domain,
        current_rows.ref_domain_unicode,
        current_rows.registrable_domain,
        current_rows.domain_rank,
        current_rows.ref_pages,
        first_seen.first_seen_on
    from current_rows
    inner join first_seen
        on first_seen.series_key = current_rows.series_key
        and first_seen.ref_domain = current_rows.ref_domain
)

select * from final
