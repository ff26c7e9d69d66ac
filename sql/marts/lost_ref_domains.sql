-- materialized: table
-- A referring domain that disappeared between two consecutive complete full snapshots.
-- last_week pulls never make a "lost": they only list what is new.
with changes as (
    select * from int_full_snapshot_changes
),

-- in F(i), not in F(i+1); it returns in the first later full snapshot that holds it
lost as (
    select * from changes
    where change = 'removed'
),

absences as (
    select
        lost.*,
        coalesce(lost.returned_seq, lost.last_full_seq + 1) - lost.full_seq as consecutive_absences
    from lost
),

final as (
    select
        absences.target_domain,
        absences.search_type,
        absences.target_role,
        absences.competitor_of,
        absences.ref_domain,
        absences.ref_domain_unicode,
        absences.registrable_domain,
        absences.snapshot_date as lost_on,
        absences.previous_snapshot_date as last_seen_on,
        absences.domain_rank,
        absences.ref_pages,
        absences.returned_on,
        absences.consecutive_absences,
        (
            absences.returned_seq is null
            and absences.consecutive_absences >= {lost_confirmation_snapshots}
        ) as confirmed
    from absences
)

select * from final
