"""Churn: how often a snapshot fetched while the index changes under it is wrong (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import random
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.emulator import SerpstatEmulator
from tests.churn_sim import CHURN_KINDS, Churn, trial

DAY = dt.date(2026, 3, 2)
TOKEN = "bench-token"


def run(trials: int = 2000, seed: int = 1) -> dict:
    rng = random.Random(seed)
    found: Counter = Counter()
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=seed, balance=10**9) as emu, \
            SerpstatClient(TOKEN, api_url=emu.url, requests_per_second=None, timeout=5, backoff_initial=0.01,
                           backoff_max=0.05) as client, ThreadPoolExecutor(4) as pool:
        for number in range(trials):
            churn = []
            for _ in range(rng.randrange(7)):
                page = rng.randint(1, 10)
                churn.append(Churn(rng.choice(CHURN_KINDS), page, rng.choice(["before", "after"]),
                                   rng.random() * 0.999, rng.randint(1, 3)))
                if rng.random() < 0.2:  # a second change at the same request
                    churn.append(Churn(rng.choice(CHURN_KINDS), page, rng.choice(["before", "after"]),
                                       rng.random() * 0.999, 1))
            verdict = trial(emu, client, f"churn{number}.com", rng.randint(0, 300),
                            rng.choice([1, 3, 10, 25, 50, 100, 1000]), rng.choice([None, 40, 90]), churn,
                            pool if rng.random() < 0.5 else None)
            found["trials"] += 1
            found["with churn"] += bool(verdict.changes)
            found[verdict.status] += 1
            if verdict.status == "complete":
                found["complete with churn"] += bool(verdict.changes)
                found["missed a donor present throughout"] += bool(verdict.missed)
                found["... of which every missed donor changed rank"] += verdict.missed_moved
                found["not one instant"] += not verdict.an_instant
            found["duplicates"] += verdict.duplicates
        emu.faults.clear()
        guard = trial(emu, client, "guard.com", 55_000, 1000, None, [], pool)
    return {**found, "guard_rows": guard.rows, "guard_extra_credits": guard.credits - guard.rows}


if __name__ == "__main__":
    result = run(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    for key, value in result.items():
        print(f"{key}: {value}")
    complete = max(result.get("complete", 0), 1)
    print(f"false-LOST risk: {result.get('missed a donor present throughout', 0) / complete:.3%} of complete "
          f"snapshots; not one instant: {result.get('not one instant', 0) / complete:.3%}; "
          f"guard: {result['guard_extra_credits'] / result['guard_rows']:.3%} extra credits")
