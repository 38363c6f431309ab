"""The benchmark harness: a deterministic mix, and rates that `make bench` can print."""

from __future__ import annotations

from bench.engine import generate_mix, measure_engine


def test_the_mix_is_the_same_every_time_and_varied():
    first, second = generate_mix(40), generate_mix(40)
    assert first == second
    assert len({len(claim.lines) for claim, _ in first}) > 3


def test_measure_engine_reports_lines_per_second():
    result = measure_engine(seconds=0.05)
    assert result["lines"] > 0 and result["claims"] > 0
    assert result["lines_per_second"] > 0
    assert set(result) == {"ruleset_version", "claims", "lines", "seconds", "claims_per_second", "lines_per_second"}
