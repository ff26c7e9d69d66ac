-- materialized: table
-- One row per snapshot the models may read: `complete` in the ledger AND holding exactly the rows
-- the ledger promises (a snapshot whose load was cut between its two tables would otherwise read
-- as "everything lost"). Everything the models ask about a snapshot as a whole is answered here,
-- once, on the small ledger: its series, its week, and its place among the series' full
-- snapshots; and its target's role (tracked or competitor), which the marts carry from here.
with ledger as (
    select * from snapshots
),

loaded_rows as (
    select * from ref_domains
),

roles as (
    select * from stg_target_roles
),

complete as (
    select
        snapshot_key,
        target_domain,
        search_type,
        filter_hash,
        snapshot_kind,
        snapshot_date,
        rows_loaded,
        started_at,
        -- the snapshot as loaded now: another pull of it (--force, a rerun) changes this. The
        -- time as whole microseconds since the epoch, an integer every engine computes alike
        -- (models/dialects.py spells epoch_us out for each): as text a timestamp takes the
        -- session's time zone, and fractional seconds take each engine's rounding
        snapshot_key
            || '@' || coalesce(cast(epoch_us(finished_at) as varchar), '')
            || '#' || cast(rows_loaded as varchar) as snapshot_version
    from ledger
    where status = 'complete'
        -- A full snapshot missing a row for want of a usable name proves no donor absent (the
        -- row may have been any of them): comparing it would report a donor lost, or new again,
        -- or a gap opened and closed, that never changed. Its series compares around it. A
        -- last_week pull lists new donors only: one missing name hides one, so it is kept.
        and (snapshot_kind <> 'full' or coalesce(rows_rejected, 0) = 0)
),

rows_present as (
    select
        snapshot_key,
        count(*) as rows_present,
        min(pulled_at) as first_pulled_at,
        max(pulled_at) as last_pulled_at
    from loaded_rows
    group by snapshot_key
),

-- The rows must also be the rows of the pull the ledger describes: rows and ledger are merged in
-- two transactions, and a load cut between them can leave another pull's rows under the ledger
-- row, even as many (rows loaded before pulled_at existed carry none and are judged by count).
consistent as (
    select complete.*
    from complete
    left join rows_present on rows_present.snapshot_key = complete.snapshot_key
    where coalesce(rows_present.rows_present, 0) = complete.rows_loaded
        and (
            rows_present.last_pulled_at is null
            or (
                rows_present.first_pulled_at = complete.started_at
                and rows_present.last_pulled_at = complete.started_at
            )
        )
),

-- A series (target, search type, filter) is one integer from here on: the models join and
-- partition on one narrow column instead of three text columns. It numbers this build's series
-- only; nothing outside a build may keep it.
in_series as (
    select
        consistent.*,
        dense_rank() over (order by target_domain, search_type, filter_hash) as series_key,
        -- the Monday of the ISO week; the runner spells it out for warehouses whose 'week' is not
        cast(date_trunc('week', snapshot_date) as date) as week_start
    from consistent
),

-- full snapshots numbered F0, F1, ... within their series
numbered as (
    select
        in_series.*,
        case
            when snapshot_kind = 'full' then row_number() over (
                partition by series_key, snapshot_kind
                order by snapshot_date
            )
        end as full_seq
    from in_series
),

-- The latest full snapshot of the series dated strictly before each snapshot: what a snapshot
-- diff (for F(i+1), that is F(i)) and a last_week pull compare against. A join, not a running
-- max over the series: BigQuery refuses the null ordering sqlglot must spell out for an ordered
-- aggregate window.
previous_full as (
    select
        snapshot.snapshot_key,
        max(prior.full_seq) as previous_full_seq,
        max(prior.snapshot_date) as previous_full_date
    from numbered as snapshot
    inner join numbered as prior
        on prior.series_key = snapshot.series_key
        and prior.snapshot_kind = 'full'
        and prior.snapshot_date < snapshot.snapshot_date
    group by snapshot.snapshot_key
),

placed as (
    select
        numbered.*,
        previous_full.previous_full_seq,
        previous_full.previous_full_date,
        max(numbered.full_seq) over (partition by numbered.series_key) as last_full_seq,
        roles.target_role,
        roles.competitor_of
    from numbered
    left join previous_full on previous_full.snapshot_key = numbered.snapshot_key
    left join roles
        on roles.target_domain = numbered.target_domain
        and roles.search_type = numbered.search_type
)

select * from placed
