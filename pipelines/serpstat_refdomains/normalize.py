"""Domain normalization: one spelling per referring domain, so snapshots compare exactly.

Serpstat returns donors as it indexed them: Unicode or punycode, any case, sometimes with a
trailing dot. Diffs between snapshots are only as good as this function: `Bücher.de` today and
`xn--bcher-kva.de` next week are the same donor and must not show up as one lost and one new.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

import idna
import idna.idnadata
import idna.intranges
from publicsuffixlist import PublicSuffixList

from .errors import InvalidDomain

# Letters, digits, hyphen, plus underscore: real hostnames in backlink indexes carry underscores
# (`my_site.blogspot.com`), which IDNA2008 disallows; ASCII labels are therefore checked here
# and only non-ASCII labels go through the IDNA codec.
_ASCII_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# The same rule for a whole lowercase ASCII name at once: the common case, checked in one regex.
_ASCII_DOMAIN = re.compile(r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
MAX_DOMAIN_LENGTH = 253
# The characters UTS46 maps to a full stop: the ideographic (U+3002), fullwidth (U+FF0E) and
# halfwidth ideographic (U+FF61) full stops. They separate labels exactly as '.' does, so they
# become '.' before anything else looks at the name: `example.com。` is `example.com`, not a
# different donor `example.com.` (a test checks this list against every code point).
_FULL_STOPS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


# The bundled list ships with the package: no download at run time, results stable per release.
_PSL = PublicSuffixList()


def normalize_domain(raw: object) -> str:
    """Lowercase IDNA ASCII form without trailing dot, or InvalidDomain."""
    if not isinstance(raw, str):
        raise InvalidDomain("domain is missing" if raw is None else f"domain is a {type(raw).__name__}",
                            "domain is missing" if raw is None else "domain is not text")
    return _normalize(raw)


def _normalize(raw: str) -> str:
    if not raw.isascii():
        raw = raw.translate(_FULL_STOPS)
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
                ascii_labels.append(_plain_alabel(label) or
                                    idna.encode(label, uts46=True, transitional=False).decode("ascii"))
            except (idna.IDNAError, UnicodeError) as error:
                raise InvalidDomain(f"invalid internationalized label {label[:64]!r}: {error}",
                                    "invalid internationalized label") from None
    domain = ".".join(ascii_labels)
    if len(domain) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(f"domain is longer than {MAX_DOMAIN_LENGTH} characters")
    return domain


# Characters a label may hold for the shortcut below: ASCII letters, digits and hyphen to start
# with, and every other character the first time it is found to be PVALID in IDNA2008, left
# unchanged by UTS46, left-to-right, and not a combining mark.
_PLAIN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
_NOT_PLAIN_CHARS: set[str] = set()
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_RTL_OR_UNKNOWN = {"R", "AL", "AN", ""}


def _is_plain(char: str) -> bool:
    if char in _PLAIN_CHARS:
        return True
    if char in _NOT_PLAIN_CHARS:
        return False
    try:
        plain = (idna.intranges.intranges_contain(ord(char), idna.idnadata.codepoint_classes["PVALID"])
                 and unicodedata.bidirectional(char) not in _RTL_OR_UNKNOWN
                 and not unicodedata.category(char).startswith("M")
                 and idna.uts46_remap(char, std3_rules=False) == char)
    except idna.IDNAError:
        plain = False
    (_PLAIN_CHARS if plain else _NOT_PLAIN_CHARS).add(char)
    return plain


def _plain_alabel(label: str) -> str | None:
    """The A-label of a Unicode label that every IDNA rule leaves alone, or None.

    `idna.encode` costs ~21 us a label, mostly its per-codepoint checks; a run meets a Unicode
    donor in every ~15 rows. When each character is plain (see `_is_plain`: no mapping, no
    context or bidi rule can apply), the label is in NFC and its hyphens are allowed, IDNA's
    answer is "xn--" + Punycode. Anything else returns None and goes to the library, which
    gives the result or the reason. A test compares the two over every BMP character.
    """
    lowered = label.translate(_ASCII_LOWER)  # UTS46 maps A-Z to a-z and nothing else in ASCII
    if not _PLAIN_CHARS.issuperset(lowered) and not all(_is_plain(char) for char in set(lowered)):
        return None
    if lowered[0] == "-" or lowered[-1] == "-" or lowered[2:4] == "--" or \
            not unicodedata.is_normalized("NFC", lowered):
        return None
    encoded = "xn--" + lowered.encode("punycode").decode("ascii")
    return encoded if len(encoded) <= 63 else None


@lru_cache(maxsize=1 << 16)
def registrable_domain(domain: str) -> str:
    """eTLD+1 by the Public Suffix List (`blog.x.co.uk` -> `x.co.uk`); a bare suffix or an
    unknown single label stays as it is."""
    return _PSL.privatesuffix(domain) or domain


class _SuffixRules:
    """Which trailing labels of a name the Public Suffix List can look at.

    `right_parts` holds every rule and each of its trailing parts (`blogspot.co.uk`: also
    `co.uk`, `uk`); `wild_parents` the X of every `*.X` rule. Walking a name from its last label
    while the walked part is in that set (or sits under a wildcard) gives the shortest tail that
    every rule matching the name lies within: the library's answer for that tail is its answer
    for every name ending in it. Those tails are few (`com`, `co.uk`, `b.kawasaki.jp`), so the
    library is asked once per tail instead of once per name.
    """

    def __init__(self, psl: PublicSuffixList) -> None:
        rules: Any = getattr(psl, "_publicsuffix", None)  # the library's private rule set, if it has one
        self.readable = isinstance(rules, frozenset | set)
        parts: set[str] = set()
        wild_parents: set[str] = set()
        for rule in rules if self.readable else ():
            labels = rule.lstrip("!").split(".")
            parts.update(".".join(labels[i:]) for i in range(len(labels)))
            if labels[0] == "*":
                wild_parents.add(".".join(labels[1:]))
        self.right_parts = frozenset(parts)
        self.wild_parents = frozenset(wild_parents)


@lru_cache(maxsize=1)
def _suffix_rules() -> _SuffixRules:
    return _SuffixRules(_PSL)  # built on first use: 25 ms that commands without rows need not pay


@lru_cache(maxsize=1 << 12)
def _suffix_labels(tail: str) -> int:
    """Labels in the public suffix of every name that `_SuffixRules` leads to `tail`."""
    suffix = _PSL.publicsuffix(tail)
    return 1 if suffix is None else suffix.count(".") + 1


def _last_labels(name: str, count: int) -> str:
    cut = len(name)
    for _ in range(count):
        cut = name.rfind(".", 0, cut)
        if cut < 0:
            return name
    return name[cut + 1:]


def _registrable_by_rules(name: str, parts: frozenset[str], wild_parents: frozenset[str]) -> str:
    start = name.rfind(".")
    # walk left while the walked part can still be (part of) a rule
    tail_start = start if name[start + 1:] in parts else -2
    while tail_start == start and start >= 0:
        previous, start = start, name.rfind(".", 0, start)
        if name[start + 1:] in parts or name[previous + 1:] in wild_parents:
            tail_start = start
    tail = name[tail_start + 1:] if tail_start >= -1 else name[name.rfind(".") + 1:]
    depth = _suffix_labels(tail)
    return name if name.count(".") + 1 <= depth else _last_labels(name, depth + 1)


def registrable_domains(names: list[str]) -> list[str]:
    """`registrable_domain` of every normalized name of a batch, several times faster.

    The library's lookup costs about 5 µs a name, the largest cost of a row; here it is asked
    once per distinct rule-relevant tail (see `_SuffixRules`) and a name costs a few string
    searches. Results are identical; a test holds every rule of the list to that.
    """
    rules = _suffix_rules()
    if not rules.readable:
        return [registrable_domain(name) for name in names]
    parts, wild_parents = rules.right_parts, rules.wild_parents
    result: list[str] = []
    append = result.append
    for name in names:
        last = name.rfind(".")
        if last >= 0:
            two = name[name.rfind(".", 0, last) + 1:]
            if two not in parts and name[last + 1:] not in wild_parents:
                append(two)  # no rule reaches past the last label: most names, at a glance
                continue
        append(_registrable_by_rules(name, parts, wild_parents))
    return result


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
