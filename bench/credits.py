"""Credits charged against rows returned, ours and the rest_api peer's, for 20 targets (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json

from common import PYTHON, ROOT, TOKEN, measure, pipeline_env, refdomains, workdir

from serpstat_refdomains.emulator import SerpstatEmulator

DAY = dt.date(2026, 3, 2)
SIZES = [0, 1, 999, 1000, 1001, 0, 2, 1999, 2000, 2001, 2500, 3000, 3001, 4999, 5000, 5001, 10, 100, 7777, 12345]


def run() -> dict:
    domains = {f"credit{i}.com": size for i, size in enumerate(SIZES)}
    rows = sum(SIZES)
    empty = SIZES.count(0)
    with SerpstatEmulator(token=TOKEN, today=DAY, balance=10**9) as emu:
        for domain, size in domains.items():
            emu.set_profile(domain, size)
        folder = workdir("credits")
        measure(refdomains("run", "--kind", "full", "--no-models", on=DAY),
                env=pipeline_env(folder, emu.url, list(domains)), cwd=folder)
        ours = emu.api.credits_charged
        ours_requests = sum(1 for e in emu.log if e.method.endswith("getRefDomains"))
        emu.api.clear_log()
        peer_dir = workdir("credits-peer")
        measure([PYTHON, str(ROOT / "bench" / "peer_rest_api.py"), emu.url, TOKEN,
                 str(peer_dir / "rest_api_peer.duckdb"), *domains],
                cwd=peer_dir, env=pipeline_env(peer_dir, emu.url, []))
        peer = emu.api.credits_charged
        peer_requests = sum(1 for e in emu.log if e.method.endswith("getRefDomains"))
    return {"targets": len(SIZES), "rows": rows, "empty_targets": empty, "minimum": rows + empty,
            "ours_credits": ours, "ours_requests": ours_requests, "peer_credits": peer, "peer_requests": peer_requests,
            "ours_waste": ours - (rows + empty), "peer_waste": peer - (rows + empty)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
