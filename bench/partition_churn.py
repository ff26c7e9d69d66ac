"""Churn confined to one partition of a result over the depth cap: what it costs a pull, and what
the pull reads again (bench/README.md, issue 26 part 2).

A 1/10 scale model of a 150,000-row target read in pages of 1,000 under Serpstat's 60,000-row cap:
15,000 rows, pages of 100, a depth cap of 6,000, so the result splits by name into ~40 leaves of
~400 rows (4-5 windows each), as the real one splits into leaves of ~3,800. During each pull, every
request for the leaf `domain_from startsWith PREFIX` changes that leaf with probability `rate`
just before it is answered (bench/churn.py's faults: a row inserted, deleted, or one of each so the
total stays put, before or after the requested rows, inside the requested leaf only). Nothing
else changes. Per rate, over `trials` first pulls (SnapshotFetcher in process, 4 page threads):

- incomplete: pulls that gave the leaf up after PARTITION_ATTEMPTS reads;
- credits and requests per pull, split into the churned leaf and everything else, against one
  churn-free pull: what the other leaves cost shows whether a churned leaf makes the pull read
  anything but itself again;
- credits per complete snapshot: all credits spent (incomplete pulls' included, and the rerun each
  incomplete one needs, once the churn has passed, itself a whole pull today) / complete snapshots.

    python bench/partition_churn.py [trials] [rates...]     # default 8 trials at 0.2 0.5
"""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.constants import DEFAULT_SEARCH_TYPE, STATUS_COMPLETE
from serpstat_refdomains.emulator import Fault, SerpstatEmulator
from serpstat_refdomains.paging import SnapshotFetcher
from serpstat_refdomains.spec import SnapshotSpec
from serpstat_refdomains.targets import Target

DAY = dt.date(2026, 3, 2)
TOKEN = "bench-token"
ROWS, PAGE, CAP = 15_000, 100, 6_000
PREFIX = "c"  # the churned leaf
KINDS = ("insert_rows", "delete_rows", "swap_rows")


def _leaf(entry) -> str | None:
    """The prefix a request was filtered on, if any."""
    for group in entry.complex_filter or []:
        for cond in group:
            if cond.get("field") == "domain_from":
                return cond["value"][0] + (" (exact)" if cond.get("compareType") == "eq" else "")
    return None


def _churn_leaf(emu: SerpstatEmulator, rng: random.Random, rate: list[float]) -> None:
    """Wrap the emulator's answer: a request for the churned leaf changes that leaf first."""
    api = emu.api
    answer = api._get_ref_domains

    def churned(params: dict, fired: list, entry) -> dict:
        groups = params.get("complexFilter") or []
        mine = any(c.get("field") == "domain_from" and c.get("compareType") == "startsWith"
                   and c.get("value") == [PREFIX] for g in groups for c in g)
        if mine and rng.random() < rate[0]:
            fired = [*fired, Fault(rng.choice(KINDS), where=rng.choice(["before", "after"]),
                                   pick=rng.random() * 0.999, count=1)]
        return answer(params, fired, entry)

    api._get_ref_domains = churned  # type: ignore[method-assign]


def pull(emu: SerpstatEmulator, client: SerpstatClient, pool: ThreadPoolExecutor, target: str) -> dict:
    since = len(emu.log)
    spec = SnapshotSpec(Target(target, DEFAULT_SEARCH_TYPE), "full", DAY, None, "", page_size=PAGE)
    fetcher = SnapshotFetcher(client, spec, depth_cap=CAP, executor=pool)
    rows = sum(table.num_rows for table in fetcher.tables())
    entries = [e for e in emu.log[since:] if e.method.endswith("getRefDomains")]
    leaf = [e for e in entries if _leaf(e) == PREFIX]
    others = [e for e in entries if _leaf(e) != PREFIX]
    return {"status": fetcher.stats.status, "rows": rows, "partitions": fetcher.stats.partitions,
            "credits": sum(e.charge for e in entries), "requests": len(entries),
            "leaf_credits": sum(e.charge for e in leaf), "leaf_requests": len(leaf),
            "other_credits": sum(e.charge for e in others), "other_requests": len(others)}


def run(trials: int = 8, rates: tuple[float, ...] = (0.2, 0.5), seed: int = 1) -> dict:
    rng = random.Random(seed)
    rate = [0.0]
    results: dict = {"rows": ROWS, "page": PAGE, "depth_cap": CAP, "prefix": PREFIX, "trials": trials, "rates": {}}
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=seed, balance=10**9, depth_cap=CAP) as emu, \
            SerpstatClient(TOKEN, api_url=emu.url, requests_per_second=None, timeout=10, backoff_initial=0.01,
                           backoff_max=0.05) as client, ThreadPoolExecutor(4) as pool:
        _churn_leaf(emu, rng, rate)
        for r in rates:
            rate[0] = r
            found: list[dict] = []
            for number in range(trials):
                target = f"churn{r}-{number}.com"
                emu.set_profile(target, ROWS)
                rate[0] = 0.0
                calm = pull(emu, client, pool, target)  # the same target without churn: what each leaf costs
                rate[0] = r
                first = pull(emu, client, pool, target)
                first["calm_credits"], first["calm_requests"] = calm["credits"], calm["requests"]
                first["calm_leaf_credits"] = calm["leaf_credits"]
                first["other_extra_credits"] = first["other_credits"] - calm["other_credits"]
                first["other_extra_requests"] = first["other_requests"] - calm["other_requests"]
                if first["status"] != STATUS_COMPLETE:  # the rerun, once the churn has passed: today, the whole result
                    rate[0] = 0.0
                    first["rerun"] = pull(emu, client, pool, target)
                found.append(first)
            complete = [f for f in found if f["status"] == STATUS_COMPLETE]
            spent = sum(f["credits"] + f.get("rerun", {}).get("credits", 0) for f in found)
            done = len(complete) + sum(1 for f in found if f.get("rerun", {}).get("status") == STATUS_COMPLETE)
            results["rates"][r] = {
                "incomplete": len(found) - len(complete),
                "reruns_incomplete": sum(1 for f in found if f.get("rerun", {}).get("status", STATUS_COMPLETE)
                                         != STATUS_COMPLETE),
                "credits_per_complete": spent / max(done, 1),
                "mean_credits": sum(f["credits"] for f in found) / trials,
                "mean_requests": sum(f["requests"] for f in found) / trials,
                "mean_leaf_credits": sum(f["leaf_credits"] for f in found) / trials,
                "mean_leaf_requests": sum(f["leaf_requests"] for f in found) / trials,
                "mean_calm_credits": sum(f["calm_credits"] for f in found) / trials,
                "mean_calm_requests": sum(f["calm_requests"] for f in found) / trials,
                "mean_calm_leaf_credits": sum(f["calm_leaf_credits"] for f in found) / trials,
                # what the other leaves cost beyond a churn-free pull of the same target: the
                # count of the whole, and when it no longer adds up, a 1-credit count of every leaf
                "other_extra_credits": sorted(f["other_extra_credits"] for f in found),
                "other_extra_requests": sorted(f["other_extra_requests"] for f in found),
                "rerun_credits": sorted({f["rerun"]["credits"] for f in found if "rerun" in f}),
                "incomplete_pull_leaf_credits": sorted({f["leaf_credits"] for f in found if "rerun" in f}),
            }
    return results


if __name__ == "__main__":
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    rates = tuple(float(a) for a in sys.argv[2:]) or (0.2, 0.5)
    print(json.dumps(run(trials, rates), indent=2))
