"""The bench's reading of the machine's cores (bench/machine.py): /proc/stat and /proc/pressure/cpu
parsed, and the shares of a phase computed from two readings."""

from __future__ import annotations

import pytest

from bench.machine import CpuReading, cpu_figures, cpu_times, waiting_microseconds

STAT = """cpu  1000 10 200 5000 50 0 40 30 0 0
cpu0 500 5 100 2500 25 0 20 15 0 0
intr 12345
"""
PRESSURE = """some avg10=1.50 avg60=7.44 avg300=29.19 total=1634614503
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
"""


def test_the_aggregate_cpu_line_is_read_by_field():
    assert cpu_times(STAT) == {"user": 1000, "nice": 10, "system": 200, "idle": 5000, "iowait": 50, "irq": 0,
                               "softirq": 40, "steal": 30}
    assert cpu_times("intr 1\n") is None


def test_the_time_some_task_waited_for_a_core():
    assert waiting_microseconds(PRESSURE) == 1_634_614_503
    assert waiting_microseconds("") is None


def test_shares_of_a_phase():
    before = CpuReading(at=10.0, times={"user": 100, "idle": 300, "iowait": 0, "steal": 0}, waiting_us=1_000_000)
    # Two seconds on two cores at 100 ticks a second: 400 ticks, 300 of them busy (10 stolen).
    after = CpuReading(at=12.0, times={"user": 390, "idle": 400, "iowait": 0, "steal": 10}, waiting_us=1_500_000)
    found = after.since(before)
    assert found["busy_pct"] == pytest.approx(75.0)
    assert found["steal_pct"] == pytest.approx(2.5)
    assert found["waiting_pct"] == pytest.approx(25.0)  # half a second of the two
    assert cpu_figures(found) == "75 · 25 · 2.5"


def test_what_the_machine_does_not_tell_is_a_question_mark():
    before = CpuReading(at=0.0, times=None, waiting_us=None)
    after = CpuReading(at=1.0, times=None, waiting_us=None)
    assert after.since(before) == {"busy_pct": None, "steal_pct": None, "waiting_pct": None}
    assert cpu_figures(after.since(before)) == "? · ? · ?"
    assert cpu_figures(None) == "?"
