"""Domain normalization: one spelling per referring domain, so snapshots compare exactly.

Serpstat returns donors as it indexed them: Unicode or punycode, any case, sometimes with a
trailing dot. Diffs between snapshots are only as good as this function: `Bücher.de` today and
`xn--bcher-kva.de` next week are the same donor and must not show up as one lost and one new.
"""

from __future__ import annotations

import re
from functools import lru_cache

import idna
from publicsuffixlist import PublicSuffixList

# Letters, digits, hyphen, plus underscore: real hostnames in backlink indexes carry underscores
# (`my_site.blogspot.com`), which IDNA2008 disallows; ASCII labels are therefore checked here
# and only non-ASCII labels go through the IDNA codec.
_ASCII_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# The same rule for a whole lowercase ASCII name at once: the common case, checked in one regex.
_ASCII_DOMAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
MAX_DOMAIN_LENGTH = 253


class InvalidDomain(ValueError):
    """A name that cannot be a domain. The message says why with the offending value; `reason`
    says it without, so rejected rows can be counted by reason."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


# The bundled list ships with the package: no download at run time, results stable per release.
_PSL = PublicSuffixList()


def normalize_domain(raw: object) -> str:
    """Lowercase IDNA ASCII form without trailing dot, or InvalidDomain."""
    if not isinstance(raw, str):
        raise InvalidDomain("domain is missing" if raw is None else f"domain is a {type(raw).__name__}",
                            "domain is missing" if raw is None else "domain is not text")
    return _normalize(raw)


def _normalize(raw: str) -> str:
    name = raw.strip().rstrip(".")
    if name.isascii():
        lowered = name.lower()
        if "xn--" not in lowered and len(lowered) <= MAX_DOMAIN_LENGTH and _ASCII_DOMAIN.fullmatch(lowered):
            return lowered
    return _normalize_slow(name)


@lru_cache(maxsize=1 << 14)
def _normalize_slow(name: str) -> str:
    """Unicode, punycode and anything the fast path did not accept: label by label, with reasons."""
    if not name:
        raise InvalidDomain("domain is empty")
    if any(c.isspace() for c in name) or "/" in name or ":" in name:
        raise InvalidDomain("domain contains spaces, '/' or ':'")
    labels = name.split(".")
    ascii_labels = []
    for label in labels:
        if label.isascii():
            label = label.lower()
            if label.startswith("xn--"):
                try:
                    idna.decode(label)
                except idna.IDNAError as error:
                    raise InvalidDomain(f"invalid punycode label {label[:64]!r}: {error}",
                                        "invalid punycode label") from None
            elif not _ASCII_LABEL.match(label):
                raise InvalidDomain(f"invalid label {label[:64]!r}", "invalid label")
            ascii_labels.append(label)
        else:
            try:
                ascii_labels.append(idna.encode(label, uts46=True, transitional=False).decode("ascii"))
            except (idna.IDNAError, UnicodeError) as error:
                raise InvalidDomain(f"invalid internationalized label {label[:64]!r}: {error}",
                                    "invalid internationalized label") from None
    domain = ".".join(ascii_labels)
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(f"domain is longer than {MAX_DOMAIN_LENGTH} characters")
    return domain


@lru_cache(maxsize=1 << 16)
def registrable_domain(domain: str) -> str:
    """eTLD+1 by the Public Suffix List (`blog.x.co.uk` -> `x.co.uk`); a bare suffix or an
    unknown single label stays as it is."""
    return _PSL.privatesuffix(domain) or domain


def normalize_target(raw: str) -> str:
    """A tracked domain as configured by a user: same rules, plus a clear refusal of URLs."""
    text = raw.strip() if isinstance(raw, str) else raw
    if isinstance(text, str) and ("://" in text or "/" in text):
        raise InvalidDomain(f"{raw!r} is a URL, not a domain: use the bare host, e.g. 'example.com'")
    try:
        domain = normalize_domain(text)
    except InvalidDomain as error:
        raise InvalidDomain(f"{raw!r} is not a domain ({error}): use a bare host, e.g. 'example.com'") from None
    if "." not in domain:
        raise InvalidDomain(f"{raw!r} is not a domain (no dot): use a bare host, e.g. 'example.com'")
    return domain
