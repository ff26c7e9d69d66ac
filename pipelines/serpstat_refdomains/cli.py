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

from dlt.common.configuration.exceptions import ConfigurationException

from .arguments import EXIT_USAGE, build_parser
from .config import known_settings, parse_dataset_name, parse_date, resolve_settings
from .config_files import check_written_configuration, unreadable_file
from .constants import DATASET_NAME, SNAPSHOTS_TABLE
from .errors import ConcurrentRunError, ConfigError, ServiceUnavailable, UsageError, first_line
from .scaffold import init

EXIT_OK, EXIT_INCOMPLETE = 0, 1
DETAILS = "details with RUNTIME__LOG_LEVEL=DEBUG"
logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
