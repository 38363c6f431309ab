"""Adjudication figures: the pure engine (lines/s on one core) and the follower from the ledger
(claims/s of 3 lines, end to end with its batched commits), with the CPU each claim costs: the
in-process write path (Commands and the group committer, every thread of this process) and the
follower (its own thread) — steadier than rates on a machine others share (#18, point 3)."""

from __future__ import annotations

import threading
import time
from datetime import date

from bench.engine import measure_engine
from claims_service.adjudication import AdjudicationFollower
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.migrate import migrate
from tests import world

MEMBERS = 200
SUBMITTERS = 16


def submit_backlog(service: Commands, claims: int) -> float:
    """Submit `claims` three-line claims from 16 threads (group commit); return claims/s."""

    def client(first: int) -> None:
        for i in range(first, claims, SUBMITTERS):
            day = date(2026, 1 + i % 10, 1 + i % 28)
            service.submit_claim(
                actor="provider:" + world.NPI,
                **world.claim_body(f"bench-{i}", member_id=f"B{i % MEMBERS}", lines=[
                    world.line(1, "99213", 12_000, day=day),
                    world.line(2, "80053", 2_000, day=day),
                    world.line(3, "36415", 500, day=day),
                ]),
            )

    started = time.perf_counter()
    cpu = time.process_time()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(SUBMITTERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submit_backlog.cpu_ms_per_claim = (time.process_time() - cpu) / claims * 1000  # type: ignore[attr-defined]
    return claims / (time.perf_counter() - started)


def run(create_database, claims: int, engine_seconds: float, progress) -> dict[str, float]:
    task = progress.add_task("adjudication (engine, then the follower)", total=3)
    engine = measure_engine(engine_seconds)
    progress.advance(task)
    url = create_database("bench_adjudication")
    migrate(url)
    ledger = LedgerApplication(url, pool_size=SUBMITTERS)
    service = Commands(ledger, today=lambda: date(2026, 11, 2))
    try:
        world.set_up(service)
        for m in range(MEMBERS):
            service.enroll_member(actor="admin:bench", member_id=f"B{m}", payer_id=world.PAYER, plan_id=world.PLAN,
                                  effective_date=date(2026, 1, 1), terms=world.TERMS)
        submitted_per_s = submit_backlog(service, claims)
        progress.advance(task)
        follower = AdjudicationFollower(ledger)
        started, cpu = time.perf_counter(), time.thread_time()
        while follower.process_available():
            pass
        adjudicated_per_s = claims / (time.perf_counter() - started)
        follower_cpu_ms = (time.thread_time() - cpu) / claims * 1000
        progress.advance(task)
    finally:
        service.close()
        ledger.close()
    return {
        "engine_lines_per_s": engine["lines_per_second"],
        "in_process_submits_per_s": submitted_per_s,
        "follower_claims_per_s": adjudicated_per_s,
        "in_process_submit_cpu_ms_per_claim": submit_backlog.cpu_ms_per_claim,  # type: ignore[attr-defined]
        "follower_cpu_ms_per_claim": follower_cpu_ms,
        "claims": claims,
    }
