"""What a configuration tracks: targets (a domain and a search type) and each tracked domain's
competitors (docs/configuration.md, "Domains and competitors").

A `domains` item is "example.com" or {query = "example.com", search_type = "domain"}, and may name
competitors, snapshotted like any tracked domain (same kinds, schedule and ledger; its own series),
once however many tracked domains name them:

    domains = [{query = "mysite.com", competitors = ["rival-a.com", {query = "rival-b.com", search_type = "domain"}]}]

Every mistake is one ConfigError line naming the cause and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .constants import DEFAULT_SEARCH_TYPE, SEARCH_TYPES
from .errors import ConfigError, InvalidDomain
from .normalize import normalize_target


@dataclass(frozen=True, order=True)
class Target:
    domain: str
    search_type: str

    def __str__(self) -> str:
        return self.domain if self.search_type == DEFAULT_SEARCH_TYPE else f"{self.domain} ({self.search_type})"


ITEM_KEYS = ("query", "search_type", "competitors")
COMPETITOR_KEYS = ("query", "search_type")


@dataclass(frozen=True)
class CompetitorSet:
    """A tracked domain and its competitors, in configuration order."""

    target: Target
    competitors: tuple[Target, ...] = ()


def _fold_www(domain: str) -> str:
    return domain[4:] if domain.startswith("www.") and domain.count(".") > 1 else domain


def parse_competitors(value: Any, target: Target, make_target: Callable[[Any, Any, str], Target]) -> CompetitorSet:
    """The `competitors` of one `domains` item, validated: every mistake is one ConfigError line.

    `make_target(query, search_type, target_domain)` turns a query and search type into a Target (config's
    own rules and messages). A competitor without its own search_type takes its target's, so both
    sides of the gap are counted the same way."""
    if value is None:
        return CompetitorSet(target)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"competitors of {target.domain} must be a list, got {type(value).__name__}: "
                          f"write competitors = [\"rival.com\", {{query = \"rival.org\", search_type = \"domain\"}}]")
    competitors: list[Target] = []
    for item in value:
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(COMPETITOR_KEYS))
            if unknown or "query" not in item:
                reason = f"unknown key {', '.join(map(repr, unknown))}" if unknown else "no 'query'"
                raise ConfigError(f"competitor {item!r} of {target.domain} needs exactly 'query' and optionally "
                                  f"'search_type' ({reason}): write \"rival.com\" or "
                                  "{query = \"rival.com\", search_type = \"domain\"}")
            query, search_type = item["query"], item.get("search_type", target.search_type)
        else:
            query, search_type = item, target.search_type
        competitor = make_target(query, search_type, target.domain)
        if _fold_www(competitor.domain) == _fold_www(target.domain):
            raise ConfigError(f"competitor {competitor.domain} of {target.domain} is the tracked domain itself: "
                              "remove it from competitors")
        if any(c.domain == competitor.domain for c in competitors):
            raise ConfigError(f"competitor {competitor.domain} is listed twice for {target.domain}: keep one")
        competitors.append(competitor)
    return CompetitorSet(target, tuple(competitors))


def as_item(competitor_set: CompetitorSet) -> dict:
    """The `domains` item that configures this set again (for `--domain`, which keeps it whole)."""
    item: dict[str, Any] = {"query": competitor_set.target.domain, "search_type": competitor_set.target.search_type}
    if competitor_set.competitors:
        item["competitors"] = [{"query": c.domain, "search_type": c.search_type} for c in competitor_set.competitors]
    return item


def competitor_only(sets: Iterable[CompetitorSet]) -> set[Target]:
    """Series fetched only because a tracked domain names them as competitors."""
    sets = list(sets)
    tracked = {s.target for s in sets}
    return {c for s in sets for c in s.competitors if c not in tracked}


def parse_targets(domains: Any, default_search_type: str) -> tuple[Target, ...]:
    """Every series a run fetches: the tracked domains, then their competitors (once each)."""
    return parse_domains(domains, default_search_type)[0]


def parse_domains(domains: Any, default_search_type: str) -> tuple[tuple[Target, ...], tuple[CompetitorSet, ...]]:
    """The series to fetch, and each tracked domain with its competitors."""
    default_search_type = parse_search_type(default_search_type, "search_type")
    if isinstance(domains, str):
        text = domains.strip()
        if text.startswith("["):
            try:
                domains = json.loads(text)
            except ValueError:
                raise ConfigError("domains is not a valid JSON list: write it as "
                                  "'[\"example.com\", \"example.org\"]' or 'example.com,example.org'") from None
        else:
            domains = [d for d in (part.strip() for part in text.split(",")) if d]
    if domains is None or (isinstance(domains, (list, tuple)) and not domains):
        raise ConfigError("no domains to track: set domains = [\"example.com\"] under [sources.serpstat] "
                          "in .dlt/config.toml or SOURCES__SERPSTAT__DOMAINS")
    if not isinstance(domains, (list, tuple)):
        raise ConfigError(f"domains must be a list, got {type(domains).__name__}: "
                          "write domains = [\"example.com\"]")
    targets: list[Target] = []
    sets: dict[Target, tuple[Target, ...]] = {}
    for item in domains:
        if isinstance(item, dict):
            unknown = sorted(set(item) - set(ITEM_KEYS))
            if unknown or "query" not in item:
                reason = f"unknown key {', '.join(map(repr, unknown))}" if unknown else "no 'query'"
                raise ConfigError(f"domain item {item!r} needs exactly 'query' and optionally 'search_type' and "
                                  f"'competitors' ({reason}): write {{query = \"example.com\", search_type = "
                                  "\"domain\", competitors = [\"rival.com\"]}")
            target = _target(item["query"], item.get("search_type", default_search_type))
            competitor_set = parse_competitors(item.get("competitors"), target, _target)
        else:
            target = _target(item, default_search_type)
            competitor_set = CompetitorSet(target)
        if target not in targets:
            targets.append(target)
        # a domain listed twice keeps every competitor either item names
        known = sets.get(target, ())
        sets[target] = known + tuple(c for c in competitor_set.competitors if c not in known)
    for rivals in sets.values():
        targets += [c for c in rivals if c not in targets]
    return tuple(targets), tuple(CompetitorSet(t, rivals) for t, rivals in sets.items())


def _target(query: Any, search_type: Any, of: str | None = None) -> Target:
    """One configured domain (or, with `of`, a competitor of that domain) as a Target, or the
    ConfigError naming the mistake."""
    what = f"competitor {query!r} of {of}" if of else f"{query!r}"
    search_type = parse_search_type(search_type, f"search_type of {what}")
    if not isinstance(query, str):
        raise ConfigError(f"{'competitor' if of else 'domain'} {query!r} is not text: "
                          "write domains = [\"example.com\"]")
    try:
        return Target(normalize_target(query), search_type)
    except InvalidDomain as error:
        raise ConfigError(f"bad {f'competitor of {of}' if of else 'domain'} in configuration: {error}") from None


def parse_search_type(value: Any, what: str = "search_type") -> str:
    if value not in SEARCH_TYPES:
        raise ConfigError(f"{what} {value!r} is unknown: use one of {', '.join(SEARCH_TYPES)}")
    return value


def select_configured(domains: Any, default_search_type: Any, wanted: list[str]) -> tuple[list[dict], list[Target]]:
    """The configured items for `--domain D...`, with everything configured for them, and the
    targets named.

    `--domain` picks from the configuration rather than replacing it: D under another search
    type would be another series (and a new, paid baseline), so D must be configured. A tracked
    domain comes with its competitors; a competitor can be picked alone."""
    configured, competitor_sets = parse_domains(domains, default_search_type) if domains else ((), ())
    chosen: list[Target] = []
    for item in wanted:
        try:
            domain = normalize_target(item)
        except InvalidDomain as error:
            raise ConfigError(f"--domain: {error}") from None
        matches = [t for t in configured if t.domain == domain]
        if not matches:
            listed = ", ".join(dict.fromkeys(t.domain for t in configured)) or "none"
            raise ConfigError(f"--domain {item} is not configured (configured domains: {listed}): "
                              "add it to domains under [sources.serpstat] first")
        chosen += [t for t in matches if t not in chosen]
    tracked = {s.target: s for s in competitor_sets}
    return [as_item(tracked[t]) if t in tracked else {"query": t.domain, "search_type": t.search_type}
            for t in chosen], chosen
