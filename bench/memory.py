"""Peak RSS of `refdomains run` at 100,000 and 1,000,000 rows (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json

from common import TOKEN, measure, pipeline_env, refdomains, workdir

from serpstat_refdomains.emulator import SerpstatEmulator

DAY = dt.date(2026, 3, 2)
PER_TARGET = 50_000


def peak(targets: int) -> tuple[float, float]:
    domains = [f"mem{targets}-{i}.com" for i in range(targets)]
    with SerpstatEmulator(token=TOKEN, today=DAY, balance=10**9) as emu:
        for domain in domains:
            emu.set_profile(domain, PER_TARGET)
        folder = workdir(f"mem{targets}")
        measured = measure(refdomains("run", "--kind", "full", "--no-models", on=DAY),
                           env=pipeline_env(folder, emu.url, domains), cwd=folder)
    return measured.peak_rss_mb, measured.seconds


def run() -> dict:
    small, small_s = peak(2)
    large, large_s = peak(20)
    return {"rows_small": 2 * PER_TARGET, "peak_mb_small": small, "seconds_small": small_s,
            "rows_large": 20 * PER_TARGET, "peak_mb_large": large, "seconds_large": large_s,
            "ratio": large / small}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
