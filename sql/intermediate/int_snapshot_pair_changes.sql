-- materialized: incremental
-- unique_key: pair_key
-- keys: int_snapshot_pairs
-- size: pair_rows
-- The donors that differ between the two snapshots of each pair in int_snapshot_pairs: `added`
-- (in the later, not in the earlier) and, for full pairs, `removed` (in F(i), not in F(i+1)),
-- with the domain's metrics from the snapshot that holds it, and one `compared` row per pair, so
-- a pair without changes is known to be compared. F0, paired with nothing, has every donor
-- `added`: the baseline. A last_week pull's `added` donors are the ones it detects as new.
--
-- Incremental: a pair's snapshots never change under its key, so the runner keeps the rows of
-- the pairs compared before, deletes those of pairs no longer listed, and gives this SELECT only
-- the pairs it lacks, a step of them at a time (their `pair_rows` bound a step). The work and
-- memory of a build follow a week's snapshots, not the history. `refdomains models
-- --full-refresh` compares every pair again.
with pairs as (
    select * from int_snapshot_pairs
),

snapshot_rows as (
    select * from stg_ref_domains
),

-- each pair as a number: the comparison below holds every row of the pairs' snapshots, and a
-- key naming two snapshot versions on each would double what it holds
numbered as (
    select
        pairs.*,
        row_number() over (order by pair_key) as pair_seq
    from pairs
),

-- both snapshots of each pair, read in one join: side 0 the earlier, 1 the later
sides as (
    select pair_seq, previous_snapshot_key as snapshot_key, previous_snapshot_date as snapshot_date, 0 as side
    from numbered
    where previous_snapshot_key is not null
    union all
    select pair_seq, snapshot_key, snapshot_date, 1 as side
    from numbered
),

side_rows as (
    select
        sides.pair_seq,
        sides.side,
        snapshot_rows.ref_domain,
        snapshot_rows.ref_domain_unicode,
        snapshot_rows.registrable_domain,
        snapshot_rows.domain_rank,
        snapshot_rows.ref_pages
    from sides
    -- by date as well: DuckDB then skips the blocks of other days
    inner join snapshot_rows
        on snapshot_rows.snapshot_date = sides.snapshot_date
        and snapshot_rows.snapshot_key = sides.snapshot_key
),

-- a domain on one side only: its one row gives the values (a domain is in a snapshot once)
one_sided as (
    select
        pair_seq,
        ref_domain,
        max(side) as side,
        max(ref_domain_unicode) as ref_domain_unicode,
        max(registrable_domain) as registrable_domain,
        max(domain_rank) as domain_rank,
        max(ref_pages) as ref_pages
    from side_rows
    group by pair_seq, ref_domain
    having count(*) = 1
),

-- of a last_week pair only the pulled side's (the full snapshot's other donors are no news)
changed as (
    select
        numbered.pair_key,
        one_sided.ref_domain,
        one_sided.ref_domain_unicode,
        case when one_sided.side = 0 then 'removed' else 'added' end as change,
        one_sided.registrable_domain,
        one_sided.domain_rank,
        one_sided.ref_pages
    from one_sided
    inner join numbered on numbered.pair_seq = one_sided.pair_seq
    where numbered.pair_kind = 'full' or one_sided.side = 1
),

markers as (
    select
        pair_key,
        cast(null as varchar) as ref_domain,
        cast(null as varchar) as ref_domain_unicode,
        'compared' as change,
        cast(null as varchar) as registrable_domain,
        cast(null as bigint) as domain_rank,
        cast(null as bigint) as ref_pages
    from numbered
),

final as (
    select * from changed
    union all
    select * from markers
)

select * from final
