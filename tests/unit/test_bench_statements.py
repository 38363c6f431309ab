"""The growth benchmark's statement comparison: statements matched by text across the phases,
their time per claim summed over each phase's runs, the ones that grew most first."""

from __future__ import annotations

import pytest

from bench.statements import compare


def stmt(query: str, ms: float, calls: int, blocks_read: int = 0) -> dict:
    return {"query": query, "calls": calls, "ms": ms, "blocks_hit": 0, "blocks_read": blocks_read, "full_page_images": 0}


def test_statements_are_matched_by_text_and_ranked_by_growth_per_claim():
    empty = [{"claims": 100, "statements": [stmt("SELECT a", 10.0, 100), stmt("INSERT b", 20.0, 100)]},
             {"claims": 300, "statements": [stmt("SELECT a", 30.0, 300), stmt("INSERT b", 60.0, 300)]}]
    big = [{"claims": 200, "statements": [stmt("SELECT a", 40.0, 200, blocks_read=400), stmt("INSERT b", 40.0, 200),
                                          stmt("SELECT c", 10.0, 2, blocks_read=100)]}]
    found = compare(empty, big, top=2)
    assert found["ms_per_claim"] == {"empty": pytest.approx(0.3), "big": pytest.approx(0.45)}
    first, second = found["grown_most"]
    # SELECT a: 0.1 -> 0.2 ms a claim; SELECT c: 0 -> 0.05; INSERT b: 0.2 -> 0.2
    assert first["query"] == "SELECT a"
    assert first["empty"]["ms_per_claim"] == pytest.approx(0.1) and first["big"]["ms_per_claim"] == pytest.approx(0.2)
    assert first["big"]["blocks_read_per_call"] == pytest.approx(2.0)
    assert second["query"] == "SELECT c"
    assert second["empty"] == {"ms_per_claim": 0.0, "calls_per_claim": 0.0, "blocks_read_per_call": 0.0}
    assert second["big"]["calls_per_claim"] == pytest.approx(0.01)


def relation(read: int, hit: int = 0, updates: int = 0, hot: int = 0) -> dict:
    return {"blocks_read": read, "blocks_hit": hit, "updates": updates, "hot_updates": hot}


def test_relations_are_ranked_by_blocks_read_per_claim_with_their_tables_updates():
    empty = [{"claims": 100, "statements": [], "relations": {"t": relation(10, 500, 100, 50), "t_pkey": relation(0, 300)}}]
    big = [{"claims": 100, "statements": [], "relations": {"t": relation(50, 460, 100, 10), "t_pkey": relation(400, 100),
                                                           "u_idx": relation(20)}},
           {"claims": 100, "statements": [], "relations": {"t_pkey": relation(200, 0)}}]
    found = compare(empty, big, top=2)["relations_read_most"]
    # t_pkey: 0 -> 3 blocks a claim; t: 0.1 -> 0.25; u_idx: 0 -> 0.1 (left off at top=2)
    assert [r["relation"] for r in found] == ["t_pkey", "t"]
    pkey, table = found
    assert pkey["big"]["blocks_read_per_claim"] == pytest.approx(3.0)
    assert pkey["big"]["blocks_hit_per_claim"] == pytest.approx(0.5)
    assert pkey["big"]["updates_per_claim"] == 0.0  # an index has no updates of its own
    assert table["empty"]["blocks_read_per_claim"] == pytest.approx(0.1)
    assert table["empty"]["hot_share"] == pytest.approx(0.5)
    assert table["big"]["hot_share"] == pytest.approx(0.1)  # 10 of 100 (the second run updated none)
