"""Secrets out of every path a message can take: log records, exception texts, reprs.

The API token travels as a query parameter, which requests and urllib3 like to print, and alert
webhooks are URLs; both are registered here once and replaced by `***` wherever a log record or a
message of this package could carry them. It imports nothing of the package, so every module may
use it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote


class _RedactingFilter(logging.Filter):
    """Rewrites log records so no registered secret survives (urllib3 logs full request URLs)."""

    def __init__(self) -> None:
        super().__init__("serpstat-redact")
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_REDACTOR = _RedactingFilter()
# Loggers that may print a request URL or our own messages. Filters on a logger are not inherited
# by its children, so each one that emits is named.
_REDACTED_LOGGERS = ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "requests",
                     "serpstat_refdomains", "serpstat_refdomains.client", "dlt")


def register_secret(secret: str) -> None:
    """Make every log record of the HTTP stack and this package drop `secret`."""
    if not secret:
        return
    _REDACTOR.secrets.update({secret, quote(secret, safe="")})
    for name in _REDACTED_LOGGERS:
        log = logging.getLogger(name)
        if _REDACTOR not in log.filters:
            log.addFilter(_REDACTOR)


def redact(text: str, secrets: set[str] | None = None) -> str:
    for secret in sorted(secrets if secrets is not None else _REDACTOR.secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text
