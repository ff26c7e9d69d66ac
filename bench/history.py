"""A year of history: N weekly `refdomains run`s on the emulator's evolving link graph (bench/README.md)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PYTHON, TOKEN, pipeline_env, refdomains, table

from serpstat_refdomains.budget import read_cost
from serpstat_refdomains.emulator import SerpstatEmulator
from serpstat_refdomains.emulator.graph import Profile, in_last_week

START = dt.date(2026, 1, 5)  # a Monday
PG_URL = os.environ.get("REFDOMAINS_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/test")
# active donors on a day per unit of Profile.base_size (births over lifetimes, plus returns),
# measured on the emulator's graph: base_size = wanted / ACTIVE_PER_BASE
ACTIVE_PER_BASE = 1.72
_MODELS_SECONDS = re.compile(r"models built in ([0-9.]+)s \(([0-9.]+)s of CPU\)")
_LOADS_PEAK = re.compile(r"peak RSS ([0-9]+) MB before the build")


@dataclass(frozen=True)
class Target:
    domain: str
    size: int  # referring domains wanted on the first day (the graph then evolves)


def default_targets(scale: float = 1.0) -> list[Target]:
    sized = [("big", 150_000, 1), ("mid", 20_000, 4), ("small", 500, 20)]
    return [Target(f"{name}{i}.example.com", max(1, int(size * scale)))
            for name, size, count in sized for i in range(count)]


@dataclass
class Week:
    week: int
    day: str
    exit_code: int
    seconds: float
    models_seconds: float | None
    models_cpu_seconds: float | None  # the machine is shared: CPU time is the steadier figure
    cpu_seconds: float  # user + system of the refdomains process
    peak_rss_mb: float
    database_mb: float
    credits: int
    minimum: int
    rows: int
    partitions: int
    statuses: dict = field(default_factory=dict)
    excess_by_target: dict = field(default_factory=dict)  # credits above the minimum, where any
    error: str = ""
    loads_peak_rss_mb: float | None = None  # the process's peak before its models build: the loads'

    @property
    def load_seconds(self) -> float:
        return self.seconds - (self.models_seconds or 0.0)

    @property
    def load_cpu_seconds(self) -> float:
        return self.cpu_seconds - (self.models_cpu_seconds or 0.0)

    @property
    def excess(self) -> int:
        return self.credits - self.minimum


def _measured(argv: list[str], env: dict, cwd: Path) -> dict:
    """Run argv in a child that reports its own wall time and peak RSS (the emulator is not in it)."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "elapsed = time.perf_counter() - t\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps({'rc': done.returncode, 's': elapsed, 'rss': usage.ru_maxrss / 1024,\n"
        "                  'cpu': usage.ru_utime + usage.ru_stime, 'out': done.stdout, 'err': done.stderr}))\n"
    )
    done = subprocess.run([PYTHON, "-c", probe, *argv], capture_output=True, text=True, env=env, cwd=cwd, check=True)
    return json.loads(done.stdout)


class Destination:
    """Where the runs load, and how big it is."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.dataset = f"history_{os.getpid()}_{int(time.time())}" if name == "postgres" else "serpstat"

    def args(self) -> list[str]:
        return ["--destination", self.name, "--dataset-name", self.dataset]

    def env(self) -> dict[str, str]:
        return {"DESTINATION__POSTGRES__CREDENTIALS": PG_URL} if self.name == "postgres" else {}

    def _query(self, sql: str) -> list[tuple]:
        if self.name == "duckdb":
            import duckdb
            with duckdb.connect(str(self.folder / "serpstat_refdomains.duckdb"), read_only=True) as con:
                return con.execute(sql.replace("%s", "?")).fetchall()
        import psycopg2
        with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
            cur.execute(sql.replace("serpstat.", f"{self.dataset}."))
            return cur.fetchall()

    def ledger(self, day: dt.date) -> list[tuple]:
        """(target, kind, status, rows_loaded, partitions, partition_plan) of the day's snapshots."""
        return self._query("SELECT target_domain, snapshot_kind, status, rows_loaded, partitions, partition_plan "
                           f"FROM serpstat.snapshots WHERE snapshot_date = '{day.isoformat()}'")

    def size_mb(self) -> float:
        if self.name == "duckdb":
            files = list(self.folder.glob("serpstat_refdomains.duckdb*"))
            return sum(f.stat().st_size for f in files if f.is_file()) / 2**20
        rows = self._query("SELECT coalesce(sum(pg_total_relation_size(quote_ident(schemaname) || '.' || "
                           f"quote_ident(tablename))), 0) FROM pg_tables WHERE schemaname = '{self.dataset}'")
        return float(rows[0][0]) / 2**20

    def drop(self) -> None:
        if self.name == "postgres":
            import psycopg2
            with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
                for schema in (self.dataset, f"{self.dataset}_staging"):  # dlt's merge staging too
                    cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def paged_cost(total: int, page_size: int) -> int:
    """Credits of one unpartitioned read: its rows (1 for an empty answer) and the rows its
    overlapping windows share (what proves each seam)."""
    return read_cost(total, page_size)


def minimum_credits(emulator: SerpstatEmulator, targets: list[Target], day: dt.date,
                    page_size: int) -> dict[str, tuple[int, int]]:
    """Per target: (rows the API returns, credits at the minimum if unpartitioned), from the
    emulator's truth for the day: its full snapshot (a run pulls no last_week on a full snapshot's
    day, the full one holding every donor it would list)."""
    minimum = {}
    for target in targets:
        count = len(emulator.graph.truth(target.domain, day))
        minimum[target.domain] = (count, paged_cost(count, page_size))
    return minimum


def partitioned_allowance(plan: str | None, page_size: int, unpartitioned: int) -> int:
    """What a partitioned snapshot may cost beyond `unpartitioned` (its cost as one read): each leaf
    paged on its own, one 1-row probe per leaf and one final count."""
    leaves = json.loads(plan) if plan else []
    paged = sum(paged_cost(int(leaf.get("total") or 0), page_size) for leaf in leaves)
    return paged + len(leaves) + 1 - unpartitioned


def run_history(weeks: int, destination: str = "duckdb", targets: list[Target] | None = None, *,
                depth_cap: int = 60_000, page_size: int = 1000, folder: Path | None = None,
                echo=None) -> list[Week]:
    """N weekly runs; returns one Week per run (never raises on a failed run: it is a result)."""
    targets = targets if targets is not None else default_targets()
    folder = folder or Path(tempfile.mkdtemp(prefix=f"refdomains-history-{destination}-"))
    dest = Destination(destination, folder)
    results: list[Week] = []
    with SerpstatEmulator(token=TOKEN, today=START, balance=10**12, depth_cap=depth_cap) as emulator:
        for target in targets:
            emulator.graph.set_profile(target.domain, Profile(base_size=max(1, round(target.size / ACTIVE_PER_BASE))))
        env = {**pipeline_env(folder, emulator.url, [t.domain for t in targets],
                              SOURCES__SERPSTAT__PAGE_SIZE=str(page_size), RUNTIME__LOG_LEVEL="INFO"),
               **dest.env()}
        try:
            for week in range(weeks):
                day = START + dt.timedelta(days=7 * week)
                emulator.today = day
                emulator.api.clear_log()
                done = _measured(refdomains("run", *dest.args(), on=day), env, folder)
                charged: dict[str, int] = {}
                for entry in emulator.log:
                    charged[entry.query or ""] = charged.get(entry.query or "", 0) + entry.charge
                truth = minimum_credits(emulator, targets, day, page_size)
                ledger = dest.ledger(day)
                # a result over the depth cap is read per leaf partition, and a series' first pull
                # starts with a 1-row count: its size is unknown (README's Credits formula)
                probes = {t: 0 for t in truth}
                for target, _, _, rows_loaded, parts, plan in ledger:
                    if int(parts or 0) > 1 and target in probes:
                        probes[target] += partitioned_allowance(plan, page_size,
                                                                paged_cost(int(rows_loaded), page_size))
                    elif week == 0 and target in probes:
                        probes[target] += 1
                excess = {t: charged.get(t, 0) - low - probes[t] for t, (_, low) in truth.items()}
                credits = sum(charged.values())
                rows = sum(r for r, _ in truth.values())
                minimum = sum(low for _, low in truth.values())
                partitions = sum(probes.values())
                statuses: dict[str, int] = {}
                for _, _, status, _, _, _ in ledger:
                    statuses[status] = statuses.get(status, 0) + 1
                found = _MODELS_SECONDS.search(done["err"])
                result = Week(week + 1, day.isoformat(), done["rc"], round(done["s"], 2),
                              float(found.group(1)) if found else None,
                              float(found.group(2)) if found else None, round(done["cpu"], 2), round(done["rss"], 1),
                              round(dest.size_mb(), 1), credits, minimum + partitions, rows, partitions, statuses,
                              {t: e for t, e in excess.items() if e},
                              "" if done["rc"] == 0 else (done["err"].strip().splitlines() or [""])[-1][:300])
                loads_peak = _LOADS_PEAK.search(done["err"])
                result.loads_peak_rss_mb = float(loads_peak.group(1)) if loads_peak else None
                results.append(result)
                if echo:
                    echo(result)
        finally:
            dest.drop()
    return results


def models_at(weeks: int, destination: str = "duckdb", targets: list[Target] | None = None,
              folder: Path | None = None) -> dict:
    """The models builds at `weeks` weekly snapshots written straight from the emulator's truth
    (what `weeks` clean runs load), with a run's DuckDB settings, without replaying the year: the
    first build over weeks 1 to N-1 (what an upgrade or `refdomains models --full-refresh` does),
    then week N's build, in a process of its own for its peak RSS (what a weekly run does: the
    incremental model compares week N's snapshots only). Returns rows, seconds, CPU seconds, RSS."""
    import dlt
    import pyarrow as pa

    from serpstat_refdomains import pipeline as run_pipeline
    from serpstat_refdomains.config import build_settings
    from serpstat_refdomains.contract import snapshot_key
    from serpstat_refdomains.normalize import normalize_domain, registrable_domains

    targets = targets if targets is not None else default_targets()
    folder = folder or Path(tempfile.mkdtemp(prefix=f"refdomains-models-{destination}-"))
    dest = Destination(destination, folder)
    target_dest = (dlt.destinations.duckdb(str(folder / "serpstat_refdomains.duckdb")) if destination == "duckdb"
                   else dlt.destinations.postgres(PG_URL))
    pipe = dlt.pipeline("models_at", destination=target_dest, dataset_name=dest.dataset,
                        pipelines_dir=str(folder / "p"))
    with SerpstatEmulator(token=TOKEN, today=START) as emulator:
        for target in targets:
            emulator.graph.set_profile(target.domain, Profile(base_size=max(1, round(target.size / ACTIVE_PER_BASE))))
        names: dict[str, tuple[str, str]] = {}
        ledger: list[tuple] = []
        total, first = 0, {}
        with pipe.sql_client() as client:
            ds = client.fully_qualified_dataset_name()
            client.execute_sql(f"CREATE SCHEMA IF NOT EXISTS {ds}")
            client.execute_sql(
                f"CREATE TABLE {ds}.ref_domains (snapshot_key VARCHAR, target_domain VARCHAR, search_type VARCHAR, "
                "snapshot_date DATE, snapshot_kind VARCHAR, ref_domain VARCHAR, domain_from VARCHAR, "
                "registrable_domain VARCHAR, ref_pages BIGINT, domain_rank BIGINT, pulled_at TIMESTAMP WITH TIME ZONE)")
            client.execute_sql(
                f"CREATE TABLE {ds}.snapshots (snapshot_key VARCHAR, target_domain VARCHAR, search_type VARCHAR, "
                "snapshot_kind VARCHAR, snapshot_date DATE, filter_hash VARCHAR, complex_filter VARCHAR, "
                "status VARCHAR, expected_total BIGINT, rows_loaded BIGINT, requests BIGINT, credits_spent BIGINT, "
                "credits_left BIGINT, rows_rejected BIGINT, partitions BIGINT, started_at TIMESTAMP WITH TIME ZONE, "
                "finished_at TIMESTAMP WITH TIME ZONE, error VARCHAR)")
        settings = build_settings(domains=[t.domain for t in targets])
        for week in range(weeks):
            day = START + dt.timedelta(days=7 * week)
            columns: dict[str, list] = {c: [] for c in ("snapshot_key", "target_domain", "search_type", "snapshot_date",
                                                       "snapshot_kind", "ref_domain", "domain_from",
                                                       "registrable_domain", "ref_pages", "domain_rank")}
            for target in targets:
                donors = emulator.graph.active(target.domain, day)
                for kind in ("full", "last_week"):
                    chosen = [d for d in donors if kind == "full" or in_last_week(d, day)]
                    key = snapshot_key(target.domain, S_TYPE, kind, day)
                    seen = set()
                    for donor in chosen:
                        if donor.name not in names:
                            normalized = normalize_domain(donor.name)
                            names[donor.name] = (normalized, registrable_domains([normalized])[0])
                        ref, registrable = names[donor.name]
                        if ref in seen:
                            continue
                        seen.add(ref)
                        for column, value in zip(columns, (key, target.domain, S_TYPE, day, kind, ref, donor.name,
                                                           registrable, donor.ref_pages, donor.rank), strict=False):
                            columns[column].append(value)
                    ledger.append((key, target.domain, S_TYPE, kind, day, settings.filter_hash, len(seen)))
            total += len(columns["snapshot_key"])
            rows = pa.table(columns).append_column(
                "pulled_at", pa.nulls(len(columns["snapshot_key"]), pa.timestamp("us", tz="UTC")))
            _append(pipe, destination, rows)
            with pipe.sql_client() as client:
                ds = client.fully_qualified_dataset_name()
                for key, domain, search_type, kind, day, fhash, rows in ledger:
                    client.execute_sql(f"INSERT INTO {ds}.snapshots (snapshot_key, target_domain, search_type, "
                                       "snapshot_kind, snapshot_date, filter_hash, status, expected_total, "
                                       "rows_loaded, partitions) VALUES (%s, %s, %s, %s, %s, %s, 'complete', %s, "
                                       "%s, 1)", key, domain, search_type, kind, day, fhash, rows, rows)
            ledger.clear()
            if week == weeks - 2:
                started, cpu = time.perf_counter(), time.process_time()
                run_pipeline.build_models(pipe, settings)
                first = {"first_build_seconds": round(time.perf_counter() - started, 2),
                         "first_build_cpu_seconds": round(time.process_time() - cpu, 2)}
    try:
        weekly = _measured([PYTHON, "-c", _WEEKLY_BUILD, str(folder), destination, dest.dataset,
                            ",".join(t.domain for t in targets)], dict(os.environ), folder)
        if weekly["rc"] != 0:
            raise RuntimeError(f"week {weeks}'s models build failed: {weekly['err'].strip()[-500:]}")
        return {"destination": destination, "weeks": weeks, "rows": total, **first,
                "weekly_build_seconds": round(weekly["s"], 2), "weekly_build_cpu_seconds": round(weekly["cpu"], 2),
                "weekly_build_peak_rss_mb": round(weekly["rss"], 1), "database_mb": round(dest.size_mb(), 1)}
    finally:
        dest.drop()


# week N's models build of models_at, alone in a process: argv = folder, destination, dataset, domains
_WEEKLY_BUILD = f"""
import sys, dlt
from serpstat_refdomains import pipeline as run_pipeline
from serpstat_refdomains.config import build_settings
folder, destination, dataset, domains = sys.argv[1:5]
target = (dlt.destinations.duckdb(folder + "/serpstat_refdomains.duckdb") if destination == "duckdb"
          else dlt.destinations.postgres({PG_URL!r}))
pipe = dlt.pipeline("models_at", destination=target, dataset_name=dataset, pipelines_dir=folder + "/p")
run_pipeline.build_models(pipe, build_settings(domains=domains.split(",")))
"""


S_TYPE = "domain_with_subdomains"


def _append(pipe, destination: str, rows) -> None:
    """Append an arrow table to ref_domains: DuckDB reads it directly, PostgreSQL by COPY."""
    with pipe.sql_client() as client:
        table = f"{client.fully_qualified_dataset_name()}.ref_domains"
        if destination == "duckdb":
            connection = client.native_connection
            connection.register("_rows", rows)
            connection.execute(f"INSERT INTO {table} SELECT * FROM _rows")
            connection.unregister("_rows")
        else:
            import io

            import pyarrow.csv as pacsv
            buffer = io.BytesIO()
            pacsv.write_csv(rows, buffer, pacsv.WriteOptions(include_header=False))
            buffer.seek(0)
            with client.native_connection.cursor() as cursor:
                cursor.copy_expert(f"COPY {table} FROM STDIN WITH (FORMAT csv)", buffer)
            client.native_connection.commit()


def summary(results: list[Week]) -> dict:
    def at(n: int) -> Week | None:
        return results[n - 1] if len(results) >= n else None

    second, last = at(2), results[-1] if results else None
    built = [w.models_seconds for w in results if w.models_seconds is not None]
    return {
        "weeks": len(results),
        "all_exit_0": all(w.exit_code == 0 for w in results),
        "failed_weeks": [w.week for w in results if w.exit_code != 0],
        "load_s_week2": second.load_seconds if second else None,
        "load_s_last": last.load_seconds if last else None,
        "load_ratio_last_vs_2": round(last.load_seconds / second.load_seconds, 3) if second and last else None,
        "load_cpu_s_week2": round(second.load_cpu_seconds, 2) if second else None,
        "load_cpu_s_last": round(last.load_cpu_seconds, 2) if last else None,
        "load_cpu_ratio_last_vs_2": round(last.load_cpu_seconds / second.load_cpu_seconds, 3) if second and last
        else None,
        "rss_mb_week2": second.peak_rss_mb if second else None,
        "rss_mb_last": last.peak_rss_mb if last else None,
        "rss_ratio_last_vs_2": round(last.peak_rss_mb / second.peak_rss_mb, 3) if second and last else None,
        "loads_rss_mb_week2": second.loads_peak_rss_mb if second else None,
        "loads_rss_mb_last": last.loads_peak_rss_mb if last else None,
        "models_s_last": last.models_seconds if last else None,
        "models_s_max": max(built) if built else None,
        "models_cpu_s_last": last.models_cpu_seconds if last else None,
        "database_mb_last": last.database_mb if last else None,
        "credits": sum(w.credits for w in results),
        "minimum": sum(w.minimum for w in results),
        "excess": sum(w.excess for w in results),
    }


def print_table(results: list[Week], destination: str) -> None:
    header = ("week", "day", "exit", "wall s", "load s", "load CPU s", "models s", "models CPU s", "peak RSS MB",
              "loads' peak MB", "db MB", "rows", "credits", "minimum", "excess")
    rows = [(w.week, w.day, w.exit_code, f"{w.seconds:.1f}", f"{w.load_seconds:.1f}", f"{w.load_cpu_seconds:.1f}",
             "-" if w.models_seconds is None else f"{w.models_seconds:.2f}",
             "-" if w.models_cpu_seconds is None else f"{w.models_cpu_seconds:.2f}", f"{w.peak_rss_mb:.0f}",
             "-" if w.loads_peak_rss_mb is None else f"{w.loads_peak_rss_mb:.0f}", f"{w.database_mb:.0f}",
             f"{w.rows:,}", f"{w.credits:,}", f"{w.minimum:,}", f"{w.excess:,}")
            for w in results]
    print(f"history on {destination}")
    print(table(rows, header))
    print(json.dumps(summary(results), indent=2))


def run(weeks: int = 4) -> dict:
    """For `make bench`: a short history on DuckDB (the full one is `--weeks 52`)."""
    results = run_history(weeks, "duckdb")
    return summary(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--destination", choices=("duckdb", "postgres", "both"), default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every target's size")
    parser.add_argument("--json", metavar="PATH", help="write every run's figures and the summary here")
    parser.add_argument("--models-only", action="store_true",
                        help="write --weeks of snapshots straight from the emulator's truth and time one models build")
    args = parser.parse_args()
    if args.models_only:
        for name in (["duckdb", "postgres"] if args.destination == "both" else [args.destination]):
            print(json.dumps(models_at(args.weeks, name, default_targets(args.scale))), flush=True)
        return
    destinations = ["duckdb", "postgres"] if args.destination == "both" else [args.destination]
    out: dict = {"date": dt.date.today().isoformat(), "weeks": args.weeks, "scale": args.scale, "runs": {}}
    for name in destinations:
        def echo(week: Week, name: str = name) -> None:
            print(f"[{name}] " + json.dumps(dataclasses.asdict(week)), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=2))
        weeks_done: list[Week] = []
        out["runs"][name] = {"weeks": weeks_done}

        def keep(week: Week, echo=echo, weeks_done=weeks_done, name: str = name) -> None:
            weeks_done.append(week)
            out["runs"][name]["weeks"] = [dataclasses.asdict(w) for w in weeks_done]
            out["runs"][name]["summary"] = summary(weeks_done)
            echo(week)
        results = run_history(args.weeks, name, default_targets(args.scale), echo=keep)
        print_table(results, name)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
