"""What the benchmarks read off the machine, and how they wait out other processes' load.

Shared by echo.py, files.py and chat.py: CPU time from /proc, CPU pinning,
which code was measured, and one bounded policy for a machine that may be
shared: wait for quiet before a measurement, repeat a disturbed one, keep the
quietest attempt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "CLOCK_TICKS",
    "BenchmarkError",
    "NoiseBudget",
    "load_average",
    "machine_busy_seconds",
    "pinned",
    "process_cpu_seconds",
    "quietest",
    "source_digest",
]

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_SAMPLE = 0.25  # seconds per look at the machine's load before a measurement
T = TypeVar("T")


class BenchmarkError(Exception):
    """The benchmark could not run (a server that would not start, a tool missing, ...)."""


def pinned(command: Sequence[str], cpus: int | str) -> list[str]:
    """``command`` run by taskset on ``cpus`` only (taskset execs: the PID stays the same)."""
    if shutil.which("taskset") is None:
        raise BenchmarkError("taskset is required to pin processes to CPUs")
    return ["taskset", "-c", str(cpus), *command]


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of every thread of process ``pid``, in seconds (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        text = stat.read()
    fields = text[text.rfind(b")") + 2 :].split()  # after the command name
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent on anything but idling, in seconds (from /proc/stat)."""
    with open("/proc/stat", "rb") as stat:
        fields = [int(value) for value in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def source_digest() -> str:
    """A short digest of src/socketeer/**/*.py, to tell which code was measured."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "socketeer").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return f"sha256 {digest.hexdigest()[:12]} of src/socketeer/**/*.py"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or ``?``."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


class NoiseBudget:
    """Extra seconds the run may spend waiting out, or repeating, other processes' load.

    The machine may be shared: other processes' CPU use during a measurement
    shows up in whichever contender happened to be running.  Before each
    measurement :meth:`settle` waits (up to ``settle_max`` seconds) until the
    machine is about idle, and a measurement during which others were busy is
    repeated (see :func:`quietest`), all within one budget so the run stays
    bounded.
    """

    def __init__(self, seconds: float, settle_max: float) -> None:
        self.left = seconds
        self.settle_max = settle_max
        self.waited = 0.0
        self.repeated = 0

    def settle(self, threshold: float) -> None:
        """Wait (bounded by ``settle_max`` and the budget) until the machine is about idle."""
        start = time.monotonic()
        deadline = start + max(0.0, min(self.settle_max, self.left))
        while True:
            before, t0 = machine_busy_seconds(), time.monotonic()
            time.sleep(SETTLE_SAMPLE)
            busy = (machine_busy_seconds() - before) / (time.monotonic() - t0)
            if busy <= threshold or time.monotonic() >= deadline:
                break
        spent = time.monotonic() - start
        self.left -= spent
        self.waited += spent

    def spend(self, seconds: float) -> None:
        """A measurement was repeated, taking ``seconds``."""
        self.left -= seconds
        self.repeated += 1


def quietest(
    measure: Callable[[], T],
    other_cpu: Callable[[T], float],
    budget: NoiseBudget,
    threshold: float,
    retries: int,
    show: Callable[[T, bool], None],
) -> tuple[T, int]:
    """``measure`` once, or again while other processes used more than ``threshold`` CPUs.

    Repeats at most ``retries`` times and while the budget allows; returns the
    attempt during which other processes used the least CPU, and how many
    attempts there were.  ``show`` reports each attempt (and whether it was noisy).
    """
    best: T | None = None
    attempt = 0
    while True:
        attempt += 1
        budget.settle(threshold)
        started = time.monotonic()
        result = measure()
        took = time.monotonic() - started
        noisy = other_cpu(result) > threshold
        show(result, noisy)
        if best is None or other_cpu(result) < other_cpu(best):
            best = result
        if attempt > 1:
            budget.spend(took)
        if not noisy or attempt > retries or budget.left < took:
            return best, attempt
