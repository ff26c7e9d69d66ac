"""`make bench`: every benchmark of bench/, one results table (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import credits
import duckdb_share
import history
import memory
import models_build
import partition_churn
import postgres_load
import rate_limit
import request_counts
import throughput
from common import machine, table


def main() -> None:
    rows = []
    for targets in throughput.SCALES:
        t = throughput.run(targets)
        size = f"{t['rows'] // 1000:,}k rows"
        rows += [
            (f"throughput {size}: refdomains run (whole process)", f"{t['ours_rows_s']:,.0f} rows/s",
             f"{t['rows']:,} rows in {t['ours_s']:.1f} s"),
            (f"throughput {size}: peer (a) dlt rest_api", f"{t['peer_rows_s']:,.0f} rows/s",
             f"ours = {t['vs_peer']:.1f}x (target >= 20x)"),
            (f"throughput {size}: floor (b) fetch + JSON decode", f"{t['floor_rows_s']:,.0f} rows/s",
             f"ours = {t['vs_floor']:.0%} (target >= 50%)"),
            (f"emulator serving ({size})", f"{t['emulator_rows_s']:,.0f} rows/s", "pre-rendered pages"),
        ]
    t = throughput.run(6, per_target=50_000)
    rows.append(("issue 26: throughput 300k rows, 6 targets", f"ours {t['ours_rows_s']:,.0f} / peer "
                 f"{t['peer_rows_s']:,.0f} rows/s", f"ours = {t['vs_peer']:.1f}x the peer (bar >= 3x); CPU "
                 f"{t['ours_cpu_s']:.1f} s vs {t['peer_cpu_s']:.1f} s"))
    q = request_counts.run()
    peers = {p["target"]: p for p in q["peer"]}
    for o in q["ours"]:
        p = peers.get(o["target"])
        rows.append((f"issue 26: requests, {o['target']}", f"{o['requests']} req / {o['credits']:,} credits",
                     f"bar {o['requests_bar']} req / {o['credits_bar']:,.0f} credits; {o['pages']} pages; "
                     f"{o['at_1_rps_s']:.0f} s at 1/s"
                     + (f"; peer {p['requests']} req, {p['loaded']:,} rows loaded" if p else "")))
    c26 = partition_churn.run(trials=4, rates=(0.3,))
    for rate, v in c26["rates"].items():
        rows.append((f"issue 26: churn in 1 of ~40 partitions, p={rate}",
                     f"{v['incomplete']}/{c26['trials']} incomplete",
                     f"{v['credits_per_complete']:,.0f} credits per complete snapshot ({c26['rows']:,} rows); "
                     f"other leaves re-read: {max(v['other_extra_credits'])} credits; rerun {v['rerun_credits']}"))
    d = duckdb_share.run()
    rows.append(("DuckDB alone: parquet -> staging -> merge", f"{d['us_per_row']:.1f} us/row",
                 f"{d['rows']:,} rows (copy alone {d['copy_us_per_row']:.1f} us/row); "
                 "the targets leave 3.7-5.3 us/row for all the work"))
    r = rate_limit.run()
    rows.append(("rate limit 10/s, 200 ms latency, 5x20 pages", f"{r['achieved_rps']:.2f} req/s",
                 f"{r['use']:.1%} of the limit (target >= 95%), {r['throttled']} throttled"))
    m = memory.run()
    rows.append(("peak RSS 100k vs 1M rows", f"{m['peak_mb_small']:.0f} / {m['peak_mb_large']:.0f} MB",
                 f"ratio {m['ratio']:.2f} (target <= 1.3)"))
    c = credits.run()
    rows.append(("credits, 20 assorted targets", f"ours {c['ours_credits']:,} / peer {c['peer_credits']:,}",
                 f"minimum {c['minimum']:,} (rows + empty): ours +{c['ours_waste']}, peer +{c['peer_waste']}"))
    b = models_build.run()
    pg = b.get("postgres", {})
    rows.append(("models over 1,000,000 ref_domains rows", f"DuckDB {b['duckdb']['seconds']:.1f} s",
                 f"PostgreSQL {pg['seconds']:.1f} s" if "seconds" in pg else f"PostgreSQL: {pg.get('error')}"))
    p = postgres_load.run()
    rows.append(("load into PostgreSQL (CSV COPY)", f"{p['postgres_rows_s']:,.0f} rows/s",
                 f"DuckDB {p['duckdb_rows_s']:,.0f} rows/s, {p['rows']:,} rows"))
    h = history.run(weeks=4)
    rows.append((f"history, {h['weeks']} weekly runs (150k + 4x20k + 20x500 referring domains)",
                 f"exit 0: {h['all_exit_0']}, models {h['models_s_last']} s",
                 f"peak RSS {h['rss_mb_week2']:.0f} -> {h['rss_mb_last']:.0f} MB, load {h['load_s_week2']:.1f} -> "
                 f"{h['load_s_last']:.1f} s, credits +{h['excess']:,} over the minimum; 52 weeks: "
                 "bench/history.py --weeks 52"))
    print(f"serpstat-refdomains benchmarks, {dt.date.today()}, {machine()}")
    print(table(rows, ("benchmark", "result", "detail")))


if __name__ == "__main__":
    main()
