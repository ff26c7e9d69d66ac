-- materialized: table
-- A referring domain that appeared: one row per episode (README: Models).
-- Candidates come from two detectors that share one reference point, the full snapshot that
-- precedes the detection; candidates of a domain with the same preceding snapshot are one row.
with changes as (
    select * from int_full_snapshot_changes
),

pulled_rows as (
    select * from stg_ref_domains
),

-- the same changes imported again for what the full snapshots knew of the pulled domains: a CTE
-- read twice is materialized whole (DuckDB, PostgreSQL)
known_changes as (
    select * from int_full_snapshot_changes
),

-- in F(i+1) and not in F(i)
diff_candidates as (
    select
        series_key,
        target_domain,
        search_type,
        ref_domain,
        ref_domain_unicode,
        registrable_domain,
        domain_rank,
        ref_pages,
        snapshot_date as detected_on,
        previous_snapshot_date,
        full_seq - 1 as previous_seq,
        'snapshot_diff' as detected_by,
        first_seq
    from changes
    where change = 'added'
),

last_week_rows as (
    select * from pulled_rows
    where snapshot_kind = 'last_week'
),

-- what the full snapshots knew of the few domains the last_week pulls listed: when each first
-- held it, and whether the snapshot the pull compares against did, read from the domains' changes
-- (never from the history's rows): held if its last change at or before that snapshot left it
-- held (added or baseline, not removed)
listed as (
    select distinct series_key, ref_domain, previous_full_seq
    from last_week_rows
),

known as (
    select
        listed.series_key,
        listed.ref_domain,
        listed.previous_full_seq,
        min(known_changes.first_seq) as first_seq,
        -- the last change: 2 x its position, + 1 if it left the domain held
        coalesce(max(
            case when known_changes.full_seq <= listed.previous_full_seq then
                2 * known_changes.full_seq + case when known_changes.change = 'removed' then 0 else 1 end
            end
        ) % 2, 0) as held_before_pull
    from listed
    inner join known_changes
        on known_changes.series_key = listed.series_key
        and known_changes.ref_domain = listed.ref_domain
    group by listed.series_key, listed.ref_domain, listed.previous_full_seq
),

-- in a pull and not in the latest full snapshot dated strictly before it (if any)
last_week_candidates as (
    select
        last_week_rows.series_key,
        last_week_rows.target_domain,
        last_week_rows.search_type,
        last_week_rows.ref_domain,
        last_week_rows.ref_domain_unicode,
        last_week_rows.registrable_domain,
        last_week_rows.domain_rank,
        last_week_rows.ref_pages,
        last_week_rows.snapshot_date as detected_on,
        last_week_rows.previous_full_date as previous_snapshot_date,
        last_week_rows.previous_full_seq as previous_seq,
        'last_week' as detected_by,
        known.first_seq
    from last_week_rows
    left join known
        on known.series_key = last_week_rows.series_key
        and known.ref_domain = last_week_rows.ref_domain
        and known.previous_full_seq = last_week_rows.previous_full_seq
    where coalesce(known.held_before_pull, 0) = 0
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
            partition by series_key, ref_domain, previous_seq
            order by detected_on, case when detected_by = 'snapshot_diff' then 0 else 1 end
        ) as detection_order,
        min(detected_by) over (partition by series_key, ref_domain, previous_seq) as first_detector,
        max(detected_by) over (partition by series_key, ref_domain, previous_seq) as last_detector
    from candidates
),

final as (
    select
        episodes.target_domain,
        episodes.search_type,
        episodes.ref_domain,
        episodes.ref_domain_unicode,
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
    where episodes.detection_order = 1
)

select * from final
