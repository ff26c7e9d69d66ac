-- materialized: table
-- The referring domains of each target's latest readable full snapshot.
with latest as (
    select
        target_domain,
        search_type,
        filter_hash,
        snapshot_date,
        row_number() over (
            partition by target_domain, search_type
            order by snapshot_date desc
        ) as recency
    from stg_snapshots
    where snapshot_kind = 'full'
),

current_rows as (
    select stg_ref_domains.*
    from stg_ref_domains
    inner join latest
        on latest.target_domain = stg_ref_domains.target_domain
        and latest.search_type = stg_ref_domains.search_type
        and latest.filter_hash = stg_ref_domains.filter_hash
        and latest.snapshot_date = stg_ref_domains.snapshot_date
        and latest.recency = 1
    where stg_ref_domains.snapshot_kind = 'full'
),

-- first readable snapshot of the series (full or last_week) that lists the domain
first_seen as (
    select target_domain, search_type, filter_hash, ref_domain, min(snapshot_date) as first_seen_on
    from stg_ref_domains
    group by target_domain, search_type, filter_hash, ref_domain
),

final as (
    select
        current_rows.target_domain,
        current_rows.search_type,
        current_rows.snapshot_date,
        current_rows.ref_domain,
        coalesce(names.ref_domain_unicode, current_rows.ref_domain) as ref_domain_unicode,
        current_rows.registrable_domain,
        current_rows.domain_rank,
        current_rows.ref_pages,
        first_seen.first_seen_on
    from current_rows
    inner join first_seen
        on first_seen.target_domain = current_rows.target_domain
        and first_seen.search_type = current_rows.search_type
        and first_seen.filter_hash = current_rows.filter_hash
        and first_seen.ref_domain = current_rows.ref_domain
    left join stg_ref_domain_names as names on names.ref_domain = current_rows.ref_domain
)

select * from final
