"""Shared by the benchmarks: measured child processes, the run's environment, a results table (bench/README.md)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
PYTHON = sys.executable


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str
    cpu_seconds: float = 0.0  # user + system CPU of the measured process and its children


def measure(argv: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None) -> Measured:
    """Run argv in a child that reports its own wall time and peak RSS (the emulator is not in it)."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "elapsed = time.perf_counter() - t\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "peak, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime\n"
        "print(json.dumps({'rc': done.returncode, 's': elapsed, 'rss': peak, 'cpu': cpu,\n"
        "                  'out': done.stdout, 'err': done.stderr}))\n"
    )
    done = subprocess.run([PYTHON, "-c", probe, *argv], capture_output=True, text=True, env=env, cwd=cwd)
    result = json.loads(done.stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{argv[:4]} failed ({result['rc']}): {result['err'][-2000:]}")
    return Measured(result["s"], result["rss"], result["out"], result["cpu"])


def pipeline_env(workdir: Path, url: str, domains: list[str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "SOURCES__SERPSTAT__API_TOKEN": TOKEN,
        "SOURCES__SERPSTAT__API_URL": url,
        "SOURCES__SERPSTAT__DOMAINS": json.dumps(domains),
        "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "100000",
        **extra,
    })
    return env


def refdomains(*args: str, on: dt.date | None = None) -> list[str]:
    """The `refdomains` command; with `on`, in a process whose clock reads midday UTC of that day
    (time-machine): a run files its snapshot under today's date only, and a benchmark replays
    the days an emulator serves."""
    if on is None:
        return [PYTHON, "-m", "serpstat_refdomains.cli", *args]
    start = dt.datetime.combine(on, dt.time(12), dt.UTC).isoformat()
    return [PYTHON, "-c", "import sys, datetime, time_machine; "
            f"time_machine.travel(datetime.datetime.fromisoformat({start!r}), tick=True).start(); "
            "from serpstat_refdomains.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def workdir(name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"refdomains-bench-{name}-"))


def machine() -> str:
    cpus = os.cpu_count()
    return f"{platform.processor() or platform.machine()}, {cpus} cores, Python {platform.python_version()}"


def table(rows: list[tuple], header: tuple) -> str:
    cells = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r: tuple) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def now() -> float:
    return time.perf_counter()


def rusage_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
