"""The tree benchmark runs (at a small size) and its proofs verify."""

from __future__ import annotations

from bench.tree import measure


def test_measure_small(database_url):
    results = measure(database_url, leaves=3000, real_events=1000, samples=60, checkpoints=3)
    assert results["tree"]["leaves"] == 3000 and results["tree"]["synthetic_leaves"] == 3000 - results["tree"]["real_leaves"]
    assert results["tree"]["real_leaves"] == 1000 + 2 * 3 * 50  # the checkpoints' events
    checkpoint = results["checkpoint"]
    assert checkpoint["cosignatures_stored"] == 3 and checkpoint["signed_and_cosigned"]["p50_ms"] > 0
    assert results["append"]["stream_map_rows_per_event"] > 1
    assert results["append"]["us_per_event_batch_10000"] > 0
    assert results["proofs"]["verified_samples"] == 3
    assert results["proofs"]["inclusion"]["p99_ms"] > 0
