"""Constants of the public contract (docs/configuration.md, docs/data.md): names users, tests and
dashboards rely on."""

PIPELINE_NAME = "serpstat_refdomains"
DATASET_NAME = "serpstat"
DEFAULT_DESTINATION = "duckdb"
SOURCE_SECTION = ("sources", "serpstat")
DEFAULT_API_URL = "https://api.serpstat.com/v4"

REF_DOMAINS_TABLE = "ref_domains"
# ref_domains' stamp of the pull that fetched each row: its ledger row's started_at
PULLED_AT = "pulled_at"
SNAPSHOTS_TABLE = "snapshots"
# append-only: one row per fetch attempt, so credits spent add up to what Serpstat charged
ATTEMPTS_TABLE = "snapshot_attempts"
# the latest run's competitors (written by the run, read by link_gap), and what each
# alert channel received
COMPETITORS_TABLE = "target_competitors"
ALERTS_SENT_TABLE = "alerts_sent"

SEARCH_TYPES = ("domain", "domain_with_subdomains")
DEFAULT_SEARCH_TYPE = "domain_with_subdomains"
KINDS = ("full", "last_week")
RUN_KINDS = ("auto", "full", "last_week")

STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"
STATUS_FAILED = "failed"
STATUS_SKIPPED_BUDGET = "skipped_budget"
STATUS_SUSPECT_EMPTY = "suspect_empty"
STATUSES = (STATUS_COMPLETE, STATUS_INCOMPLETE, STATUS_FAILED, STATUS_SKIPPED_BUDGET, STATUS_SUSPECT_EMPTY)

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 1000
DEFAULT_REQUESTS_PER_SECOND = 1.0
DEFAULT_FULL_SNAPSHOT_EVERY_DAYS = 7
DEFAULT_LOST_CONFIRMATION_SNAPSHOTS = 2
# Serpstat serves at most 60,000 rows of one sorted result (page x size <= 60,000).
DEPTH_CAP = 60_000
DOMAIN_RANK_RANGE = (0, 100)
FILTER_FIELDS = ("domain_links", "domain_from", "domain_rank")
COMPARE_TYPES = ("gt", "lt", "gte", "lte", "eq", "neq", "between", "contains", "notContains",
                 "startsWith", "endsWith")
ADDITIONAL_FILTERS = ("no_subdomains", "only_subdomains", "only_hosts", "last_week")
