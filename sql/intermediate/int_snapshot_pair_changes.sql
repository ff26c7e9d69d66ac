-- materialized: incremental
-- unique_key: pair_key
-- keys: int_snapshot_pairs
-- The donors that differ between the two snapshots of each pair in int_snapshot_pairs: `added`
-- (in the later, not in the earlier) and, for full pairs, `removed` (in F(i), not in F(i+1)),
-- with the domain's metrics from the snapshot that holds it, and one `compared` row per pair, so
-- a pair without changes is known to be compared. F0, paired with nothing, has every donor
-- `added`: the baseline. A last_week pull's `added` donors are the ones it detects as new.
--
-- Incremental: a pair's snapshots never change under its key, so a build compares only the pairs
-- it has not compared yet (a weekly run: one per series) and the runner deletes the rows of pairs
-- that are gone. The work and memory of a build follow a week's snapshots, not the history. The
-- runner repeats this SELECT until no pair is left, each time over the next pairs (below), so a
-- first build over a long history is many bounded steps. `refdomains models --full-refresh`
-- compares every pair again.
with pairs as (
    select * from int_snapshot_pairs
),

compared as (
    select * from int_snapshot_pair_changes
),

snapshot_rows as (
    select * from stg_ref_domains
),

pending as (
    select pairs.*
    from pairs
    where not exists (
        select 1
        from compared
        where compared.pair_key = pairs.pair_key
    )
),

-- The next step's pairs: in key order, while their rows stay within {pair_batch_rows} (at least one
-- pair), among the first 500 pending. The running total is a self-join over those 500: BigQuery
-- refuses the null ordering sqlglot spells out for an ordered aggregate window.
numbered as (
    select
        pending.*,
        row_number() over (order by pair_key) as pending_seq
    from pending
),

first_pending as (
    select * from numbered
    where pending_seq <= 500
),

running as (
    select
        first_pending.pending_seq,
        sum(before_it.pair_rows) as rows_through
    from first_pending
    inner join first_pending as before_it on before_it.pending_seq <= first_pending.pending_seq
    group by first_pending.pending_seq
),

batch as (
    select first_pending.*
    from first_pending
    inner join running on running.pending_seq = first_pending.pending_seq
    where running.rows_through - first_pending.pair_rows < {pair_batch_rows}
),

-- Both snapshots of each pair, read in one join: side 0 the earlier, 1 the later. The pair is its
-- number in this step, not its key: the comparison below holds every row of the step's
-- snapshots, and a key of two snapshot versions on each would double what it holds.
sides as (
    select pending_seq, previous_snapshot_key as snapshot_key, previous_snapshot_date as snapshot_date, 0 as side
    from batch
    where previous_snapshot_key is not null
    union all
    select pending_seq, snapshot_key, snapshot_date, 1 as side
    from batch
),

side_rows as (
    select
        sides.pending_seq,
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
        pending_seq,
        ref_domain,
        max(side) as side,
        max(ref_domain_unicode) as ref_domain_unicode,
        max(registrable_domain) as registrable_domain,
        max(domain_rank) as domain_rank,
        max(ref_pages) as ref_pages
    from side_rows
    group by pending_seq, ref_domain
    having count(*) = 1
),

-- of a last_week pair only the pulled side's (the full snapshot's other donors are no news)
changed as (
    select
        batch.pair_key,
        one_sided.ref_domain,
        one_sided.ref_domain_unicode,
        case when one_sided.side = 0 then 'removed' else 'added' end as change,
        one_sided.registrable_domain,
        one_sided.domain_rank,
        one_sided.ref_pages
    from one_sided
    inner join batch on batch.pending_seq = one_sided.pending_seq
    where batch.pair_kind = 'full' or one_sided.side = 1
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
    from batch
),

final as (
    select * from changed
    union all
    select * from markers
)

select * from final
