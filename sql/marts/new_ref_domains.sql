-- materialized: table
-- A referring domain that appeared: one row per episode (README: Models).
-- Candidates come from two detectors that share one reference point, the full snapshot that
-- precedes the detection; candidates of a domain with the same preceding snapshot are one row.
with changes as (
    select * from int_full_snapshot_changes
),

last_week_rows as (
    select * from int_last_week_additions
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
        first_seq,
        target_role,
        competitor_of
    from changes
    where change = 'added'
),

-- when a full snapshot first held each domain a pull detected (null: none ever did): its first
-- change, one row per domain (a pair lists a domain once), read without grouping the history
first_held as (
    select series_key, ref_domain, first_seq
    from changes
    where full_seq = first_seq
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
        last_week_rows.previous_snapshot_date,
        last_week_rows.previous_full_seq as previous_seq,
        'last_week' as detected_by,
        first_held.first_seq,
        last_week_rows.target_role,
        last_week_rows.competitor_of
    from last_week_rows
    left join first_held
        on first_held.series_key = last_week_rows.series_key
        and first_held.ref_domain = last_week_rows.ref_domain
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
        episodes.target_role,
        episodes.competitor_of,
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
