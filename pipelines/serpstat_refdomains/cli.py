"""`refdomains`: the command line (docs/operations.md).

Exit codes: 0 every requested snapshot is complete, already done or suspect_empty (warned);
1 at least one ended failed, incomplete or skipped_budget, or an operational failure (Serpstat or
the destination unreachable, the models not rebuilt): what loaded stays loaded; 2 a usage or
configuration error, in which case nothing was fetched and nothing written. Every error ends in
one line on stderr: cause, then what to do; the traceback only at RUNTIME__LOG_LEVEL=DEBUG.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from dlt.common.configuration.exceptions import ConfigurationException

from .config import known_settings, parse_dataset_name, parse_date, resolve_settings
from .config_files import check_written_configuration, unreadable_file
from .constants import DATASET_NAME, SNAPSHOTS_TABLE
from .errors import ConcurrentRunError, ConfigError, ServiceUnavailable, UsageError, first_line
from .scaffold import SCHEDULES, init

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2
DETAILS = "details with RUNTIME__LOG_LEVEL=DEBUG"
logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}: see '{self.prog} --help'\n")


def _destination_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--destination", help="dlt destination (default: duckdb)")
    parser.add_argument("--dataset-name", help=f"dataset/schema (default: {DATASET_NAME})")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="refdomains", description="Dated snapshots of Serpstat referring domains, "
                     "loaded with dlt, with NEW and LOST referring-domain models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="fetch the snapshots due today (or --snapshot-date) and load them",
                         description="Fetch due snapshots of every configured domain, one load each; "
                         "snapshots already complete for the date are skipped at no cost.")
    run.add_argument("--snapshot-date", metavar="YYYY-MM-DD", help="date to file the snapshot under "
                     "(default: today, UTC)")
    run.add_argument("--kind", default="auto", help="auto (default): full when the last complete one is "
                     "full_snapshot_every_days old, plus last_week; or full, or last_week")
    run.add_argument("--domain", action="append", metavar="D", help="only this configured domain (repeatable): "
                     "a tracked domain with its competitors, or a competitor alone. It picks from `domains`, it "
                     "does not replace the list: a D not configured there is an error")
    run.add_argument("--force", action="store_true", help="refetch snapshots already complete for the date "
                     "and replace them whole")
    _destination_arguments(run)
    run.add_argument("--no-models", action="store_true", help="do not rebuild the SQL models")

    models = sub.add_parser("models", help="rebuild the SQL models from what is loaded",
                            description="Rebuild every model of sql/ (staging, intermediate and the marts: "
                            "new_ref_domains, lost_ref_domains, ref_domain_changes, ref_domains_weekly, "
                            "ref_domains_current, link_gap, link_gap_changes) in the pipeline's dataset, "
                            "and run their data tests.")
    _destination_arguments(models)
    models.add_argument("--full-refresh", action="store_true",
                        help="compare every pair of snapshots again instead of only the new ones "
                             "(int_snapshot_pair_changes keeps its comparisons between builds)")

    rep = sub.add_parser("report", help="what changed: net change, new and lost referring domains, competitors, "
                         "link gap", description="Per tracked domain: the period's net change (new − lost = the "
                         "change in size), the latest week's lost, new and returning referring domains, the "
                         "history, its competitors and its link gap; as text, CSV, JSON or a self-contained HTML "
                         "page.")
    rep.add_argument("--domain", help="one domain: a tracked one with its competitors (default: all)")
    rep.add_argument("--since", metavar="YYYY-MM-DD", help="the period's first day (default: the first full "
                     "snapshot)")
    rep.add_argument("--until", metavar="YYYY-MM-DD", help="the period's last day, inclusive (default: the latest "
                     "snapshot)")
    rep.add_argument("--format", default="text", help="text (default), csv, json or html")
    rep.add_argument("--output", metavar="PATH", help="write to a file instead of standard output")
    _destination_arguments(rep)

    status = sub.add_parser("status", help="latest snapshots, credits this month, Serpstat balance",
                            description="Per target the latest snapshot of each kind with its status, rows "
                            "and credits; credits spent this month; the balance from the free getStats.")
    _destination_arguments(status)

    dash = sub.add_parser("dashboard", help="open dlt's dashboard on this project's tables and models "
                          "(needs the dashboard extra)",
                          description="Run `dlt pipeline serpstat_refdomains show` on this project's pipeline: "
                          "dlt's dashboard, with the loaded tables and the models, each with its description. "
                          "It needs `pip install 'serpstat-refdomains[dashboard]'`. --print shows the dlt command "
                          "instead (for `info`, `schema` and dlt's other pipeline commands too).")
    dash.add_argument("--print", action="store_true", help="print the dlt command and run nothing")
    _destination_arguments(dash)

    alert = sub.add_parser("alerts", help="send the change alerts not sent yet (--dry-run: print them)",
                           description="Send each configured channel (runtime.slack_incoming_hook, "
                           "alert_webhook_url) the events it has not received; `refdomains run` does this "
                           "after every models build. --dry-run prints the messages and sends nothing.")
    alert.add_argument("--dry-run", action="store_true", help="print what would be sent; send and record nothing")
    _destination_arguments(alert)

    demo = sub.add_parser("demo", help="offline demo: emulator, six weekly runs, models, report",
                          description="No token, no network: replays weekly runs against a local emulator "
                          "into its own folder and writes report.html there.")
    demo.add_argument("--weeks", type=int, default=6, help="weekly runs to replay (default 6)")
    demo.add_argument("--dir", default="demo", help="folder for the demo database and report (default ./demo)")

    emu = sub.add_parser("emulator", help="serve a local Serpstat API emulator (no account needed)",
                         description="A local Serpstat API v4 with a synthetic, evolving link graph. Point "
                         "api_url at the URL it prints (http://HOST:PORT/v4) and use its token.")
    emu.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                     "machine only)")
    emu.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0 picks a free one, "
                     "printed at start)")
    emu.add_argument("--token", default="demo-token", help="the API token it accepts (default demo-token)")
    emu.add_argument("--seed", type=int, default=0, help="seed of the synthetic link graph: the same seed serves "
                     "the same domains (default 0)")
    emu.add_argument("--day", metavar="YYYY-MM-DD", help="the index date the emulator serves (default: today); "
                     "`refdomains run` files its snapshots under today's date, UTC, and refuses an index of "
                     "another day")
    emu.add_argument("--profile", action="append", default=[], metavar="DOMAIN=COUNT",
                     help="fix a domain's number of referring domains (repeatable)")
    emu.add_argument("--rps", type=float, default=None, help="rate limit in requests/second (default: none)")
    emu.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer (default 0)")
    emu.add_argument("--depth-cap", type=int, default=60_000, help="how deep a result can be paged: a page that "
                     "starts past this many rows is refused, as Serpstat refuses past 60,000 (default 60000)")
    emu.add_argument("--balance", type=int, default=10_000_000, help="API credits of the account "
                     "(default 10,000,000)")
    emu.add_argument("--string-numbers", action="store_true", help="send ref_pages/domainRank as strings")
    emu.add_argument("--empty-data", action="store_true", help="answer empty results with data: [] "
                     "instead of the 404 'Empty result!' error")
    emu.add_argument("--http-429", action="store_true", help="rate-limit with HTTP 429 + Retry-After")
    init = sub.add_parser("init", help="set up a project folder: .dlt/config.toml, secrets.toml, .gitignore, "
                          "a schedule", description="Write what a project needs to run `refdomains run`: "
                          ".dlt/config.toml (every setting, commented with its default), .dlt/secrets.toml "
                          "(placeholders), a .gitignore and the schedule you choose. A file that exists is kept "
                          "(a .gitignore or .dlt/*.toml without this project's part gets it added); nothing is "
                          "overwritten, so running it again is safe.")
    init.add_argument("--schedule", choices=list(SCHEDULES), default="none",
                      help="also write a schedule: .github/workflows/refdomains.yml, dags/refdomains.py or "
                      "refdomains.cron (default: none)")
    init.add_argument("--dir", help="the project folder, created if missing (default: this folder, or "
                      "DLT_PROJECT_DIR)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    try:
        if args.command not in ("demo", "emulator"):  # the commands that read a project's configuration
            check_written_configuration(known_settings())
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "emulator":
            return _cmd_emulator(args)
        if args.command == "models":
            return _cmd_models(args)
        if args.command == "report":
            return _cmd_report(args)
        if args.command == "status":
            return _cmd_status(args)
        if args.command == "demo":
            return _cmd_demo(args)
        if args.command == "alerts":
            return _cmd_alerts(args)
        if args.command == "dashboard":
            return _cmd_dashboard(args)
        if args.command == "init":
            return _cmd_init(args)
    except (UsageError, ConfigError, ConcurrentRunError) as error:  # nothing fetched, nothing written
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigurationException as error:
        logger.debug("configuration error", exc_info=True)
        unreadable = unreadable_file(getattr(error, "full_paths", None) or [])  # dlt's TOML read error
        print(f"error: {_one_line(unreadable)}" if unreadable else
              f"error: configuration could not be resolved ({_one_line(error)}): check .dlt/config.toml, "
              ".dlt/secrets.toml and the environment", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted: completed snapshots are kept; run again to finish", file=sys.stderr)
        return EXIT_INCOMPLETE
    except Exception as error:  # the last line of defence: one line, exit 1
        logger.debug("%s failed", args.command, exc_info=True)
        print(f"error: {_operational_message(error)} ({DETAILS})", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_USAGE


def _operational_message(error: BaseException) -> str:
    if isinstance(error, ServiceUnavailable):  # already says what failed and what to do
        return _one_line(error)
    if isinstance(error, OSError):
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        return (f"{error.strerror or type(error).__name__}{where}: check the disk and permissions, then "
                "run again (what was loaded stays loaded)")
    return (f"{type(error).__name__}: {_one_line(error)}: run again; if it persists, report it "
            "(what was loaded stays loaded)")


def _one_line(error: BaseException) -> str:
    return first_line(error, limit=500)


class _OneLineErrors(logging.Filter):
    """A log record's exception as its first line, not its traceback: dlt logs a load job it
    retries (a dropped connection) with the whole traceback, which reads as a crash of a run that
    recovered. The tracebacks stay at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("dlt") and any(note in record.getMessage() for note in HANDLED_BY_THE_RUN):
            # what the run itself settles (a dropped session's job retried, its package finished):
            # the run's own line says how it ended; RUNTIME__LOG_LEVEL=INFO shows these
            return logging.getLogger("serpstat_refdomains").isEnabledFor(logging.INFO)
        if record.exc_info and record.exc_info[1] is not None:
            record.msg, record.args = f"{record.getMessage()} ({first_line(record.exc_info[1])})", None
            record.exc_info, record.exc_text = None, None
        message = record.getMessage()
        if TRACEBACK in message:  # a traceback as text: dlt's message of a job it retries
            head, trace = message.split(TRACEBACK, 1)
            lines = [line.strip() for line in trace.splitlines() if line.strip()]
            record.msg, record.args = f"{head.rstrip()} {lines[-1] if lines else ''}", None
        return True


TRACEBACK = "Traceback (most recent call last):"
# dlt's notes of a load job retried after a dropped connection, and of the pending package the
# next pipeline.run finishes first: both are settled by loading.py / warehouse.py
HANDLED_BY_THE_RUN = ("Transient exception in job", "will now load the pending load packages")


def _configure_logging() -> None:
    level = getattr(logging, os.environ.get("RUNTIME__LOG_LEVEL", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level > logging.DEBUG:
        for name in ("dlt", "serpstat_refdomains"):
            logging.getLogger(name).addFilter(_OneLineErrors())


def _cmd_run(args: argparse.Namespace) -> int:
    from . import pipeline

    # None when not given: today's date, and check_history then says the later date was not this flag's
    day = parse_date(args.snapshot_date) if args.snapshot_date is not None else None
    options = pipeline.RunOptions(snapshot_date=day, kind=args.kind, force=args.force,
                                  destination=args.destination,
                                  dataset_name=parse_dataset_name(args.dataset_name), build_models=not args.no_models)
    report = pipeline.run_configured(options, domains=args.domain)
    for line in report.lines():
        print(line)
    if report.failure:
        print(f"error: {report.failure} ({DETAILS})", file=sys.stderr)
    return report.exit_code


def _existing_pipeline(args: argparse.Namespace, needs_models: bool = False):
    """The pipeline for the commands that work on what is loaded; one clear line when there is
    nothing to work on: no database, a dataset without snapshots, models never built."""
    from . import warehouse

    destination = warehouse.resolve_destination(args.destination)
    database = warehouse.duckdb_file(destination)
    if database is not None and not os.path.exists(database):
        raise ConfigError(f"no database at {database}: run `refdomains run` first, or run this in the project "
                          "folder where it ran")
    warehouse.check_configured(destination)
    loaded = warehouse.make_pipeline(destination, parse_dataset_name(args.dataset_name))
    with warehouse.destination_errors(loaded, kept="nothing was changed"), loaded.sql_client() as client:
        if not warehouse.table_exists(client, SNAPSHOTS_TABLE):
            raise ConfigError(f"dataset {loaded.dataset_name!r} holds no snapshots: check --dataset-name (runs "
                              f"load into {DATASET_NAME!r} unless told otherwise), or run `refdomains run` first")
        if needs_models and not warehouse.table_exists(client, "new_ref_domains"):
            raise ConfigError("the models are not built yet (the runs so far used --no-models, or their build "
                              "failed): run `refdomains models`, then this again")
    return loaded


def _cmd_models(args: argparse.Namespace) -> int:
    from .pipeline import build_models
    from .run_lock import run_lock

    settings, _ = resolve_settings(need_token=False, need_domains=False)
    loaded = _existing_pipeline(args)
    with run_lock(loaded):  # never beside a run, whose build replaces the same tables
        try:
            # with a run's DuckDB memory limit and spill folder
            built = build_models(loaded, settings, full_refresh=args.full_refresh)
        except Exception as error:  # said in one line; the traceback at DEBUG
            logger.debug("models build failed", exc_info=True)
            raise ServiceUnavailable(f"the models could not be rebuilt ({_one_line(error)}): the loaded snapshots "
                                     "are untouched; fix the cause, then run `refdomains models` again") from error
    print(f"built {len(built)} models: {', '.join(built)}" if built else "nothing loaded yet: no models built")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from . import report
    from .errors import InvalidDomain
    from .normalize import normalize_target

    if args.format not in report.FORMATS:
        raise UsageError(f"--format {args.format!r} is unknown: use one of {', '.join(report.FORMATS)}")
    since = parse_date(args.since, "--since") if args.since else None
    until = parse_date(args.until, "--until") if args.until else None
    if since and until and until < since:
        raise UsageError(f"--until {until} is before --since {since}: the period runs from --since to --until")
    try:
        domain = normalize_target(args.domain) if args.domain else None
    except InvalidDomain as error:
        raise UsageError(f"--domain: {error}") from None
    # lost_confirmation_snapshots, for the note on what an unconfirmed loss is
    settings, _ = resolve_settings(need_token=False, need_domains=False)
    data = report.collect(_existing_pipeline(args, needs_models=True), domain, since, until,
                          confirm_after=settings.lost_confirmation_snapshots)
    text = report.render(data, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_status(args: argparse.Namespace) -> int:
    from . import report
    from .client import SerpstatClient
    from .errors import SerpstatError

    settings, token = resolve_settings(need_token=False, need_domains=False)
    rows, spent = report.latest_snapshots(_existing_pipeline(args))
    if not token:
        balance = "unknown (no api_token configured)"
    else:
        try:
            with SerpstatClient(token, api_url=settings.api_url, max_attempts=2) as client:
                left = client.get_stats().left_lines
            balance = f"{left} credits left" if left is not None else "unknown"
        except SerpstatError as error:
            balance = f"unavailable ({error})"
    sys.stdout.write(report.render_status(rows, spent, balance))
    return EXIT_OK


def _cmd_dashboard(args: argparse.Namespace) -> int:
    """dlt's dashboard on the pipeline `run` loads with here, given this project's working folder
    (warehouse.working_folder, not dlt's default) and, for DuckDB, the database file (an attached
    pipeline looks for it in the folder its first run started in). `dlt pipeline ... show` opens
    the same dashboard, but only with the commercial dlt[hub] installed: its runner, in dlt itself,
    needs marimo and ibis only (the dashboard extra)."""
    import shlex

    from . import warehouse

    loaded = _existing_pipeline(args)
    env = {}
    database = warehouse.duckdb_file(loaded.destination)
    if database is not None:
        env["DESTINATION__DUCKDB__CREDENTIALS"] = os.path.abspath(database)
    if args.print:
        command = ["dlt", "pipeline", "--pipelines-dir", loaded.pipelines_dir, loaded.pipeline_name, "show"]
        print(" ".join([*(f"{key}={shlex.quote(value)}" for key, value in env.items()), *map(shlex.quote, command)]))
        return EXIT_OK
    try:
        from dlt._workspace.helpers.dashboard.runner import run_dashboard
    except ImportError as error:  # dlt's MissingDependencyException is one
        raise ConfigError(f"dlt's dashboard cannot start ({first_line(error)}): pip install "
                          "'serpstat-refdomains[dashboard]'") from None
    os.environ.update(env)
    # the runner starts `marimo` by name: the one installed beside this package (a venv, pipx, uv tool)
    os.environ["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    os.chdir(warehouse.project_dir())  # where the dashboard reads .dlt/ (credentials) from
    run_dashboard(loaded.pipeline_name, pipelines_dir=loaded.pipelines_dir)
    return EXIT_OK


def _cmd_alerts(args: argparse.Namespace) -> int:
    """What `run` sends after its models build, on demand; exit 1 if a channel failed."""
    from . import alerts
    from .run_lock import run_lock

    settings, _ = resolve_settings(need_token=False, need_domains=False)
    loaded = _existing_pipeline(args)
    if args.dry_run:
        for line in alerts.dry_run(loaded, settings):
            print(line)
        return EXIT_OK
    if not alerts.channels(settings):
        raise ConfigError("no alert channel is configured: set runtime.slack_incoming_hook "
                          "(RUNTIME__SLACK_INCOMING_HOOK) or alert_webhook_url under [sources.serpstat] in "
                          ".dlt/secrets.toml (SOURCES__SERPSTAT__ALERT_WEBHOOK_URL)")
    with run_lock(loaded):  # a run sends the same alerts: never both at once
        lines, ok = alerts.send_pending(loaded, settings)
    for line in lines:
        print(line)
    return EXIT_OK if ok else EXIT_INCOMPLETE


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.weeks < 2:
        raise UsageError(f"--weeks {args.weeks} is too few: new and lost need at least 2 weekly runs")
    run_demo(weeks=args.weeks, directory=args.dir)
    return EXIT_OK


def _cmd_init(args: argparse.Namespace) -> int:
    from .warehouse import project_dir

    for line in init(args.dir or project_dir(), args.schedule):
        print(line)
    return EXIT_OK


def _cmd_emulator(args: argparse.Namespace) -> int:
    from .emulator import SerpstatEmulator

    day = parse_date(args.day, "--day") if args.day else dt.date.today()
    emulator = SerpstatEmulator(
        host=args.host, port=args.port, token=args.token, seed=args.seed, today=day,
        rate_limit_rps=args.rps, latency=args.latency, depth_cap=args.depth_cap, balance=args.balance,
        numbers_as_strings=args.string_numbers, empty_as_error=not args.empty_data,
        http_429_mode=args.http_429)
    for item in args.profile:
        domain, _, count = item.partition("=")
        if not domain or not count.isdigit():
            raise UsageError(f"--profile {item!r} is not DOMAIN=COUNT: write e.g. example.com=2500")
        emulator.set_profile(domain.strip(), int(count))
    token_note = "token demo-token" if args.token == "demo-token" else "token as given by --token"
    print(f"Serpstat emulator on {emulator.url} ({token_note}, day {day}); Ctrl-C stops it",
          flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        emulator.serve_forever()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
