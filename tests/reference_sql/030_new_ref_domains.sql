-- materialized: table
-- A referring domain that appeared: one row per episode (README: Models).
-- Candidates come from two detectors that share one reference point, the full snapshot that
-- precedes the detection; candidates of a domain with the same preceding snapshot are one row.
with full_snapshots as (
    select * from stg_full_snapshots
),

full_row_history as (
    select * from int_full_ref_domain_history
),

-- the full rows again for the last_week detector, imported on their own: a CTE read twice would
-- be materialized (DuckDB keeps it, 13M rows at a year of history)
known_full_rows as (
    select * from stg_full_ref_domains
),

snapshot_rows as (
    select * from stg_ref_domains
),

-- in F(i+1) and not in F(i); F0 is the baseline and yields nothing
diff_candidates as (
    select
        cur.target_domain,
        cur.search_type,
        cur.filter_hash,
        cur.ref_domain,
        cur.registrable_domain,
        cur.domain_rank,
        cur.ref_pages,
        cur.snapshot_date as detected_on,
        prev_snapshot.snapshot_date as previous_snapshot_date,
        prev_snapshot.full_seq as previous_seq,
        'snapshot_diff' as detected_by,
        cur.first_seq
    from full_row_history as cur
    inner join full_snapshots as prev_snapshot
        on prev_snapshot.target_domain = cur.target_domain
        and prev_snapshot.search_type = cur.search_type
        and prev_snapshot.filter_hash = cur.filter_hash
        and prev_snapshot.full_seq = cur.full_seq - 1
    where cur.held_seq_before is null or cur.held_seq_before < cur.full_seq - 1
),

last_week_rows as (
    select * from snapshot_rows
    where snapshot_kind = 'last_week'
),

-- each last_week pull against the latest full snapshot dated strictly before it (if any)
last_week_pulls as (
    select
        pull.target_domain,
        pull.search_type,
        pull.filter_hash,
        pull.snapshot_date,
        max(prior.full_seq) as previous_seq
    from stg_snapshots as pull
    left join full_snapshots as prior
        on prior.target_domain = pull.target_domain
        and prior.search_type = pull.search_type
        and prior.filter_hash = pull.filter_hash
        and prior.snapshot_date < pull.snapshot_date
    where pull.snapshot_kind = 'last_week'
    group by pull.target_domain, pull.search_type, pull.filter_hash, pull.snapshot_date
),

-- the full rows of the few domains a last_week pull listed: the anti-join and first appearance
-- below then read these instead of the whole history
last_week_domains as (
    select distinct target_domain, search_type, filter_hash, ref_domain
    from last_week_rows
),

last_week_domain_full_rows as (
    select
        known.target_domain,
        known.search_type,
        known.filter_hash,
        known.ref_domain,
        known.full_seq
    from known_full_rows as known
    inner join last_week_domains as listed
        on listed.target_domain = known.target_domain
        and listed.search_type = known.search_type
        and listed.filter_hash = known.filter_hash
        and listed.ref_domain = known.ref_domain
),

last_week_first_appearance as (
    select target_domain, search_type, filter_hash, ref_domain, min(full_seq) as first_seq
    from last_week_domain_full_rows
    group by target_domain, search_type, filter_hash, ref_domain
),

last_week_candidates as (
    select
        lw.target_domain,
        lw.search_type,
        lw.filter_hash,
        lw.ref_domain,
        lw.registrable_domain,
        lw.domain_rank,
        lw.ref_pages,
        lw.snapshot_date as detected_on,
        prior.snapshot_date as previous_snapshot_date,
        pull.previous_seq,
        'last_week' as detected_by,
        first_appearance.first_seq
    from last_week_rows as lw
    inner join last_week_pulls as pull
        on pull.target_domain = lw.target_domain
        and pull.search_type = lw.search_type
        and pull.filter_hash = lw.filter_hash
        and pull.snapshot_date = lw.snapshot_date
    left join full_snapshots as prior
        on prior.target_domain = pull.target_domain
        and prior.search_type = pull.search_type
        and prior.filter_hash = pull.filter_hash
        and prior.full_seq = pull.previous_seq
    left join last_week_first_appearance as first_appearance
        on first_appearance.target_domain = lw.target_domain
        and first_appearance.search_type = lw.search_type
        and first_appearance.filter_hash = lw.filter_hash
        and first_appearance.ref_domain = lw.ref_domain
    where not exists (
        select 1
        from last_week_domain_full_rows as known
        where known.target_domain = lw.target_domain
            and known.search_type = lw.search_type
            and known.filter_hash = lw.filter_hash
            and known.full_seq = pull.previous_seq
            and known.ref_domain = lw.ref_domain
    )
),

candidates as (
    select * from diff_candidates
    union all
    select * from last_week_candidates
),

-- one episode per (series, domain, preceding snapshot); the earliest detection describes it
episodes as (
    select
        candidates.*,
        row_number() over (
            partition by target_domain, search_type, filter_hash, ref_domain, previous_seq
            order by detected_on, case when detected_by = 'snapshot_diff' then 0 else 1 end
        ) as detection_order,
        min(detected_by) over (
            partition by target_domain, search_type, filter_hash, ref_domain, previous_seq
        ) as first_detector,
        max(detected_by) over (
            partition by target_domain, search_type, filter_hash, ref_domain, previous_seq
        ) as last_detector
    from candidates
),

final as (
    select
        episodes.target_domain,
        episodes.search_type,
        episodes.ref_domain,
        coalesce(names.ref_domain_unicode, episodes.ref_domain) as ref_domain_unicode,
        episodes.registrable_domain,
        episodes.detected_on,
        episodes.previous_snapshot_date,
        case
            when episodes.first_detector <> episodes.last_detector then 'both'
            else episodes.first_detector
        end as detected_by,
        coalesce(episodes.first_seq < episodes.previous_seq, false) as is_returning,
        episodes.domain_rank,
        episodes.ref_pages
    from episodes
    left join stg_ref_domain_names as names on names.ref_domain = episodes.ref_domain
    where episodes.detection_order = 1
)

select * from final
