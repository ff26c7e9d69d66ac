"""Requests, credits and wall time at a rate limit per target size, ours against the dlt rest_api
peer, in one run (bench/README.md, issue 26 part 1).

For each target (1k, 20k, 59k rows, under the 60,000-row depth cap, and 150k, over it: partitioned
by name), `refdomains run --kind full --no-models` and the peer each run alone against an emulator
that enforces RATE requests a second, ours configured at that rate, the peer paced at it. Reports
getRefDomains requests and credits from the emulator's log, the pure page count ceil(rows / 1000),
the bars of issue 26 (requests <= pages x 1.1 + 2, credits <= rows x 1.006), the measured wall time
at RATE, and the wall time the rate alone imposes at 1 and at RATE requests a second: every
request the run makes (the free getStats preflight included) / rate. The 150k target is pulled
twice: a first pull, then the next week's from the partition plan the ledger kept.

    python bench/request_counts.py [--rate 10] [--one-rps] [--client-rate 1] [--one-rps-only]

--one-rps also measures the 1k and 20k targets at 1 request a second (about a minute), ours and
the peer paced at --client-rate (default 1); --one-rps-only measures only that.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from pathlib import Path

from common import PYTHON, ROOT, TOKEN, measure, pipeline_env, refdomains, table, workdir

from serpstat_refdomains.emulator import SerpstatEmulator

DAY = dt.date(2026, 3, 2)
PAGE = 1000
SIZES = {"rows1k.com": 1_000, "rows20k.com": 20_000, "rows59k.com": 59_000, "rows150k.com": 150_000}
PARTITIONED = "rows150k.com"


def _counts(emu: SerpstatEmulator, since: int, domain: str) -> dict:
    entries = emu.log[since:]
    pages = [e for e in entries if e.method.endswith("getRefDomains") and e.query == domain]
    others = [e for e in entries if not e.method.endswith("getRefDomains")]
    stamps = [e.at for e in entries]
    return {"requests": len(pages), "credits": sum(e.charge for e in pages), "other_requests": len(others),
            "span_s": max(stamps) - min(stamps) if stamps else 0.0,
            "throttled": sum(1 for e in entries if e.outcome == "error:429"),
            "one_row_requests": sum(1 for e in pages if e.size == 1)}


def ours(emu: SerpstatEmulator, domain: str, rate: float, folder: Path | None = None,
         on: dt.date = DAY) -> dict:
    folder = folder or workdir("requests-ours")
    since = len(emu.log)
    env = pipeline_env(folder, emu.url, [domain], SOURCES__SERPSTAT__REQUESTS_PER_SECOND=str(rate),
                       SOURCES__SERPSTAT__PAGE_SIZE=str(PAGE))
    took = measure(refdomains("run", "--kind", "full", "--no-models", on=on), env=env, cwd=folder)
    return {**_counts(emu, since, domain), "seconds": took.seconds, "folder": folder}


def peer(emu: SerpstatEmulator, domain: str, rate: float) -> dict:
    folder = workdir("requests-peer")
    since = len(emu.log)
    env = pipeline_env(folder, emu.url, [], PEER_REQUESTS_PER_SECOND=str(rate))
    try:
        took = measure([PYTHON, str(ROOT / "bench" / "peer_rest_api.py"), emu.url, TOKEN,
                        str(folder / "rest_api_peer.duckdb"), domain], env=env, cwd=folder)
        rows, seconds, failed = int(took.stdout.strip().splitlines()[-1]), took.seconds, None
    except RuntimeError as error:  # past the depth cap: Serpstat refuses page 61 of 1000
        rows, seconds, failed = 0, None, str(error)[-300:]
    return {**_counts(emu, since, domain), "rows": rows, "seconds": seconds, "failed": failed}


def row(domain: str, rows: int, measured: dict, rate: float) -> dict:
    pages = math.ceil(rows / PAGE)
    every = measured["requests"] + measured["other_requests"]
    return {
        "target": domain, "rows": rows, "pages": pages,
        "requests": measured["requests"], "requests_bar": round(pages * 1.1 + 2, 1),
        "credits": measured["credits"], "credits_bar": round(rows * 1.006, 1),
        "requests_ok": measured["requests"] <= pages * 1.1 + 2, "credits_ok": measured["credits"] <= rows * 1.006,
        "one_row_requests": measured["one_row_requests"], "other_requests": measured["other_requests"],
        "throttled": measured["throttled"],
        "at_1_rps_s": every / 1.0, f"at_{rate:g}_rps_s": every / rate,
        f"measured_{rate:g}_rps_s": measured.get("seconds"), "requests_span_s": measured["span_s"],
    }


def run(rate: float = 10.0, one_rps: bool = False, client_rate: float = 1.0, main: bool = True) -> dict:
    """`client_rate`: the rate ours is configured at where the emulator enforces 1 request/s;
    `main=False` measures only that (with `one_rps`)."""
    results: dict = {"rate": rate, "ours": [], "peer": [], "one_rps": [], "client_rate": client_rate}
    with SerpstatEmulator(token=TOKEN, today=DAY, balance=10**9, rate_limit_rps=rate) as emu:
        for domain, size in SIZES.items():
            emu.set_profile(domain, size)
            emu.graph.truth(domain, DAY)  # the graph generated before any clock starts
        for domain, size in SIZES.items() if main else ():
            mine = ours(emu, domain, rate)
            results["ours"].append(row(domain, size, mine, rate))
            theirs = peer(emu, domain, rate)
            results["peer"].append({**row(domain, size, theirs, rate), "loaded": theirs["rows"],
                                    "failed": theirs["failed"]})
            if domain == PARTITIONED:  # next week's pull starts from the leaves the ledger kept
                week = DAY + dt.timedelta(days=7)
                emu.today = week
                rows = len(emu.graph.active(domain, week))
                again = ours(emu, domain, rate, folder=mine["folder"], on=week)
                results["ours"].append({**row(domain, rows, again, rate), "target": f"{domain}, next week"})
                emu.today = DAY
        if one_rps:
            emu.api.set_rate_limit(1.0)
            for domain in ("rows1k.com", "rows20k.com"):
                mine, theirs = ours(emu, domain, client_rate), peer(emu, domain, client_rate)
                results["one_rps"].append({
                    "target": domain, "ours_requests": mine["requests"] + mine["other_requests"],
                    "ours_throttled": mine["throttled"], "ours_s": mine["seconds"], "ours_span_s": mine["span_s"],
                    "peer_requests": theirs["requests"], "peer_throttled": theirs["throttled"],
                    "peer_s": theirs["seconds"], "peer_span_s": theirs["span_s"], "peer_rows": theirs["rows"],
                    "peer_failed": theirs["failed"]})
    for r in results["ours"]:
        r.pop("folder", None)
    return results


def markdown(results: dict) -> str:
    """The figures as bench/README.md shows them."""
    rate = results["rate"]
    peers = {p["target"]: p for p in results["peer"]}
    rows = []
    for o in results["ours"]:
        p = peers.get(o["target"])
        rows.append((
            o["target"], f"{o['rows']:,}", o["pages"],
            f"{o['requests']} (+{o['other_requests']})", o["requests_bar"], "yes" if o["requests_ok"] else "**no**",
            f"{o['credits']:,}", f"{o['credits_bar']:,.0f}", "yes" if o["credits_ok"] else "**no**",
            f"{o['at_1_rps_s']:.0f} s", f"{o[f'at_{rate:g}_rps_s']:.1f} s", f"{o['requests_span_s']:.1f} s",
            f"{p['requests']}" if p else "", f"{p['credits']:,}" if p else "", f"{p['loaded']:,}" if p else "",
            f"{p['at_1_rps_s']:.0f} s" if p else "", f"{p['requests_span_s']:.1f} s" if p else "",
        ))
    header = ("target", "rows", "pages", "ours requests (+getStats)", "bar", "ok", "ours credits", "bar", "ok",
              "ours at 1/s", f"ours at {rate:g}/s", f"ours measured at {rate:g}/s", "peer requests", "peer credits",
              "peer rows loaded", "peer at 1/s", f"peer measured at {rate:g}/s")
    text = table(rows, header)
    if results["one_rps"]:
        one = [(r["target"], r["ours_requests"], r["ours_throttled"], f"{r['ours_span_s']:.1f} s",
                r["peer_requests"], r["peer_throttled"], f"{r['peer_span_s']:.1f} s", f"{r.get('peer_rows', 0):,}")
               for r in results["one_rps"]]
        text += f"\n\nMeasured at 1 request/s, paced at {results['client_rate']:g}:\n\n" + table(one, (
            "target", "ours requests", "ours throttled", "ours measured", "peer requests", "peer throttled",
            "peer measured", "peer rows loaded"))
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--one-rps", action="store_true")
    parser.add_argument("--client-rate", type=float, default=1.0,
                        help="with --one-rps: the rate ours and the peer pace at (default 1)")
    parser.add_argument("--one-rps-only", action="store_true", help="measure only the --one-rps part")
    args = parser.parse_args()
    found = run(args.rate, args.one_rps or args.one_rps_only, args.client_rate, main=not args.one_rps_only)
    print(json.dumps(found, indent=2, default=str))
    print(markdown(found))
