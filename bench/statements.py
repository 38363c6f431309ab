"""Which statements grow with the history: PostgreSQL's own figures per statement
(`pg_stat_statements`) over each service run's saturated phase, compared between the empty ledger
and the history (`make bench ARGS="--growth N --statements"`).

The extension has to be loaded when the server starts (`shared_preload_libraries`): the bench's
embedded server is started once to set that and again to use it; a server named by
`CLAIMS_DATABASE_URL` must have it already. Each database the bench creates gets the extension's
views. Statistics are reset as a run's saturated phase begins and read, for that run's database
only, when its claims are drained; statements are matched across the two phases by their text
(each database gives the same statement another query id). The times are the server's wall time
per statement (waits on locks and reads included), per claim of the phase.

Beside the statements, each table's and index's blocks (`pg_statio_user_tables`,
`pg_statio_user_indexes`: heap, each index, TOAST) read from outside the buffers and found in them,
and each table's updates and how many of them were HOT (`pg_stat_user_tables`), as the difference
between the counters when the phase began and when it was read: which pages a statement's reads
are, which a statement's text cannot say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import psycopg

LIBRARY = "pg_stat_statements"
TOP = 12


def preloaded(admin_url: str) -> bool:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        libraries = conn.execute("SELECT current_setting('shared_preload_libraries')").fetchone()[0]
    return LIBRARY in [name.strip() for name in libraries.split(",")]


def preload(admin_url: str) -> None:
    """Have the server load the extension at its next start (ALTER SYSTEM, kept in its data
    directory), counting statements run inside functions too (the ledger's append is one)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_preload_libraries = '{LIBRARY}'")
        conn.execute(f"ALTER SYSTEM SET {LIBRARY}.track = 'all'")
        conn.execute(f"ALTER SYSTEM SET {LIBRARY}.max = 20000")


def install(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE EXTENSION IF NOT EXISTS {LIBRARY}")


def reset(database_url: str) -> dict[str, dict[str, int]]:
    """Reset the statements' statistics; returns the relations' counters as they stand (the
    baseline `measured` subtracts: resetting those would reset what autovacuum goes by too)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    return relation_counters(database_url)


# Heap, TOAST and each index as relations of their own, named as the table or index is (a table's
# TOAST as "<table> (toast)"); a table's heap with its updates and HOT updates.
_RELATION_COUNTERS = (
    "SELECT s.relname, s.heap_blks_read, s.heap_blks_hit, u.n_tup_upd, u.n_tup_hot_upd"
    " FROM pg_statio_user_tables s JOIN pg_stat_user_tables u USING (relid)"
    " UNION ALL SELECT relname || ' (toast)', coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0),"
    " coalesce(toast_blks_hit, 0) + coalesce(tidx_blks_hit, 0), 0, 0 FROM pg_statio_user_tables"
    " UNION ALL SELECT indexrelname, idx_blks_read, idx_blks_hit, 0, 0 FROM pg_statio_user_indexes"
)


def relation_counters(database_url: str) -> dict[str, dict[str, int]]:
    """This database's cumulative block counters per relation, and updates (HOT among them) per table."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(_RELATION_COUNTERS).fetchall()
    return {name: {"blocks_read": int(read), "blocks_hit": int(hit), "updates": int(updates), "hot_updates": int(hot)}
            for name, read, hit, updates, hot in rows}


def _since(now: dict[str, dict[str, int]], then: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The counters' growth since `then`, for the relations that moved (one made since counts whole)."""
    moved = {}
    for name, counters in now.items():
        before = then.get(name, {})
        grown = {k: v - before.get(k, 0) for k, v in counters.items()}
        if any(grown.values()):
            moved[name] = grown
    return moved


def collect(database_url: str) -> list[dict[str, Any]]:
    """This database's statements since the last reset: text (whitespace folded), calls, total
    milliseconds, shared blocks found in the buffers and read into them, full-page images."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query, calls, total_exec_time, shared_blks_hit, shared_blks_read, wal_fpi FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())").fetchall()
    return [{"query": re.sub(r"\s+", " ", query).strip(), "calls": calls, "ms": float(ms), "blocks_hit": int(hit),
             "blocks_read": int(read), "full_page_images": int(fpi)} for query, calls, ms, hit, read, fpi in rows]


def measured(database_url: str, claims: int, baseline: dict[str, dict[str, int]]) -> dict[str, Any]:
    """What a run keeps: its statements since the reset, its relations' counters since `baseline`
    (what `reset` returned), and the claims they served."""
    return {"claims": claims, "statements": collect(database_url),
            "relations": _since(relation_counters(database_url), baseline)}


def _per_claim(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Summed over runs (each as `measured` returns it), by statement text: ms and calls per
    claim, blocks read per call."""
    totals: dict[str, list[float]] = {}
    claims = 0
    for run in runs:
        claims += run["claims"]
        for s in run["statements"]:
            total = totals.setdefault(s["query"], [0.0, 0.0, 0.0])
            total[0] += s["ms"]
            total[1] += s["calls"]
            total[2] += s["blocks_read"]
    return {query: {"ms_per_claim": ms / max(claims, 1), "calls_per_claim": calls / max(claims, 1),
                    "blocks_read_per_call": read / max(calls, 1)} for query, (ms, calls, read) in totals.items()}


def _relations_per_claim(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Summed over runs, by relation: blocks read and found per claim, and the share of a table's
    updates that were HOT."""
    totals: dict[str, dict[str, int]] = {}
    claims = 0
    for run in runs:
        claims += run["claims"]
        for name, counters in run.get("relations", {}).items():
            total = totals.setdefault(name, dict.fromkeys(counters, 0))
            for k, v in counters.items():
                total[k] = total.get(k, 0) + v
    return {name: {"blocks_read_per_claim": t["blocks_read"] / max(claims, 1),
                   "blocks_hit_per_claim": t["blocks_hit"] / max(claims, 1),
                   "updates_per_claim": t["updates"] / max(claims, 1),
                   "hot_share": t["hot_updates"] / t["updates"] if t["updates"] else 0.0}
            for name, t in totals.items()}


def compare(empty: Iterable[dict[str, Any]], big: Iterable[dict[str, Any]], top: int = TOP) -> dict[str, Any]:
    """The statements whose time per claim grew most from the empty ledger to the history, the
    total of all statements' time per claim in each, and the relations whose blocks read from
    outside the buffers per claim grew most."""
    empty, big = list(empty), list(big)
    before, after = _per_claim(empty), _per_claim(big)
    nothing = {"ms_per_claim": 0.0, "calls_per_claim": 0.0, "blocks_read_per_call": 0.0}
    grown = sorted(before.keys() | after.keys(),
                   key=lambda q: after.get(q, nothing)["ms_per_claim"] - before.get(q, nothing)["ms_per_claim"],
                   reverse=True)
    return {
        "ms_per_claim": {"empty": sum(s["ms_per_claim"] for s in before.values()),
                         "big": sum(s["ms_per_claim"] for s in after.values())},
        "grown_most": [{"query": q, "empty": before.get(q, nothing), "big": after.get(q, nothing)} for q in grown[:top]],
        "relations_read_most": _read_most(_relations_per_claim(empty), _relations_per_claim(big), top),
    }


def _read_most(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], top: int) -> list[dict[str, Any]]:
    """The relations by how many more blocks a claim read from outside the buffers on the history."""
    nothing = {"blocks_read_per_claim": 0.0, "blocks_hit_per_claim": 0.0, "updates_per_claim": 0.0, "hot_share": 0.0}
    names = sorted(before.keys() | after.keys(), reverse=True,
                   key=lambda n: after.get(n, nothing)["blocks_read_per_claim"] - before.get(n, nothing)["blocks_read_per_claim"])
    return [{"relation": name, "empty": before.get(name, nothing), "big": after.get(name, nothing)} for name in names[:top]]
