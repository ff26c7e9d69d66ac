"""Throughput into DuckDB: `refdomains run`, a dlt rest_api peer, a bare fetch loop (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json
import sys

import requests
from common import PYTHON, ROOT, TOKEN, measure, pipeline_env, refdomains, workdir

from serpstat_refdomains.emulator import SerpstatEmulator

DAY = dt.date(2026, 3, 2)
PER_TARGET = 55_000  # each target under the 60k depth cap: no partitions, every row one request's share
SCALES = (6, 20)  # 330,000 rows and 1,100,000 rows (where fixed costs no longer count)
# issue 26's check: 300,000 rows in 6 targets (`python bench/throughput.py 6 3 50000`)


def emulator_pages_per_second(url: str, domain: str, pages: int = 55) -> float:
    session = requests.Session()

    def body(p: int) -> dict:
        return {"id": p, "method": "SerpstatBacklinksProcedure.getRefDomains",
                "params": {"query": domain, "searchType": "domain_with_subdomains", "page": p,
                           "size": 1000, "sort": "domain_from", "order": "asc"}}

    for p in range(1, pages + 1):  # warm the emulator's page cache, as the measured runs do
        session.post(url, params={"token": TOKEN}, json=body(p))
    import time
    start = time.perf_counter()
    for p in range(1, pages + 1):
        _ = session.post(url, params={"token": TOKEN}, json=body(p)).content  # the whole body is read, as a run does
    return pages / (time.perf_counter() - start)


def run(targets: int = SCALES[0], repeat: int = 1, per_target: int = PER_TARGET) -> dict:
    sizes = {f"target{i}.com": per_target for i in range(targets)}
    rows = sum(sizes.values())
    with SerpstatEmulator(token=TOKEN, today=DAY, balance=10**9) as emu:
        for domain, size in sizes.items():
            emu.set_profile(domain, size)
        serve = emulator_pages_per_second(emu.url, next(iter(sizes)))
        for domain in sizes:  # pre-render every page once so no contender pays for generation
            emulator_pages_per_second(emu.url, domain, pages=1)

        ours, peers = [], []
        for _ in range(repeat):  # interleaved, so a busy spell of a shared machine falls on both
            folder = workdir("ours")
            env = pipeline_env(folder, emu.url, list(sizes))
            ours.append(measure(refdomains("run", "--kind", "full", "--no-models", on=DAY), env=env,
                                cwd=folder))
            emu.api.clear_log()
            peer_dir = workdir("peer")
            peers.append(measure([PYTHON, str(ROOT / "bench" / "peer_rest_api.py"), emu.url, TOKEN,
                                  str(peer_dir / "rest_api_peer.duckdb"), *sizes], cwd=peer_dir,
                                 env=pipeline_env(peer_dir, emu.url, [])))
            peer_credits = emu.api.credits_charged
        peer = min(peers, key=lambda m: m.seconds)
        peer_rows = int(peer.stdout.strip().splitlines()[-1])
        floor = measure([PYTHON, str(ROOT / "bench" / "floor_loop.py"), emu.url, TOKEN,
                         *[f"{d}={n}" for d, n in sizes.items()]])
    best_run = min(ours, key=lambda m: m.seconds)
    best = best_run.seconds
    return {
        "rows": rows,
        "ours_s": best, "ours_rows_s": rows / best, "ours_cpu_s": best_run.cpu_seconds,
        "ours_all_s": [round(m.seconds, 2) for m in ours], "peer_all_s": [round(m.seconds, 2) for m in peers],
        "peer_cpu_s": peer.cpu_seconds,
        "vs_peer_cpu": peer.cpu_seconds / best_run.cpu_seconds * (rows / peer_rows) if peer_rows else float("inf"),
        "peer_s": peer.seconds, "peer_rows_s": peer_rows / peer.seconds, "peer_rows": peer_rows,
        "peer_credits": peer_credits,
        "floor_s": floor.seconds, "floor_rows_s": rows / floor.seconds,
        "vs_peer": peer.seconds / best * (rows / peer_rows) if peer_rows else float("inf"),
        "vs_floor": floor.seconds / best,
        "emulator_rows_s": serve * 1000,
    }


if __name__ == "__main__":
    result = run(targets=int(sys.argv[1]) if len(sys.argv) > 1 else SCALES[0],
                 repeat=int(sys.argv[2]) if len(sys.argv) > 2 else 1,
                 per_target=int(sys.argv[3]) if len(sys.argv) > 3 else PER_TARGET)
    print(json.dumps(result, indent=2))
