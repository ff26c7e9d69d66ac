"""Constants of the public contract (README: Configuration, Tables, Models): names users, tests and
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
# issue 15: the latest run's competitors (written by the run, read by link_gap), and what each
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
# DuckDB's memory limit for a run's models build (loads get a quarter, at least 128MB); beyond
# it DuckDB spills to `<database>.tmp` instead of failing, but not everywhere: when the models
# reread the history every build, the year soak's week-2 build failed at 256MB with an aggregate
# DuckDB would not spill (README, "A year of history"). Since the comparisons are kept
# (int_snapshot_pair_changes) a weekly build reads a week's snapshots, not the history, and a
# build that still runs out is built again at doubling limits (pipeline.build_models). What a
# build holds that grows with the history (the marts it writes, inside one transaction, and the
# pages it reads) fills whatever limit it has: at 512MB a year soak's peak RSS grew x1.26 from
# week 2 to week 52; at 256MB it spills instead (README, "A year of history").
DEFAULT_DUCKDB_MEMORY_LIMIT = "256MB"
# DuckDB's stated minimum per thread (about 125MB): the models build gets a thread per this much
# of the limit, up to the cores; also the smallest duckdb_memory_limit accepted. Fewer threads do
# not make a build fit: week 5 of the year soak ran out of 512MB on one thread as on two
# (pipeline.build_models then builds again with twice the limit), and on one thread the build of
# 28 weeks took 40 s alone on the machine, on the way past 60 s at a year.
MIN_DUCKDB_MEMORY_MB = 128
# Loads stream on one thread in this share of the limit, and at least LOAD_MEMORY_MB.
LOAD_MEMORY_SHARE = 4
LOAD_MEMORY_MB = 128
# Serpstat serves at most 60,000 rows of one sorted result (page x size <= 60,000).
DEPTH_CAP = 60_000
DOMAIN_RANK_RANGE = (0, 100)
FILTER_FIELDS = ("domain_links", "domain_from", "domain_rank")
COMPARE_TYPES = ("gt", "lt", "gte", "lte", "eq", "neq", "between", "contains", "notContains",
                 "startsWith", "endsWith")
ADDITIONAL_FILTERS = ("no_subdomains", "only_subdomains", "only_hosts", "last_week")
