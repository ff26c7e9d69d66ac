-- materialized: table
-- A referring domain that disappeared between two consecutive complete full snapshots.
-- last_week pulls never make a "lost": they only list what is new.
with full_snapshots as (
    select * from stg_full_snapshots
),

full_row_history as (
    select * from int_full_ref_domain_history
),

series_end as (
    select target_domain, search_type, filter_hash, max(full_seq) as last_seq
    from full_snapshots
    group by target_domain, search_type, filter_hash
),

-- in F(i), not in F(i+1); it returns in the first later full snapshot that holds it
lost as (
    select
        prev.target_domain,
        prev.search_type,
        prev.filter_hash,
        prev.ref_domain,
        prev.registrable_domain,
        prev.domain_rank,
        prev.ref_pages,
        prev.snapshot_date as last_seen_on,
        next_snapshot.snapshot_date as lost_on,
        next_snapshot.full_seq as lost_seq,
        prev.held_seq_after as return_seq
    from full_row_history as prev
    inner join full_snapshots as next_snapshot
        on next_snapshot.target_domain = prev.target_domain
        and next_snapshot.search_type = prev.search_type
        and next_snapshot.filter_hash = prev.filter_hash
        and next_snapshot.full_seq = prev.full_seq + 1
    where prev.held_seq_after is null or prev.held_seq_after > prev.full_seq + 1
),

absences as (
    select
        lost.*,
        coalesce(lost.return_seq, series_end.last_seq + 1) - lost.lost_seq as consecutive_absences
    from lost
    inner join series_end
        on series_end.target_domain = lost.target_domain
        and series_end.search_type = lost.search_type
        and series_end.filter_hash = lost.filter_hash
),

final as (
    select
        absences.target_domain,
        absences.search_type,
        absences.ref_domain,
        coalesce(names.ref_domain_unicode, absences.ref_domain) as ref_domain_unicode,
        absences.registrable_domain,
        absences.lost_on,
        absences.last_seen_on,
        absences.domain_rank,
        absences.ref_pages,
        returned.snapshot_date as returned_on,
        absences.consecutive_absences,
        (
            absences.return_seq is null
            and absences.consecutive_absences >= {lost_confirmation_snapshots}
        ) as confirmed
    from absences
    left join full_snapshots as returned
        on returned.target_domain = absences.target_domain
        and returned.search_type = absences.search_type
        and returned.filter_hash = absences.filter_hash
        and returned.full_seq = absences.return_seq
    left join stg_ref_domain_names as names on names.ref_domain = absences.ref_domain
)

select * from final
