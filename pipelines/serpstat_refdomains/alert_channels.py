"""How alerts reach their channels (docs/reporting.md, "Alerts"): Slack through dlt's `send_slack_message` to
`runtime.slack_incoming_hook`, and a generic JSON POST to `alert_webhook_url`. Both URLs are
secrets: registered for redaction from every log, never part of a message or an exception text.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import requests
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from .errors import RefdomainsError
from .redaction import register_secret

if TYPE_CHECKING:
    from .config import Settings

SLACK, WEBHOOK = "slack", "webhook"


@dataclass(frozen=True)
class Retry:
    """How a delivery is retried: `attempts` tries, waits doubling from `initial` up to `maximum`
    seconds, `timeout` seconds for each try."""

    attempts: int = 4
    initial: float = 1.0
    maximum: float = 8.0
    timeout: float = 15.0


DEFAULT_RETRY = Retry()


@dataclass(frozen=True)
class Channel:
    name: str
    url: str = field(repr=False)


class Message(Protocol):
    """What a channel sends: an alert (alerts.Alert) as JSON for a webhook, as text for Slack."""

    @property
    def alert_id(self) -> str: ...

    def payload(self) -> dict[str, Any]: ...

    def text(self) -> str: ...


class DeliveryFailed(RefdomainsError):
    """A channel did not take the alert. The message names the cause, never the URL."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.transient = transient


def channels(settings: Settings) -> list[Channel]:
    """The configured channels; their URLs are registered for redaction from every log."""
    found = [Channel(SLACK, settings.slack_incoming_hook)] if settings.slack_incoming_hook else []
    found += [Channel(WEBHOOK, settings.alert_webhook_url)] if settings.alert_webhook_url else []
    for channel in found:
        for secret in _secret_parts(channel.url):
            register_secret(secret)
    return found


def _secret_parts(url: str) -> list[str]:
    """The URL, and its path, which the HTTP stack logs on its own (urllib3 logs each request's
    path and query). The host alone is no secret (and may be a tracked domain's)."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return [url] + ([path] if len(path) > 1 else [])


def redact_url(text: str, channel: Channel) -> str:
    """`text` without the channel's URL or its path."""
    for secret in sorted(_secret_parts(channel.url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def deliver(channel: Channel, alert: Message, retry: Retry | None = None) -> int:
    """Send the alert, retrying transient failures with exponential backoff; returns the attempts
    made. Raises DeliveryFailed."""
    retry = retry or DEFAULT_RETRY
    attempts = 0

    def once() -> None:
        nonlocal attempts
        attempts += 1
        if channel.name == SLACK:
            _send_slack(channel, alert, retry.timeout)
        else:
            _send_webhook(channel, alert, retry.timeout)

    # reraise: the last DeliveryFailed itself, not tenacity's RetryError
    for attempt in Retrying(stop=stop_after_attempt(retry.attempts),
                            wait=wait_exponential(multiplier=retry.initial, max=retry.maximum),
                            retry=retry_if_exception(lambda e: isinstance(e, DeliveryFailed) and e.transient),
                            reraise=True):
        with attempt:
            once()
    return attempts


def _send_webhook(channel: Channel, alert: Message, timeout: float) -> None:
    try:
        response = requests.post(channel.url, json=alert.payload(), timeout=(min(timeout, 5.0), timeout),
                                 headers={"X-Refdomains-Alert-Id": alert.alert_id})
    except requests.Timeout:
        raise DeliveryFailed(f"no answer within {timeout:g} s", transient=True) from None
    except requests.RequestException:
        raise DeliveryFailed("could not connect", transient=True) from None
    _check_status(response.status_code)


def _check_status(status: int) -> None:
    if status >= 400:
        raise DeliveryFailed(f"HTTP {status}", transient=status >= 500 or status in (408, 429))


class _DropDltSlackWarning(logging.Filter):
    """dlt's helper logs a warning of its own for every refused try; one line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "notification to slack" not in record.getMessage()


def _send_slack(channel: Channel, alert: Message, timeout: float) -> None:
    """dlt's `send_slack_message`, which has no timeout of its own: a try that hangs is given up
    after `timeout` seconds (its daemon thread cannot keep the process alive)."""
    from dlt.common.runtime.slack import send_slack_message

    outcome: dict[str, BaseException | None] = {}

    def post() -> None:
        try:
            send_slack_message(channel.url, alert.text())
            outcome["error"] = None
        except BaseException as error:  # classified below, without its text (it holds the URL)
            outcome["error"] = error

    quiet = _DropDltSlackWarning()
    dlt_logger = logging.getLogger("dlt")
    dlt_logger.addFilter(quiet)
    try:
        worker = threading.Thread(target=post, name="refdomains-slack", daemon=True)
        worker.start()
        worker.join(timeout)
    finally:
        dlt_logger.removeFilter(quiet)
    if "error" not in outcome:
        raise DeliveryFailed(f"no answer within {timeout:g} s", transient=True)
    error = outcome["error"]
    if error is None:
        return
    if isinstance(error, requests.HTTPError) and error.response is not None:
        _check_status(error.response.status_code)
    if isinstance(error, requests.Timeout):
        raise DeliveryFailed("timed out", transient=True)
    if isinstance(error, requests.RequestException):
        raise DeliveryFailed("could not connect", transient=True)
    raise DeliveryFailed(type(error).__name__, transient=False)


