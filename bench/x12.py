"""X12 over gRPC, against `claimsctl serve` on its own database (the service part's set-up):
837 intake claims/s next to SubmitClaim claims/s of the same claims in the same run (each phase
saturated for the same time, its adjudication drained before the next), then 835 generation
claims/s over the payer's runs.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg

from bench.load import PAYER, PROVIDERS, Server, auth, cpu_seconds, set_up
from claims.v1 import common_pb2, payer_pb2, payer_pb2_grpc, provider_pb2, provider_pb2_grpc
from claims_service.x12.interchange import Envelope, Group, Transaction, amount, d8, write

CLAIMS_PER_FILE = 50
FILES_IN_FLIGHT = 4
CALLS_IN_FLIGHT = 32
LINES = [("99213", 12_000, 1), ("80053", 2_500, 1), ("36415", 500, 1)]  # the service part's clean claim
PAYER_IDENTITY = payer_pb2.RemittancePayer(name="BENCH HEALTH PLAN", tax_id="131234567", address_line="1 PLAN PLAZA",
                                           city="ALBANY", state="NY", postal_code="12207", contact="edi@bench.example")


def claim_837(npi: str, first: int, count: int, members: int, today: Any) -> bytes:
    """An 837P of `count` three-line claims from `npi`, one subscriber loop each."""
    t = Transaction("837", "005010X222A1")
    t.add("BHT", "0019", "00", f"B{first}", d8(today), "1200", "CH")
    t.add("NM1", "41", "2", "BENCH CLINIC", "", "", "", "", "46", f"S{npi}")
    t.add("PER", "IC", "BILLING", "TE", "5185550100")
    t.add("NM1", "40", "2", "BENCH HEALTH PLAN", "", "", "", "", "46", PAYER)
    t.add("HL", "1", "", "20", "1")
    t.add("NM1", "85", "2", "BENCH CLINIC", "", "", "", "", "XX", npi)
    t.add("N3", "1 MAIN ST")
    t.add("N4", "ALBANY", "NY", "122070001")
    t.add("REF", "EI", "141234567")
    rng = random.Random(first)
    for n in range(count):
        day = today - timedelta(days=rng.randrange(1, 300))
        t.add("HL", str(n + 2), "1", "22", "0")
        t.add("SBR", "P", "18", "", "", "", "", "", "", "CI")
        t.add("NM1", "IL", "1", "MEMBER", "BENCH", "", "", "", "MI", f"BM{rng.randrange(members)}")
        t.add("N3", "2 ELM ST")
        t.add("N4", "ALBANY", "NY", "122080002")
        t.add("DMG", "D8", "19800101", "F")
        t.add("NM1", "PR", "2", "BENCH HEALTH PLAN", "", "", "", "", "PI", PAYER)
        t.add("CLM", f"BENCH-{first + n}", amount(sum(b for _, b, _ in LINES)), "", "", ["11", "B", "1"], "Y", "A", "Y", "Y")
        t.add("HI", ["ABK", "E119"], ["ABF", "M5450"], ["ABF", "M1711"])
        for number, (code, billed, pointer) in enumerate(LINES, start=1):
            t.add("LX", str(number))
            t.add("SV1", ["HC", code], amount(billed), "UN", "1", "", "", [str(pointer)])
            t.add("DTP", "472", "D8", d8(day))
    control = first % 999_999_999 + 1
    return write(Envelope(("ZZ", f"S{npi}"), ("ZZ", PAYER), control, datetime.now(UTC)),
                 [Group("HC", f"S{npi}", PAYER, "005010X222A1", control, [t])]).encode()


def saturate(seconds: float, in_flight: int, send: Callable[[int], int]) -> tuple[int, float]:
    """Keep `in_flight` calls of `send(n) -> claims taken` going for `seconds`; (claims, elapsed)."""
    counter = iter(range(10**9))
    lock = threading.Lock()
    taken = [0]
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        while time.monotonic() < stop_at:
            with lock:
                n = next(counter)
            claims = send(n)
            with lock:
                taken[0] += claims

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return taken[0], time.monotonic() - started


def server_cpu(pid: int) -> float:
    """User + system CPU of the server process alone (not its workers), from /proc."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(url: str, timeout: float = 180) -> None:
    """Until the adjudicator has decided every claim submitted (so the next phase starts even)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute("SELECT count(*) FROM claim_status WHERE status = 'submitted'").fetchone()[0]
            if not waiting:
                return
            time.sleep(0.5)


def run(create_database: Callable[[str], str], args: Any, progress: Any) -> dict[str, Any]:
    from claims_service.migrate import migrate

    url = create_database("bench_x12")
    migrate(url)
    seconds = max(args.seconds, 4.0)
    task = progress.add_task("X12 over gRPC: starting", total=None)
    with tempfile.TemporaryDirectory(prefix="claims-bench-x12-") as tmp:
        server = Server(url, Path(tmp), port=50000 + random.randrange(1, 9000))
        try:
            channel = grpc.insecure_channel(server.addr, options=[("grpc.max_send_message_length", 8 << 20)])
            keys = set_up(channel, server.keys)
            provider = provider_pb2_grpc.ProviderServiceStub(channel)
            today = datetime.now(UTC).date()

            def submit_claim(n: int) -> int:
                npi = PROVIDERS[n % len(PROVIDERS)]
                day = (today - timedelta(days=random.Random(n).randrange(1, 300))).isoformat()
                request = provider_pb2.SubmitClaimRequest(
                    idempotency_key=f"grpc-{n}", member_id=f"BM{n % 400}", payer_id=PAYER, place_of_service="11",
                    diagnosis_codes=["E119", "M5450", "M1711"],
                    lines=[common_pb2.ServiceLine(line_number=i + 1, procedure_code=c, units=u, billed_cents=b,
                                                  diagnosis_pointers=[1], date_of_service=day)
                           for i, (c, b, u) in enumerate(LINES)])
                provider.SubmitClaim(request, metadata=auth(keys[npi]), timeout=60)
                return 1

            files = [claim_837(PROVIDERS[n % len(PROVIDERS)], n * CLAIMS_PER_FILE, CLAIMS_PER_FILE, 400, today)
                     for n in range(400)]

            def submit_x12(n: int) -> int:
                npi = PROVIDERS[n % len(PROVIDERS)]
                answer = provider.SubmitX12(provider_pb2.SubmitX12Request(interchange=files[n % len(files)]),
                                            metadata=auth(keys[npi]), timeout=120)
                return sum(1 for c in answer.claims if c.accepted)

            pid = server.process.pid

            def cpu() -> tuple[float, float]:
                """(server process, server and workers) CPU seconds so far."""
                return server_cpu(pid), cpu_seconds(pid)

            progress.update(task, description=f"X12: SubmitClaim, {CALLS_IN_FLIGHT} in flight, {seconds:.0f} s")
            before = cpu()
            grpc_claims, grpc_elapsed = saturate(seconds, CALLS_IN_FLIGHT, submit_claim)
            drain(url)
            grpc_cpu = [(b - a) * 1000 / max(grpc_claims, 1) for a, b in zip(before, cpu(), strict=True)]
            progress.update(task, description=f"X12: SubmitX12 ({CLAIMS_PER_FILE} claims a file), "
                                              f"{FILES_IN_FLIGHT} in flight, {seconds:.0f} s")
            before = cpu()
            x12_claims, x12_elapsed = saturate(seconds, FILES_IN_FLIGHT, submit_x12)
            drain(url)
            x12_cpu = [(b - a) * 1000 / max(x12_claims, 1) for a, b in zip(before, cpu(), strict=True)]
            progress.update(task, description="X12: payment runs and their 835s")
            payer = payer_pb2_grpc.PayerServiceStub(channel)
            meta = auth(server.keys["payer"]["api_key"])
            runs = []
            while True:
                issued = payer.IssuePayments(payer_pb2.IssuePaymentsRequest(
                    max_payments=1000, min_position=runs[-1][1] if runs else 0), metadata=meta, timeout=120)
                if not issued.payments:
                    break
                runs.append((issued.run_id, issued.receipt.position))
            if runs:  # the payments read model has every run (not timed: that is the projection's speed)
                payer.GetRemittance835(payer_pb2.GetRemittance835Request(
                    run_id=runs[-1][0], payer=PAYER_IDENTITY, min_position=runs[-1][1]), metadata=meta, timeout=120)
            generated = 0
            started = time.monotonic()
            for run_id, position in runs:
                answer = payer.GetRemittance835(payer_pb2.GetRemittance835Request(
                    run_id=run_id, payer=PAYER_IDENTITY, min_position=position), metadata=meta, timeout=120)
                generated += sum(s.claims for s in answer.remittances)
            remittance_elapsed = time.monotonic() - started
            channel.close()
        finally:
            server.stop()
    progress.remove_task(task)
    grpc_rate, x12_rate = grpc_claims / grpc_elapsed, x12_claims / x12_elapsed
    remittance_rate = generated / remittance_elapsed if remittance_elapsed else 0.0
    return {
        "seconds_per_phase": seconds,
        "submit_claim_per_s": grpc_rate,
        "x12_intake_claims_per_s": x12_rate,
        "x12_to_grpc_ratio": x12_rate / grpc_rate if grpc_rate else 0.0,
        "claims_per_file": CLAIMS_PER_FILE,
        "cpu_ms_per_claim": {"submit_claim": {"server": grpc_cpu[0], "server_and_workers": grpc_cpu[1]},
                             "x12": {"server": x12_cpu[0], "server_and_workers": x12_cpu[1]}},
        "runs": len(runs),
        "remittance_claims": generated,
        "remittance_835_claims_per_s": remittance_rate,
        "table": [
            (f"SubmitClaim claims/s ({CALLS_IN_FLIGHT} in flight, 3 lines)", grpc_rate, ""),
            (f"837 intake claims/s (SubmitX12, {CLAIMS_PER_FILE} a file, {FILES_IN_FLIGHT} in flight)", x12_rate,
             "≥ 0.8 × SubmitClaim"),
            ("837 intake ÷ SubmitClaim", f"{x12_rate / grpc_rate:.2f}" if grpc_rate else "-", "≥ 0.80"),
            ("CPU ms per claim, server / with workers: SubmitClaim | 837",
             f"{grpc_cpu[0]:.2f} / {grpc_cpu[1]:.2f} | {x12_cpu[0]:.2f} / {x12_cpu[1]:.2f}", ""),
            (f"835 generation claims/s (GetRemittance835, {len(runs)} runs, {generated:,} claims)", remittance_rate,
             "≥ 5,000"),
        ],
    }
