"""What per-member encryption costs (#16, point 5): the service's saturated load (bench/load.py's mix,
32 calls in flight) with payloads written plain (CLAIMS_MEMBER_ENCRYPTION=off) and with every
member's data sealed under the member's own data key (the default), each on a fresh database in its
own `claimsctl serve`, rounds alternating (plain, keyed, plain, ...) so that a machine slowing down
weighs on both alike; each figure is the median of its rounds. The cost is 1 - (claims adjudicated
end to end/s keyed) / (plain), target under 10 %; CPU per call beside it, steadier on a shared
machine.

In-process, the pieces: sealing and opening one event's payload (a submission, a decision with its
recorded facts) against the plain transcoding, and a key looked up in the cache (a hit) against
one read from the table and unwrapped (a miss).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

from bench.load import alternating_rounds
from bench.observability import saturate

CONFIGS: dict[str, dict[str, str]] = {
    "plain": {"CLAIMS_MEMBER_ENCRYPTION": "off"},
    "member keys": {"CLAIMS_MEMBER_ENCRYPTION": "on"},
}


def pieces(create_database: Callable[[str], str]) -> dict[str, float]:
    """Microseconds per event: transcoding alone, sealing, opening; a key hit and a miss."""
    from claims_service.adjudication import AdjudicationFollower
    from claims_service.application import LedgerApplication
    from claims_service.commands import Commands
    from claims_service.keys import store as key_store
    from claims_service.migrate import migrate
    from tests import world

    url = create_database("bench_encryption_pieces")
    migrate(url)
    ledger = LedgerApplication(url)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        world.set_up(service)
        claim = service.submit_claim(actor="provider:" + world.NPI, **world.claim_body("bench-1"))
        follower = AdjudicationFollower(ledger)
        while follower.process_available():
            pass
        events = list(ledger.events.get(uuid.UUID(claim.claim_id)))
        submitted, decided = events[0], events[1]
        mapper = ledger.mapper
        plain_state = {k: v for k, v in vars(decided).items() if k not in ("originator_id", "originator_version")}
        found: dict[str, float] = {}
        for name, event in (("submission", submitted), ("decision", decided)):
            stored = mapper.to_stored_event(event)
            found[f"{name}_bytes"] = len(stored.state)
            found[f"{name}_seal_us"] = _each(lambda e=event: mapper.to_stored_event(e))
            found[f"{name}_open_us"] = _each(lambda s=stored: mapper.to_domain_event(s))
        found["decision_transcode_us"] = _each(lambda: mapper.transcoder.encode(plain_state))
        keys = ledger.member_keys
        key_id = keys.key_of_member(world.MEMBER)[0]
        found["key_hit_us"] = _each(lambda: keys.cipher(key_id))
        found["key_miss_us"] = _each(lambda: (keys._ciphers.clear(), key_store._unwrapped.clear(), keys.cipher(key_id)),
                                     rounds=300)
        return {k: round(v, 2) for k, v in found.items()}
    finally:
        service.close()
        ledger.close()


def _each(call: Callable[[], Any], rounds: int = 3000) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        call()
    return (time.perf_counter() - started) / rounds * 1e6


def run(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    rounds = 1 if args.quick else 3
    seconds = max(args.seconds, 4.0)
    runs = alternating_rounds(progress, "per-member encryption cost", {name: name for name in CONFIGS}, rounds,
                              lambda name, index, round_: saturate(create_database, f"enc_{index}_{round_}",
                                                                   CONFIGS[name], seconds))
    task = progress.add_task("per-member encryption: the pieces", total=None)
    try:
        found_pieces = pieces(create_database)
    finally:
        progress.remove_task(task)
    medians = {name: statistics.median(r["claims_per_s"] for r in found) for name, found in runs.items()}
    cpu = {name: statistics.median(r["cpu_ms_per_call"] for r in found) for name, found in runs.items()}
    cost = 1 - medians["member keys"] / medians["plain"]
    cpu_cost = cpu["member keys"] / cpu["plain"] - 1
    result = {"rounds": rounds, "seconds_per_run": seconds, "runs": runs, "claims_per_s": medians,
              "cpu_ms_per_call": cpu, "cost": cost, "cpu_cost": cpu_cost, "pieces": found_pieces}
    p = found_pieces
    result["table"] = [
        ("claims end to end/s, saturated: plain / member keys", " / ".join(f"{medians[n]:,.0f}" for n in CONFIGS), ""),
        ("  cost of per-member encryption (end-to-end claims/s)", f"{cost * 100:+.1f} %", "< 10 %"),
        ("  CPU ms per call (server + workers): plain / member keys", " / ".join(f"{cpu[n]:.2f}" for n in CONFIGS),
         ""),
        ("  cost in CPU per call", f"{cpu_cost * 100:+.1f} %", ""),
        ("  µs per event sealed / opened: submission", f"{p['submission_seal_us']:.1f} / {p['submission_open_us']:.1f}", ""),
        ("  µs per event sealed / opened: decision (transcoding alone)",
         f"{p['decision_seal_us']:.1f} / {p['decision_open_us']:.1f} ({p['decision_transcode_us']:.1f})", ""),
        ("  µs per member key: cached / read and unwrapped", f"{p['key_hit_us']:.2f} / {p['key_miss_us']:.0f}", ""),
    ]
    return result
