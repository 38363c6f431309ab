"""Tamper drills against the running service, each asserting who detects it: the auditor at once
(a truncation, a forged row appended, a full rewrite with hashes recomputed, the tree rebuilt and
the checkpoints deleted), or `claimsctl verify` and the auditor's next whole pass (a row altered in
place, deleted or swapped below the head it has passed). Detection turns health NOT_SERVING, stops
the signer, and halts every call but the investigators' with DATA_LOSS naming what was found;
VerifyLedger still answers. (The signer's refusal of a rewrite or of an older backup restored is
tests/integration/ledger/test_signer_state.py; a witness refusing a split view,
tests/integration/ledger/test_witnesses.py; a holder of an earlier checkpoint,
tests/integration/ledger/test_checkpoints.py.)"""

from __future__ import annotations

import os
import signal
import time
import uuid

import grpc
import httpx
import psycopg
import pytest
from grpc_health.v1 import health_pb2

from claims.v1 import dispute_pb2, ledger_pb2, provider_pb2
from claims_service.ledger.chain import GENESIS, row_hash
from claims_service.ledger.verify import verify_ledger
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided
from tests.e2e.test_outside_clients import wait_for_health
from tests.integration.ledger.conftest import tamper
from tests.integration.ledger.test_checkpoints import rewrite_history


def attacker_url(parties) -> str:
    """The database as its superuser (the service itself connects as a role that cannot tamper)."""
    return getattr(parties, "database_url", "") or parties.service.ledger.database_url


def busy_ledger(parties) -> int:
    """A few decided claims and a signed checkpoint; returns the ledger's head position."""
    set_up(parties)
    last = 0
    for n in range(3):
        submitted = parties.provider.provider.SubmitClaim(claim_request(f"drill-{n}"))
        last = max(last, wait_decided(parties, submitted.claim_id, submitted.receipt.position).last_position)
    parties.provider.ledger.GetCheckpoint(ledger_pb2.GetCheckpointRequest(min_tree_size=1))
    return last


def wait_for_audit(parties, position: int, timeout: float = 20.0) -> None:
    integrity = parties.service.interceptor._integrity
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        audit = integrity.last_audit
        if audit is not None and audit["position"] >= position:
            return
        time.sleep(0.1)
    raise AssertionError("the auditor never reached the head")


def assert_halted(parties, found: str, timeout: float = 30.0) -> None:
    integrity = parties.service.interceptor._integrity
    deadline = time.monotonic() + timeout
    while integrity.fault is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert integrity.fault is not None and found in integrity.fault, integrity.fault
    wait_for_health(parties.channel, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert "ledger" in parties.service.server.failing
    # Writes and reads that rest on the ledger are refused, naming the fault ...
    for call in (lambda: parties.provider.provider.SubmitClaim(claim_request("after-the-drill")),
                 lambda: parties.provider.provider.ListClaims(provider_pb2.ListClaimsRequest())):
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() == grpc.StatusCode.DATA_LOSS
        assert "failed verification" in refused.value.details()
    # ... over FHIR too ...
    eobs = httpx.get(f"{parties.fhir_url}/ExplanationOfBenefit", params={"patient": "M-1001"},
                     headers={"authorization": f"Bearer {parties.payer.key}"}, timeout=10)
    assert eobs.status_code == 503 and "failed verification" in eobs.text
    # ... the signer signs nothing more ...
    assert parties.service.checkpointer.fault is not None
    # ... and the investigators still get their answers.
    verified = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest(), timeout=60)
    assert verified.audited_at == ""  # walked, not taken from an audit that no longer holds


def test_a_truncation_halts_the_service(parties):
    head = busy_ledger(parties)
    wait_for_audit(parties, head)
    tamper(attacker_url(parties),
           f"DELETE FROM ledger_events WHERE notification_id > {head - 3}")
    assert_halted(parties, "is gone")


@pytest.mark.parametrize(("drill", "fault"), [
    ("UPDATE ledger_events SET state = overlay(state placing '\\x58'::bytea from 3) WHERE notification_id = {mid}",
     "payload altered"),
    ("DELETE FROM ledger_events WHERE notification_id = {mid}", "row missing"),
    ("UPDATE ledger_events SET notification_id = -1 WHERE notification_id = {mid};"
     " UPDATE ledger_events SET notification_id = {mid} WHERE notification_id = {mid} + 1;"
     " UPDATE ledger_events SET notification_id = {mid} + 1 WHERE notification_id = -1", "rows reordered"),
], ids=["altered in place", "deleted", "swapped"])
def test_a_change_below_the_audited_head_is_named_by_verify_and_found_when_the_workers_start_again(
        parties, drill, fault):
    """Below the head the auditor has passed, a change is not seen as events arrive: `claimsctl
    verify` names it, the scheduled round finds it (tests/integration/ledger/test_auditor.py),
    and so does a restarted workers process: its auditor resumes from the head it remembers and its
    start-up round walks the whole chain behind it."""
    head = busy_ledger(parties)
    wait_for_audit(parties, head)
    url = attacker_url(parties)
    tamper(url, *drill.format(mid=head // 2).split("; "))
    assert verify_ledger(url, processes=1).problem.fault.value == fault
    os.kill(parties.service.workers.pid_of("tree"), signal.SIGKILL)  # the auditor's process
    assert_halted(parties, fault)


def test_a_forged_row_appended_halts_the_service_at_once(parties):
    head = busy_ledger(parties)
    wait_for_audit(parties, head)
    url = attacker_url(parties)
    with psycopg.connect(url) as conn:
        (topic,) = conn.execute("SELECT topic FROM ledger_events WHERE notification_id = %s", (head,)).fetchone()
    state = b'{"forged": true}'
    prev = os.urandom(32)  # a link to nothing: the forger cannot know the next hash in the chain
    forged = uuid.uuid4()
    digest = row_hash(prev, head + 100, forged, 1, topic, state)
    tamper(url, "DROP INDEX ledger_events_leaf_index_idx",
           "INSERT INTO ledger_events (notification_id, originator_id, originator_version, topic, state,"
           f" prev_hash, stream_prev_hash, hash, leaf_index) VALUES ({head + 100}, '{forged}', 1, '{topic}',"
           f" '\\x{state.hex()}', '\\x{prev.hex()}', '\\x{GENESIS.hex()}', '\\x{digest.hex()}',"
           " (SELECT max(leaf_index) + 1 FROM ledger_events))")
    assert_halted(parties, "slipped in")


def test_a_full_rewrite_with_the_tree_rebuilt_and_the_checkpoints_deleted_halts_the_service(parties):
    head = busy_ledger(parties)
    wait_for_audit(parties, head)
    url = attacker_url(parties)
    with psycopg.connect(url) as conn:
        (first_claim_event,) = conn.execute("SELECT min(notification_id) FROM ledger_events"
                                            " WHERE topic LIKE '%Claim.Submitted%'").fetchone()
    rewrite_history(url, first_claim_event, b'{"forged": true}')
    tamper(url, "DELETE FROM ledger_checkpoints")
    assert_halted(parties, "has another hash")


def test_an_intact_ledger_is_answered_from_the_audit(parties):
    head = busy_ledger(parties)
    wait_for_audit(parties, head)
    verified = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest())
    assert verified.intact and verified.audited_at and verified.head_position >= head
    with psycopg.connect(parties.service.ledger.database_url) as conn:
        (digest,) = conn.execute("SELECT hash FROM ledger_events WHERE notification_id = %s", (head,)).fetchone()
    kept = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest(
        expect_head_position=head, expect_head_hash=bytes(digest)))
    assert kept.intact and kept.audited_at
    wrong = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest(
        expect_head_position=head, expect_head_hash=bytes(32)))
    assert not wrong.intact and wrong.problem.fault == dispute_pb2.LEDGER_FAULT_HEAD_MISMATCH
    health = parties.channel
    wait_for_health(health, health_pb2.HealthCheckResponse.SERVING)
