"""What the benchmarks read off the machine, and how they wait out other processes' load.

Shared by echo.py, files.py and chat.py (and the helpers they run): CPU time
from /proc and getrusage, which CPUs servers and clients are pinned to, which
code was measured, and one bounded policy for a machine that may be shared:
wait for quiet before a measurement, repeat a disturbed one, keep the
quietest attempt.  The policy's knobs are the same options in every runner
(:func:`add_noise_options`) and its method is described in the same words
(:func:`noise_method`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "CLIENT_CPU",
    "CLOCK_TICKS",
    "SERVER_CPU",
    "BenchmarkError",
    "NoiseBudget",
    "add_noise_options",
    "busy_fraction",
    "cpu_counters",
    "cpu_model",
    "load_average",
    "machine_busy_seconds",
    "machine_facts",
    "noise_method",
    "own_cpu_seconds",
    "pin_self",
    "pinned",
    "process_cpu_seconds",
    "process_cpu_times",
    "quietest",
    "source_digest",
    "usable_cpus_problem",
    "user_system_seconds",
]

ROOT = Path(__file__).resolve().parent.parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_SAMPLE = 0.25  # seconds per look at the machine's load before a measurement
SERVER_CPU = 0  # servers run pinned here
CLIENT_CPU = 1  # clients and load generators (and the runners themselves) here
# The noise policy's defaults, the same in every runner.
NOISY = 0.15  # other processes' CPU use (in CPUs) above which a measurement is repeated
RETRIES = 2  # repeats of a noisy measurement
SETTLE_MAX = 10.0  # longest wait for a quiet machine before one measurement
T = TypeVar("T")


class BenchmarkError(Exception):
    """The benchmark could not run (a server that would not start, a tool missing, ...)."""


def pinned(command: Sequence[str], cpus: int | str) -> list[str]:
    """``command`` run by taskset on ``cpus`` only (taskset execs: the PID stays the same)."""
    if shutil.which("taskset") is None:
        raise BenchmarkError("taskset is required to pin processes to CPUs")
    return ["taskset", "-c", str(cpus), *command]


def usable_cpus_problem() -> str | None:
    """Why servers and clients cannot be pinned apart here, if they cannot."""
    if not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        return f"CPUs {SERVER_CPU} and {CLIENT_CPU} must both be usable"
    return None


def pin_self() -> None:
    """Keep the (mostly idle, or load-generating) runner on the clients' CPU."""
    os.sched_setaffinity(0, {CLIENT_CPU})


def process_cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of process ``pid``, in seconds (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        text = stat.read()
    # Fields after the command name (which may hold spaces and parentheses):
    # state is field 3, utime 14 and stime 15.
    fields = text[text.rfind(b")") + 2 :].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def process_cpu_seconds(pid: int) -> float:
    """utime+stime of every thread of process ``pid``, in seconds."""
    return sum(process_cpu_times(pid))


def own_cpu_seconds() -> float:
    """utime+stime of this process (all its threads), in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_counters() -> dict[str, list[int]]:
    """The ``cpu`` lines of /proc/stat (the machine's and each CPU's), in clock ticks."""
    with open("/proc/stat") as stat:
        lines = [line.split() for line in stat if line.startswith("cpu")]
    return {fields[0]: [int(value) for value in fields[1:]] for fields in lines}


def busy_fraction(before: list[int], after: list[int]) -> float:
    """Share of the interval a CPU was not idle (idle and iowait are fields 4 and 5)."""
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta[:8])
    return (total - delta[3] - delta[4]) / total if total else 0.0


def user_system_seconds(before: list[int], after: list[int]) -> float:
    """user+nice+system seconds between two ``cpu`` lines.

    Interrupt and softirq time are left out: loopback TCP is processed there
    on behalf of whichever process sends, and no process's stime includes it.
    """
    return sum(after[i] - before[i] for i in range(3)) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent on anything but idling, in seconds (from /proc/stat).

    The fields are user nice system idle iowait irq softirq steal guest guest_nice;
    guest time is already counted in user, and steal is time another guest had.
    """
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


def cpu_model() -> tuple[str, str]:
    """The CPU's model name and its flags line, from /proc/cpuinfo (``?`` and ``""`` if unknown)."""
    model, flags = "?", ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    return model, flags


def machine_facts() -> dict[str, str]:
    """What every report states about the machine and the code measured."""
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu_model()[0],
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "socketeer source": source_digest(),
    }


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

    def __init__(self, seconds: float, settle_max: float = SETTLE_MAX) -> None:
        self.left = seconds
        self.settle_max = settle_max
        self.waited = 0.0
        self.repeated = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> NoiseBudget:
        """The budget the options of :func:`add_noise_options` ask for."""
        return cls(args.noise_budget, args.settle_max)

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


def add_noise_options(parser: argparse.ArgumentParser, budget: float) -> None:
    """``--noisy``, ``--retries``, ``--settle-max`` and ``--noise-budget`` (default ``budget``)."""
    parser.add_argument(
        "--noisy",
        type=float,
        default=NOISY,
        help="other processes' CPU use (in CPUs) above which a measurement is repeated",
    )
    parser.add_argument(
        "--retries", type=int, default=RETRIES, help="repeats of a noisy measurement"
    )
    parser.add_argument(
        "--settle-max",
        type=float,
        default=SETTLE_MAX,
        help="longest wait (seconds) for a quiet machine before one measurement",
    )
    parser.add_argument(
        "--noise-budget",
        type=float,
        default=budget,
        help="seconds the whole run may spend waiting for quiet or repeating measurements",
    )


def noise_method(args: argparse.Namespace, budget: NoiseBudget, kept_other: Sequence[float]) -> str:
    """How the run dealt with a shared machine, and what it came to, for a report.

    ``kept_other`` is the other processes' CPU use (in CPUs) of each kept measurement.
    """
    noisy = sum(1 for other in kept_other if other > args.noisy)
    return (
        "The machine may be shared. Before each measurement the runner waits (at most "
        f"{args.settle_max:g} s) for the CPUs to be idle, and a measurement during which other "
        f"processes used more than {args.noisy:.0%} of a CPU is repeated up to "
        f"{args.retries} time(s), keeping the quietest attempt, within a budget of "
        f"{args.noise_budget:g} s. This run waited {budget.waited:.0f} s, repeated "
        f"{budget.repeated} measurement(s), and {noisy} of {len(kept_other)} kept measurements "
        f"still had other processes above {args.noisy:.0%} of a CPU."
    )
