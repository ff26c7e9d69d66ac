"""Change alerts (docs/reporting.md, "Alerts"): after a run whose models built, one message per channel with,
per tracked domain, what changed since the channel's last alert.

Events: confirmed losses (`lost_ref_domains.confirmed`) and new or returning referring domains
(`new_ref_domains`) with `domain_rank >= alert_min_domain_rank`, and gap openings
(`link_gap_changes`) still open in `link_gap` with `max_domain_rank` at least as high.

Exactly once: an event is identified by (target_domain, search_type, change, ref_domain,
event_date); what a channel received is recorded in the destination's `alerts_sent` after the
channel accepted it. A rerun or a `--force` rebuilds the same events, which are recorded; a failed
delivery records nothing, so the next alert carries them. A delivery is retried with backoff; a
final failure is one warning line and never changes a run's outcome.

Channels, both secrets, never printed or logged: dlt's `runtime.slack_incoming_hook` (sent with
dlt's own `send_slack_message`) and `[sources.serpstat] alert_webhook_url` (a generic JSON POST);
how they are reached is alert_channels.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .alert_channels import DEFAULT_RETRY, Channel, DeliveryFailed, Retry, channels, deliver, redact_url
from .constants import ALERTS_SENT_TABLE, ATTEMPTS_TABLE, COMPETITORS_TABLE, DEFAULT_SEARCH_TYPE, SNAPSHOTS_TABLE
from .errors import first_line
from .warehouse import loader_file_format, table_exists

__all__ = ["DEFAULT_RETRY", "Alert", "Channel", "DeliveryFailed", "Event", "Retry", "after_run", "channels",
           "deliver", "dry_run", "pending", "previews", "record", "send_pending"]

if TYPE_CHECKING:
    import dlt

    from .config import Settings

logger = logging.getLogger(__name__)

SENT_TABLE = ALERTS_SENT_TABLE
# events listed per tracked domain and kind; the rest are counted in an "and N more" line
TOP = 10
KINDS = (("lost", "Lost (confirmed)"), ("new", "New"), ("gap_opened", "Link-gap opportunities"))


@dataclass(frozen=True)
class Event:
    target_domain: str
    search_type: str
    change: str  # lost | new | returned | gap_opened
    ref_domain: str
    event_date: dt.date
    ref_domain_unicode: str
    domain_rank: int | None
    detail: str  # the rest of its line: dates, or the competitors it links to

    @property
    def kind(self) -> str:
        return "new" if self.change == "returned" else self.change

    @property
    def event_id(self) -> str:
        key = "|".join((self.target_domain, self.search_type, self.change, self.ref_domain,
                        self.event_date.isoformat()))
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def describe(self) -> str:
        rank = "rank ?" if self.domain_rank is None else f"rank {self.domain_rank}"
        return f"{self.ref_domain_unicode} ({rank}) {self.detail}"


@dataclass
class Alert:
    """What one channel has not received yet."""

    channel: str
    events: list[Event]
    last_sent_at: dt.datetime | None  # the channel's previous alert; None: its first
    credits_spent: int  # Serpstat credits of every fetch attempt since then
    credits_since: dt.datetime | None  # when that count starts (the first attempt for a first alert)

    @property
    def alert_id(self) -> str:
        keys = sorted(e.event_id for e in self.events)
        return hashlib.sha256("|".join([self.channel, *keys]).encode()).hexdigest()[:16]

    def grouped(self) -> dict[tuple[str, str], dict[str, list[Event]]]:
        """Events per tracked domain and kind, highest rank first."""
        order = sorted(self.events, key=lambda e: (-(e.domain_rank if e.domain_rank is not None else -1),
                                                   -e.event_date.toordinal(), e.ref_domain))
        groups: dict[tuple[str, str], dict[str, list[Event]]] = {}
        for event in order:
            groups.setdefault((event.target_domain, event.search_type), {}).setdefault(event.kind, []).append(event)
        return dict(sorted(groups.items()))

    def outline(self) -> tuple[str, list[tuple[str, list[tuple[str, int, list[str]]]]], str]:
        """The message's parts, plain: its title; per tracked domain, each kind's heading, its
        count and the lines listed (TOP, highest rank first); the credits line. `text` marks them
        up for Slack, the report as HTML."""
        if self.last_sent_at is None:
            since = "the first alert on this channel"
        else:
            since = f"since the last alert ({self.last_sent_at:%Y-%m-%d %H:%M} UTC)"
        title = f"Serpstat referring domains: {len(self.events)} change{'s' * (len(self.events) != 1)}, {since}"
        domains = []
        for (target, search_type), kinds in self.grouped().items():
            shown = target if search_type == DEFAULT_SEARCH_TYPE else f"{target} ({search_type})"
            domains.append((shown, [(heading, len(kinds[kind]), [e.describe() for e in kinds[kind][:TOP]])
                                    for kind, heading in KINDS if kinds.get(kind)]))
        start = f" since {self.credits_since:%Y-%m-%d %H:%M} UTC" if self.credits_since else ""
        return title, domains, f"Credits spent{start}: {self.credits_spent:,}"

    def text(self) -> str:
        """The message: Slack's mrkdwn, also plain text."""
        title, domains, credits = self.outline()
        out = [f"*{title}*"]
        for shown, kinds in domains:
            out.append(f"*{shown}*")
            for heading, total, lines in kinds:
                out.append(f"{heading}: {total}")
                out += [f"• {line}" for line in lines]
                if total > len(lines):
                    out.append(f"• … and {total - len(lines)} more")
        out.append(credits)
        return "\n".join(out)

    def payload(self) -> dict[str, Any]:
        """The generic webhook's JSON: the text, and the same events as data."""
        targets = []
        for (target, search_type), kinds in self.grouped().items():
            entry: dict[str, Any] = {"target_domain": target, "search_type": search_type}
            for kind, _ in KINDS:
                events = kinds.get(kind, [])
                entry[kind] = {"total": len(events), "more": max(0, len(events) - TOP),
                               "items": [_item(e) for e in events[:TOP]]}
            targets.append(entry)
        return {
            "alert_id": self.alert_id,
            "source": "serpstat-refdomains",
            "since": self.last_sent_at.isoformat() if self.last_sent_at else None,
            "events": len(self.events),
            # every event the message covers, listed or counted: a receiver can drop one it already has
            "event_ids": sorted(e.event_id for e in self.events),
            "credits_spent": self.credits_spent,
            "targets": targets,
            "text": self.text(),
        }


def _item(event: Event) -> dict[str, Any]:
    return {"event_id": event.event_id, "change": event.change, "ref_domain": event.ref_domain,
            "ref_domain_unicode": event.ref_domain_unicode, "domain_rank": event.domain_rank,
            "event_date": event.event_date.isoformat(), "detail": event.detail}


# --- what is pending ---------------------------------------------------------------------
def _unsent(client, alias: str, change_sql: str, date_column: str) -> str:
    """` AND NOT EXISTS` a row of alerts_sent for the event on the channel (bound as a parameter)."""
    sent = client.make_qualified_table_name(SENT_TABLE)
    return (f" AND NOT EXISTS (SELECT 1 FROM {sent} sent WHERE sent.channel = %s "
            f"AND sent.target_domain = {alias}.target_domain AND sent.search_type = {alias}.search_type "
            f"AND sent.change = {change_sql} AND sent.ref_domain = {alias}.ref_domain "
            f"AND sent.event_date = {alias}.{date_column})")


def _tracked(client, alias: str) -> str:
    """Only tracked domains, not series fetched as someone's competitor (all of them when no run
    has recorded its configuration yet)."""
    table = client.make_qualified_table_name(COMPETITORS_TABLE)
    if not table_exists(client, COMPETITORS_TABLE) or not client.execute_sql(f"SELECT count(*) FROM {table}")[0][0]:
        return ""
    return (f" AND EXISTS (SELECT 1 FROM {table} tracked WHERE tracked.target_domain = {alias}.target_domain "
            f"AND tracked.search_type = {alias}.search_type)")


def pending(pipeline: dlt.Pipeline, channel: str, min_rank: int = 0) -> Alert:
    """The events `channel` has not received, from the models as they are built now."""
    with pipeline.sql_client() as client:
        def table(name: str) -> str:
            return client.make_qualified_table_name(name)

        have_sent = table_exists(client, SENT_TABLE)

        def unsent(alias: str, change_sql: str, date_column: str) -> tuple[str, list[Any]]:
            if not have_sent:
                return "", []
            return _unsent(client, alias, change_sql, date_column), [channel]

        events: list[Event] = []
        returned = "CASE WHEN n.is_returning THEN 'returned' ELSE 'new' END"
        queries = []
        if table_exists(client, "lost_ref_domains"):
            extra, params = unsent("l", "'lost'", "lost_on")
            queries.append((
                f"SELECT l.target_domain, l.search_type, 'lost', l.ref_domain, l.lost_on, l.ref_domain_unicode, "
                f"l.domain_rank, l.last_seen_on, NULL FROM {table('lost_ref_domains')} l "
                f"WHERE l.confirmed AND coalesce(l.domain_rank, 0) >= %s{_tracked(client, 'l')}{extra}",
                [min_rank, *params]))
        if table_exists(client, "new_ref_domains"):
            extra, params = unsent("n", returned, "detected_on")
            queries.append((
                f"SELECT n.target_domain, n.search_type, {returned}, n.ref_domain, n.detected_on, "
                f"n.ref_domain_unicode, n.domain_rank, n.previous_snapshot_date, NULL "
                f"FROM {table('new_ref_domains')} n "
                f"WHERE coalesce(n.domain_rank, 0) >= %s{_tracked(client, 'n')}{extra}",
                [min_rank, *params]))
        if table_exists(client, "link_gap_changes") and table_exists(client, "link_gap"):
            extra, params = unsent("c", "'gap_opened'", "event_date")
            queries.append((
                f"SELECT c.target_domain, c.search_type, 'gap_opened', c.ref_domain, c.event_date, "
                f"g.ref_domain_unicode, g.max_domain_rank, NULL, g.competitor_domains "
                f"FROM {table('link_gap_changes')} c INNER JOIN {table('link_gap')} g "
                f"ON g.target_domain = c.target_domain AND g.search_type = c.search_type "
                f"AND g.ref_domain = c.ref_domain AND g.in_gap_since = c.event_date "
                f"WHERE c.change = 'gap_opened' AND coalesce(g.max_domain_rank, 0) >= %s{extra}",
                [min_rank, *params]))
        for sql, params in queries:
            for row in client.execute_sql(sql, *params) or []:
                events.append(_event(row))
        last_sent_at = None
        if have_sent:
            found = client.execute_sql(f"SELECT max(sent_at) FROM {table(SENT_TABLE)} WHERE channel = %s", channel)
            last_sent_at = _utc(found[0][0]) if found and found[0][0] is not None else None
        spent, since = _credits_since(client, last_sent_at)
    return Alert(channel, events, last_sent_at, spent, since)


def _event(row: Sequence[Any]) -> Event:
    target, search_type, change, ref_domain, day, unicode, rank, previous, linked_by = row
    day = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
    if change == "lost":
        detail = f"lost on {day}, last seen {previous}"
    elif change == "gap_opened":
        detail = f"links to {linked_by}; in the gap since {day}"
    else:
        detail = f"{'returned' if change == 'returned' else 'new'} on {day}"
    return Event(target, search_type, change, ref_domain, day, unicode or ref_domain,
                 None if rank is None else int(rank), detail)


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _credits_since(client, since: dt.datetime | None) -> tuple[int, dt.datetime | None]:
    """Credits of every fetch attempt after `since` (all of them for a first alert), and when the
    count starts. Datasets from before `snapshot_attempts` existed count the ledger."""
    table = ATTEMPTS_TABLE if table_exists(client, ATTEMPTS_TABLE) else SNAPSHOTS_TABLE
    if not table_exists(client, table):
        return 0, since
    where, params = ("WHERE started_at > %s", [since]) if since is not None else ("", [])
    rows = client.execute_sql(f"SELECT coalesce(sum(credits_spent), 0), min(started_at) "
                              f"FROM {client.make_qualified_table_name(table)} {where}", *params)
    spent, first = rows[0] if rows else (0, None)
    return int(spent or 0), since if since is not None else (_utc(first) if first is not None else None)


# --- the record --------------------------------------------------------------------------
def record(pipeline: dlt.Pipeline, alert: Alert, sent_at: dt.datetime) -> None:
    """Append what the channel received to `alerts_sent` (one dlt load; `listed` = named in the
    message, else counted in an "and N more" line)."""
    import dlt
    import pyarrow as pa

    listed = {e.event_id for kinds in alert.grouped().values() for events in kinds.values() for e in events[:TOP]}
    table = pa.table({
        "channel": [alert.channel] * len(alert.events),
        "alert_id": [alert.alert_id] * len(alert.events),
        "target_domain": [e.target_domain for e in alert.events],
        "search_type": [e.search_type for e in alert.events],
        "change": [e.change for e in alert.events],
        "ref_domain": [e.ref_domain for e in alert.events],
        "event_date": pa.array([e.event_date for e in alert.events], pa.date32()),
        "domain_rank": pa.array([e.domain_rank for e in alert.events], pa.int64()),
        "listed": [e.event_id in listed for e in alert.events],
        "sent_at": pa.array([sent_at] * len(alert.events), pa.timestamp("us", tz="UTC")),
    })
    resource = dlt.resource(table, name=SENT_TABLE, write_disposition="append")
    pipeline.run(resource, loader_file_format=loader_file_format(pipeline))


# --- the whole step ----------------------------------------------------------------------
def send_pending(pipeline: dlt.Pipeline, settings: Settings, retry: Retry | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 ) -> tuple[list[str], bool]:
    """Deliver and record each channel's pending events; returns one line per channel that took
    its alert (or had nothing new), and whether every channel did. A channel that fails is one
    warning line; its events stay pending."""
    retry = retry or DEFAULT_RETRY
    lines, ok = [], True
    for channel in channels(settings):
        try:
            alert = pending(pipeline, channel.name, settings.alert_min_domain_rank)
        except Exception as error:  # an alert never fails a run
            logger.debug("reading pending alerts failed", exc_info=True)
            logger.warning("alert to %s not sent: its events could not be read (%s); they stay pending",
                           channel.name, redact_url(first_line(error), channel))
            ok = False
            continue
        if not alert.events:
            lines.append(f"alerts: nothing new for {channel.name}")
            continue
        try:
            attempts = deliver(channel, alert, retry)
        except DeliveryFailed as failure:
            tries = retry.attempts if failure.transient else "1"
            logger.warning("alert to %s not delivered (%s; %s attempt%s): its %d events stay pending and go "
                           "with the next alert", channel.name, failure, tries, "" if tries == "1" else "s",
                           len(alert.events))
            ok = False
            continue
        try:
            record(pipeline, alert, clock())
        except Exception as error:  # delivered: say what the next alert will do
            logger.debug("recording the alert failed", exc_info=True)
            logger.warning("alert to %s delivered but not recorded (%s): the next alert repeats its %d events",
                           channel.name, redact_url(first_line(error), channel), len(alert.events))
            ok = False
            continue
        lines.append(f"alerts: {len(alert.events)} event{'s' * (len(alert.events) != 1)} sent to {channel.name}"
                     + (f" ({attempts} attempts)" if attempts > 1 else ""))
    return lines, ok


def after_run(pipeline: dlt.Pipeline, settings: Settings) -> list[str]:
    """The run's alert step: nothing without a channel; never raises."""
    try:
        if not channels(settings):
            return []
        return send_pending(pipeline, settings)[0]
    except Exception as error:  # an alert never changes a run's outcome
        logger.debug("alerts failed", exc_info=True)
        logger.warning("alerts not sent (%s): the events stay pending and go with the next alert",
                       first_line(error))
        return []


def previews(pipeline: dlt.Pipeline, settings: Settings) -> list[tuple[str, Alert]]:
    """What each channel would receive now (a channel never alerted when none is configured), with
    who would receive it; channels that would receive the same message are named together."""
    names: list[str | None] = [c.name for c in channels(settings)] or [None]
    grouped: dict[str, tuple[list[str], Alert]] = {}
    for name in names:
        alert = pending(pipeline, name or "", settings.alert_min_domain_rank)
        label = name or "a first alert (no channel configured)"
        grouped.setdefault(alert.text() if alert.events else "", ([], alert))[0].append(label)
    return [(" and ".join(labels), alert) for labels, alert in grouped.values()]


def dry_run(pipeline: dlt.Pipeline, settings: Settings) -> Iterator[str]:
    """What each channel would receive now, as `refdomains alerts --dry-run` prints it."""
    for labels, alert in previews(pipeline, settings):
        yield f"alerts (dry run, nothing sent) for {labels}:"
        yield alert.text() if alert.events else "nothing to send"
