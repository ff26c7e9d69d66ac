"""Configuration: declared once in `SerpstatConfiguration`, resolved the dlt way ([sources.serpstat]
in .dlt/*.toml or SOURCES__SERPSTAT__*), and checked by its `validate()` so that every mistake is
one line naming the cause and the fix, before anything is fetched or written."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dlt.common.configuration import configspec, resolve_configuration
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.configuration.specs import BaseConfiguration
from dlt.common.typing import TSecretStrValue

from .config_files import check_written_configuration
from .constants import (
    ADDITIONAL_FILTERS,
    COMPARE_TYPES,
    DEFAULT_API_URL,
    DEFAULT_FULL_SNAPSHOT_EVERY_DAYS,
    DEFAULT_LOST_CONFIRMATION_SNAPSHOTS,
    DEFAULT_PAGE_SIZE,
    DEFAULT_REQUESTS_PER_SECOND,
    DEFAULT_SEARCH_TYPE,
    DOMAIN_RANK_RANGE,
    FILTER_FIELDS,
    MAX_PAGE_SIZE,
    SOURCE_SECTION,
)
from .duckdb_session import DEFAULT_DUCKDB_MEMORY_LIMIT, parse_memory_limit
from .errors import ConfigError, UsageError
from .targets import CompetitorSet, Target, parse_domains, parse_search_type, parse_targets, select_configured


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated (`SerpstatConfiguration.validate`). The token is kept apart.

    `targets` is empty only for commands that read what is loaded (models, report, status)."""

    targets: tuple[Target, ...]
    api_url: str
    complex_filter: list | None
    page_size: int
    requests_per_second: float
    max_credits_per_run: int | None
    full_snapshot_every_days: int
    fetch_last_week: bool
    lost_confirmation_snapshots: int
    duckdb_memory_limit: str
    # every tracked domain with its competitors (the whole configuration, also under
    # --domain), and the alert channels; secrets are kept out of repr
    competitors: tuple[CompetitorSet, ...] = ()
    # the targets `run --domain` named (empty: all): `--force` refetches these only, never the
    # competitors that come along with them
    named: tuple[Target, ...] = ()
    alert_min_domain_rank: int = 0
    alert_webhook_url: str | None = field(default=None, repr=False)
    slack_incoming_hook: str | None = field(default=None, repr=False)

    @property
    def filter_hash(self) -> str:
        return filter_hash(self.complex_filter)


@configspec
class SerpstatConfiguration(BaseConfiguration):
    """Every setting of `[sources.serpstat]`, with its default (docs/configuration.md).

    dlt resolves each field from TOML or the environment and coerces text to the field's type (a
    value that is not one, like page_size = "ten", stops there); the `Any` fields take more than one
    shape (a list, or its JSON or comma-separated text; a number or "none"). `validate()` then
    checks the values and names each mistake and its fix in one line.
    """

    domains: Any | None = None
    """Tracked domains: "example.com" or {query = "example.com", search_type = "domain"} items, which
    may name competitors = ["rival.com", {query = "rival.org", search_type = "domain"}]; in an
    environment variable a JSON list or comma-separated names."""
    # Optional so that a missing token reaches `validate()` and gets its one line, not dlt's list.
    api_token: TSecretStrValue | None = None
    """Serpstat API token, sent as the `token` query parameter; never printed, logged or stored."""
    api_url: str = DEFAULT_API_URL
    """Serpstat's endpoint; override for proxies or the local emulator."""
    search_type: str = DEFAULT_SEARCH_TYPE
    """Default for domains items without their own: domain_with_subdomains or domain."""
    complex_filter: Any | None = None
    """A Serpstat complexFilter (array of arrays: OR of AND groups) applied to every pull; changing
    it starts a new series."""
    page_size: int = DEFAULT_PAGE_SIZE
    """Rows per request, 1-1000."""
    requests_per_second: float = DEFAULT_REQUESTS_PER_SECOND
    """Shared by every thread of a run (Serpstat: 1 on most plans, 10 on top plans)."""
    max_credits_per_run: Any | None = None
    """Hard budget of a run, exceeded by at most one page; none by default."""
    full_snapshot_every_days: int = DEFAULT_FULL_SNAPSHOT_EVERY_DAYS
    """`--kind auto`: a full snapshot when the last complete one is this many days old."""
    fetch_last_week: bool = True
    """`--kind auto`: also pull Serpstat's last_week filter on every run."""
    lost_confirmation_snapshots: int = DEFAULT_LOST_CONFIRMATION_SNAPSHOTS
    """Consecutive complete full snapshots a domain must be missing from to be `confirmed` lost."""
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    """DuckDB only: memory for the models build (loads get a quarter); beyond it DuckDB spills to
    disk. A size like "1GB", at least 128MB."""
    alert_min_domain_rank: int = 0
    """Alerts list lost and new referring domains and gap opportunities of at least this rank, 0-100."""
    alert_webhook_url: TSecretStrValue | None = None
    """A generic JSON webhook for alerts; never printed or logged. Slack alerts use dlt's own
    [runtime] slack_incoming_hook (in .dlt/secrets.toml too)."""

    @property
    def token(self) -> str | None:
        """The API token without surrounding blanks; None when it is not set."""
        token = self.api_token
        return (token.strip() or None) if isinstance(token, str) else None

    def validate(self, *, need_targets: bool = True, need_token: bool = False,
                 only: Sequence[str] | None = None, slack_incoming_hook: Any = None) -> Settings:
        """The settings, checked; ConfigError (one line: cause, then fix) on the first mistake.

        `need_targets=False` is for commands that read what is loaded (models, report, status):
        they work on it whatever the list says today, and with no domains configured at all.
        `only` picks configured domains for `run --domain D...` (see `select_configured`).
        `slack_incoming_hook` is dlt's [runtime] setting, which lives outside [sources.serpstat]."""
        domains, named = select_configured(self.domains, self.search_type, list(only)) if only else (self.domains, [])
        api_url, requests_per_second = self.api_url, self.requests_per_second
        if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"api_url {api_url!r} is not an http(s) URL: leave it unset for "
                              f"{DEFAULT_API_URL}")
        try:
            rps = float(requests_per_second)
        except (TypeError, ValueError):
            rps = -1.0
        if not rps > 0 or rps == float("inf"):
            raise ConfigError(f"requests_per_second {requests_per_second!r} is out of range: use a number "
                              "above 0 (1 on most Serpstat plans, 10 on top plans)")
        if need_targets or domains:
            targets = parse_targets(domains, self.search_type)
        else:
            targets = ()
            parse_search_type(self.search_type, "search_type")
        # link_gap keeps every tracked domain's competitors, whatever --domain fetches
        competitor_sets = parse_domains(self.domains, self.search_type)[1] if targets else ()
        settings = Settings(
            targets=targets,
            api_url=api_url.rstrip("/") if api_url.endswith("//") else api_url,
            complex_filter=parse_complex_filter(self.complex_filter),
            page_size=_int(self.page_size, "page_size", 1, MAX_PAGE_SIZE),
            requests_per_second=rps,
            max_credits_per_run=None if self.max_credits_per_run in (None, "", "none")
            else _int(self.max_credits_per_run, "max_credits_per_run", 1),
            full_snapshot_every_days=_int(self.full_snapshot_every_days, "full_snapshot_every_days", 1),
            fetch_last_week=_bool(self.fetch_last_week, "fetch_last_week"),
            lost_confirmation_snapshots=_int(self.lost_confirmation_snapshots, "lost_confirmation_snapshots", 1),
            duckdb_memory_limit=parse_memory_limit(self.duckdb_memory_limit),
            competitors=competitor_sets,
            named=tuple(named),
            alert_min_domain_rank=_int(self.alert_min_domain_rank, "alert_min_domain_rank", 0,
                                       DOMAIN_RANK_RANGE[1]),
            alert_webhook_url=_webhook_url(self.alert_webhook_url, "alert_webhook_url"),
            slack_incoming_hook=_webhook_url(slack_incoming_hook, "runtime.slack_incoming_hook"),
        )
        if need_token and self.token is None:
            raise ConfigError("Serpstat API token is missing: set api_token under [sources.serpstat] in "
                              ".dlt/secrets.toml or SOURCES__SERPSTAT__API_TOKEN")
        return settings



@configspec
class SerpstatSourceConfiguration(SerpstatConfiguration):
    """The settings of the plain dlt source `serpstat()`, and what it files a load under."""

    snapshot_date: str | None = None
    """YYYY-MM-DD the snapshot is filed under (default: today, UTC)."""
    kind: str = "full"
    """full (every referring domain) or last_week (Serpstat's last_week filter)."""

def filter_hash(complex_filter: list | None) -> str:
    """Fingerprint of the user's complexFilter: a changed filter starts a new series."""
    canonical = json.dumps(complex_filter or None, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# --- parsing -----------------------------------------------------------------------------
def parse_complex_filter(value: Any) -> list | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError("complex_filter is not valid JSON: write an array of arrays, e.g. "
                              "[[{\"field\": \"domain_rank\", \"compareType\": \"gte\", \"value\": [10]}]]") from None
    if not isinstance(value, list) or not value or not all(isinstance(g, list) and g for g in value):
        raise ConfigError("complex_filter must be a non-empty array of non-empty arrays (OR of AND groups): "
                          "e.g. [[{\"field\": \"domain_rank\", \"compareType\": \"gte\", \"value\": [10]}]]")
    for group in value:
        for cond in group:
            _check_condition(cond)
    return value


def _check_condition(cond: Any) -> None:
    if not isinstance(cond, dict):
        raise ConfigError(f"complex_filter condition {cond!r} is not an object: "
                          "use {\"field\": ..., \"compareType\": ..., \"value\": [...]}")
    if "additional_filters" in cond:
        quick = cond["additional_filters"]
        if quick == "last_week":
            raise ConfigError("complex_filter must not contain last_week: the pipeline adds it itself "
                              "for last_week pulls (fetch_last_week, --kind last_week)")
        if quick not in ADDITIONAL_FILTERS or len(cond) != 1:
            raise ConfigError(f"complex_filter additional_filters {quick!r} is unknown: use one of "
                              "no_subdomains, only_subdomains, only_hosts")
        return
    field_name = cond.get("field")
    if field_name not in FILTER_FIELDS:
        raise ConfigError(f"complex_filter field {field_name!r} is unknown: use one of "
                          f"{', '.join(FILTER_FIELDS)}")
    compare = cond.get("compareType")
    if compare not in COMPARE_TYPES:
        raise ConfigError(f"complex_filter compareType {compare!r} is unknown: use one of "
                          f"{', '.join(COMPARE_TYPES)}")
    text_compare = compare in ("contains", "notContains", "startsWith", "endsWith")
    if text_compare != (field_name == "domain_from") and compare not in ("eq", "neq"):
        raise ConfigError(f"complex_filter compareType {compare!r} does not apply to {field_name}: "
                          "text compares go with domain_from, numeric ones with domain_rank/domain_links")
    values = cond.get("value")
    if not isinstance(values, list) or not values:
        raise ConfigError(f"complex_filter value for {field_name} must be a non-empty list, e.g. [10]")
    if compare == "between" and (len(values) != 2 or not all(_is_number(v) for v in values)):
        raise ConfigError("complex_filter between takes two numbers: \"value\": [from, to]")
    if field_name != "domain_from" and not all(_is_number(v) for v in values):
        raise ConfigError(f"complex_filter value for {field_name} must be numbers, e.g. [10]")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int(value: Any, name: str, low: int, high: int | None = None) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        bounds = f"{low}-{high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} {value!r} is out of range: use a whole number {bounds}")
    return number


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name} {value!r} is not true or false: write true or false")


def parse_dataset_name(value: str | None) -> str | None:
    """A dataset name the destination keeps as written: dlt would otherwise rename it silently
    (`bad name;drop` becomes `bad_name_drop`), and dashboards would look for the wrong schema."""
    if value is None:
        return None
    from dlt.common.normalizers.naming.snake_case import NamingConvention

    if not value or NamingConvention().normalize_identifier(value) != value or not value[0].isalpha():
        raise ConfigError(f"--dataset-name {value!r} is not a plain identifier: use lowercase letters, digits "
                          "and _, starting with a letter, e.g. serpstat_prod")
    # dlt keeps each dataset's merge staging in `<dataset>_staging`, and the database its own
    # schemas: a dataset by such a name would be overwritten by, or overwrite, another.
    if value.endswith("_staging") or value == "information_schema" or value.startswith("pg_"):
        raise ConfigError(f"--dataset-name {value!r} is reserved (dlt's staging schemas end in _staging; "
                          "information_schema and pg_* belong to the database): choose another, e.g. serpstat_prod")
    return value


def parse_kind(value: Any, kinds: Sequence[str], name: str, error: type[ConfigError | UsageError] = ConfigError) -> str:
    """A kind of pull: `auto`, `full` or `last_week` for a run (RUN_KINDS), the last two for one
    snapshot (KINDS)."""
    if value not in kinds:
        raise error(f"{name} {value!r} is unknown: use one of {', '.join(kinds)}")
    return value


def parse_date(value: str | None, name: str = "--snapshot-date") -> dt.date:
    if value is None:
        return dt.datetime.now(dt.UTC).date()
    try:
        return dt.date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-11-30") from None


def build_settings(**options: Any) -> Settings:
    """Settings from explicit values alone, defaults for the rest: no file or variable is read.
    For code that runs the pipeline itself (the demo, tests, benchmarks)."""
    slack_incoming_hook = options.pop("slack_incoming_hook", None)
    return SerpstatConfiguration(**options).validate(slack_incoming_hook=slack_incoming_hook)


def _webhook_url(value: Any, name: str) -> str | None:
    """An alert channel's URL (a secret: the message never shows it)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not value.strip().startswith(("http://", "https://")):
        raise ConfigError(f"{name} is not an http(s) URL: set the whole webhook URL, e.g. "
                          "https://hooks.example.com/...")
    return value.strip()


def _slack_incoming_hook() -> Any:
    """dlt's own `runtime.slack_incoming_hook` setting (RUNTIME__SLACK_INCOMING_HOOK), a secret."""
    import dlt

    try:
        return dlt.secrets.get("runtime.slack_incoming_hook")
    except ConfigurationException:
        return None


def known_settings() -> frozenset[str]:
    """Every key [sources.serpstat] may hold: the settings of `refdomains` and of the plain source."""
    return frozenset(SerpstatSourceConfiguration.get_resolvable_fields())


def read_configuration() -> SerpstatConfiguration:
    """[sources.serpstat] as dlt resolves it from .dlt/config.toml, .dlt/secrets.toml and the
    environment, once every file parses and every key there is one the pipeline reads; not
    validated yet."""
    check_written_configuration(known_settings())
    try:
        return resolve_configuration(SerpstatConfiguration(), sections=SOURCE_SECTION)
    except ConfigurationException as error:
        raise ConfigError(f"configuration could not be read ({str(error).splitlines()[0]}): "
                          "check .dlt/config.toml and SOURCES__SERPSTAT__* variables") from None


def resolve_settings(domains_override: list[str] | None = None, need_token: bool = True,
                     need_domains: bool = True) -> tuple[Settings, str | None]:
    """Read [sources.serpstat] from dlt config/secrets/env and validate it (ConfigError on mistakes).

    Read-side commands (models, report, status) pass need_domains=False: they work on what is
    loaded, whatever the list says today."""
    config = read_configuration()
    settings = config.validate(need_targets=need_domains, need_token=need_token, only=domains_override,
                               slack_incoming_hook=_slack_incoming_hook())
    return settings, config.token
