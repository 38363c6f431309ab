"""What the machine's cores did over a phase, beside the service's tails: how busy they were, how
much the hypervisor took (steal), and how long some task stood ready with no core to run on
(Linux pressure stall information, ``/proc/pressure/cpu``).

Why: at the same paced rate the same code's submit p99 ranged from 13.5 to 60 ms between runs
(README, "Scale", fourteenth pass), and what moved with it was the machine, not the service. These
figures let each paced run say how much of the two cores was left over while it ran. Everything
the bench runs shares them (the service's processes, PostgreSQL, the load client), so a share near
100 % busy, or a task waiting for a core much of the time, is a run whose tail is the queue for a
core. Either file may be missing (another kernel, a container without PSI): its figures are None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROC_STAT = Path("/proc/stat")
CPU_PRESSURE = Path("/proc/pressure/cpu")


def cpu_times(stat_text: str) -> dict[str, int] | None:
    """The aggregate ``cpu`` line of ``/proc/stat``, by field (clock ticks since boot)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    for line in stat_text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return dict(zip(names, map(int, fields[1:1 + len(names)]), strict=False))
    return None


def waiting_microseconds(pressure_text: str) -> int | None:
    """``some total=``: microseconds in which at least one task was ready to run and had no core."""
    for line in pressure_text.splitlines():
        if line.startswith("some "):
            for field in line.split()[1:]:
                key, _, value = field.partition("=")
                if key == "total":
                    return int(value)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@dataclass(frozen=True)
class CpuReading:
    at: float
    times: dict[str, int] | None
    waiting_us: int | None

    @classmethod
    def now(cls) -> CpuReading:
        return cls(time.monotonic(), cpu_times(_read(PROC_STAT)), waiting_microseconds(_read(CPU_PRESSURE)))

    def since(self, before: CpuReading) -> dict[str, Any]:
        """Shares of the time between the two readings, in percent: the cores busy (what the
        hypervisor stole included, as the guest could not idle then) and stolen, of all the cores'
        time; some task waiting for a core, of the wall time."""
        found: dict[str, Any] = {"busy_pct": None, "steal_pct": None, "waiting_pct": None}
        if self.times is not None and before.times is not None:
            delta = {k: self.times.get(k, 0) - before.times.get(k, 0) for k in self.times}
            total = sum(delta.values())
            if total > 0:
                found["busy_pct"] = 100 * (total - delta.get("idle", 0) - delta.get("iowait", 0)) / total
                found["steal_pct"] = 100 * delta.get("steal", 0) / total
        wall_us = (self.at - before.at) * 1_000_000
        if self.waiting_us is not None and before.waiting_us is not None and wall_us > 0:
            found["waiting_pct"] = 100 * (self.waiting_us - before.waiting_us) / wall_us
        return found


def cpu_figures(found: dict[str, Any] | None) -> str:
    """``busy · waiting · stolen`` in percent, '?' for what this machine does not tell."""
    if not found:
        return "?"
    return " · ".join("?" if found.get(key) is None else f"{found[key]:.{digits}f}"
                      for key, digits in (("busy_pct", 0), ("waiting_pct", 0), ("steal_pct", 1)))
