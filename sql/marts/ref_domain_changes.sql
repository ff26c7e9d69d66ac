-- materialized: table
-- One row per change event with one date column (event_date): the grain BI tools chart best.
-- A table, like every mart: dlt's dashboard lists tables only (models.catalog.schema_table). The
-- copy is of the changes alone: 126,000 rows, 0.45 s a build at 1,000,000 referring domains
-- (bench/README.md, measured when it was a view for that reason).
-- Exactly the rows of new_ref_domains (new, or returned when the domain had been seen before)
-- and of lost_ref_domains (lost); `confirmed` only means something for a loss.
with new_rows as (
    select * from new_ref_domains
),

lost_rows as (
    select * from lost_ref_domains
),

new_events as (
    select
        detected_on as event_date,
        target_domain,
        search_type,
        target_role,
        competitor_of,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        case when is_returning then 'returned' else 'new' end as change,
        detected_by,
        cast(null as boolean) as confirmed,
        domain_rank,
        ref_pages
    from new_rows
),

lost_events as (
    select
        lost_on as event_date,
        target_domain,
        search_type,
        target_role,
        competitor_of,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        'lost' as change,
        'snapshot_diff' as detected_by,
        confirmed,
        domain_rank,
        ref_pages
    from lost_rows
),

final as (
    select * from new_events
    union all
    select * from lost_events
)

select * from final
