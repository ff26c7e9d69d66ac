-- materialized: table
-- The referring domains of each target's latest readable full snapshot.
with readable as (
    select * from stg_snapshots
),

snapshot_rows as (
    select * from stg_ref_domains
),

changes as (
    select * from int_full_snapshot_changes
),

pulled as (
    select * from int_last_week_additions
),

latest as (
    select
        snapshot_key,
        snapshot_date,
        target_role,
        competitor_of,
        row_number() over (
            partition by target_domain, search_type
            order by snapshot_date desc
        ) as recency
    from readable
    where snapshot_kind = 'full'
),

current_rows as (
    select
        snapshot_rows.*,
        latest.target_role,
        latest.competitor_of
    from snapshot_rows
    -- by date as well: DuckDB then reads only the blocks of the latest days
    inner join latest
        on latest.snapshot_date = snapshot_rows.snapshot_date
        and latest.snapshot_key = snapshot_rows.snapshot_key
    where latest.recency = 1
),

-- The first readable snapshot of the series (full or last_week) that lists the domain, without
-- reading the history's rows: the first full snapshot to hold it is F(first_seq) of its changes
-- (a domain of F0 has its baseline there); a pull that listed it earlier did not find it in the
-- full snapshot before it, so it is among that pull's additions. A domain's first change is one
-- row (a pair lists a domain once): no grouping of the history.
first_held as (
    select series_key, ref_domain, first_seq
    from changes
    where full_seq = first_seq
),

full_dates as (
    select series_key, full_seq, snapshot_date
    from readable
    where snapshot_kind = 'full'
),

first_pulled as (
    select series_key, ref_domain, min(snapshot_date) as first_pulled_on
    from pulled
    group by series_key, ref_domain
),

final as (
    select
        current_rows.target_domain,
        current_rows.search_type,
        current_rows.target_role,
        current_rows.competitor_of,
        current_rows.snapshot_date,
        current_rows.ref_domain,
        current_rows.ref_domain_unicode,
        current_rows.registrable_domain,
        current_rows.domain_rank,
        current_rows.ref_pages,
        case
            when first_pulled.first_pulled_on < full_dates.snapshot_date then first_pulled.first_pulled_on
            else full_dates.snapshot_date
        end as first_seen_on
    from current_rows
    inner join first_held
        on first_held.series_key = current_rows.series_key
        and first_held.ref_domain = current_rows.ref_domain
    inner join full_dates
        on full_dates.series_key = current_rows.series_key
        and full_dates.full_seq = first_held.first_seq
    left join first_pulled
        on first_pulled.series_key = current_rows.series_key
        and first_pulled.ref_domain = current_rows.ref_domain
)

select * from final
