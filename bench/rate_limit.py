"""Rate-limit use: 10 requests/s with 200 ms of latency (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json

from common import TOKEN, measure, pipeline_env, refdomains, workdir

from serpstat_refdomains.emulator import SerpstatEmulator

DAY = dt.date(2026, 3, 2)
LIMIT = 10.0
TARGETS = {f"paced{i}.com": 2000 for i in range(5)}  # 20 pages of 100 rows each


def run() -> dict:
    with SerpstatEmulator(token=TOKEN, today=DAY, latency=0.2, rate_limit_rps=LIMIT) as emu:
        for domain, size in TARGETS.items():
            emu.set_profile(domain, size)
            emu.graph.truth(domain, DAY)  # generate the graph before the clock starts
        folder = workdir("rate")
        env = pipeline_env(folder, emu.url, list(TARGETS), SOURCES__SERPSTAT__REQUESTS_PER_SECOND=str(LIMIT),
                           SOURCES__SERPSTAT__PAGE_SIZE="100")
        measured = measure(refdomains("run", "--kind", "full", "--no-models", on=DAY),
                           env=env, cwd=folder)
        log = [e for e in emu.log if e.method.endswith("getRefDomains")]
        stats = [e for e in emu.log if e.method.endswith("getStats")]
    stamps = sorted(e.at for e in log)
    throttled = sum(1 for e in log if e.outcome == "error:429")
    # requests/s between the first and the last request arriving, inclusive of both
    span = stamps[-1] - stamps[0]
    achieved = (len(stamps) - 1) / span if span > 0 else float("inf")
    return {"requests": len(log), "throttled": throttled, "span_s": span, "achieved_rps": achieved,
            "use": achieved / LIMIT, "process_s": measured.seconds, "preflight_calls": len(stats)}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
