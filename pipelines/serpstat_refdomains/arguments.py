"""`refdomains`'s grammar: every command and flag with its help (docs/operations.md). A usage
error is one line on stderr and exit code 2, as every bad input of the command line."""

from __future__ import annotations

import argparse
from typing import NoReturn

from .constants import DATASET_NAME
from .scaffold import SCHEDULES

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message}: see '{self.prog} --help'\n")


def _destination_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--destination", help="dlt destination (default: duckdb)")
    parser.add_argument("--dataset-name", help=f"dataset/schema (default: {DATASET_NAME})")


def build_parser() -> argparse.ArgumentParser:
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
