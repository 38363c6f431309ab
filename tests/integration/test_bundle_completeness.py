"""A claim bundle proves it is complete: every event of the claim's stream and of its payments'
streams as of its checkpoint, and no further payment. Leave anything out — the claim's last event
(the dispute's overturn), a payment's event, a whole payment stream — and `verify-bundle` fails
naming the gap; an old-format bundle (inclusion only) fails unless asked for with --inclusion-only;
cosignatures are required with --witness/--min-witnesses."""

from __future__ import annotations

import base64
import copy
from uuid import UUID

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.adjudication import AdjudicationFollower
from claims_service.adjudication.bundles import claim_streams, export_claim_bundle, verify_claim_bundle
from claims_service.cli.main import main
from claims_service.ledger.bundle import bundle_to_json
from claims_service.ledger.checkpointer import Checkpointer
from claims_service.ledger.cosignature import CosignerKey
from claims_service.ledger.note import VerifierKey
from claims_service.ledger.witnessing import WitnessEndpoint
from claims_service.witness.directory import init_witness, load_witness
from claims_service.witness.server import WitnessServer
from tests import world
from tests.integration.ledger.test_checkpoints import KEY, ORIGIN, VKEY

@pytest.fixture
def overturned(service):
    """A claim paid, disputed and overturned: two payments (the first issued), the overturn last."""
    follower = AdjudicationFollower(service.ledger)
    body = world.claim_body("therapy", lines=[world.line(1, "97110", 18_000, units=6)], diagnosis_codes=["M5450"])
    submitted = service.submit_claim(actor="provider:" + world.NPI, **body)
    while follower.process_available():
        pass
    service.issue_payments(actor="payer:" + world.PAYER, payer_id=world.PAYER, payment_ids=[f"{submitted.claim_id}/0"])
    dispute_id, _ = service.open_dispute(actor="dispute:team", claim_id=submitted.claim_id, reason="six were needed")
    service.resolve_dispute(actor="dispute:team", claim_id=submitted.claim_id, dispute_id=dispute_id,
                            resolution="overturned", note="2026.2 allows six", ruleset_version="2026.2")
    while follower.process_available():
        pass
    return UUID(submitted.claim_id)


def export(service, claim: UUID, signer: Checkpointer | None = None):
    signer = signer or Checkpointer(service.ledger.database_url, KEY, origin=ORIGIN)
    return export_claim_bundle(service.ledger.database_url, claim, signer)


def without(bundle, keep):
    changed = copy.deepcopy(bundle)
    del changed.events[:]
    changed.events.extend(e for e in bundle.events if keep(e))
    return changed


def test_a_complete_bundle_proves_it(service, overturned):
    bundle = export(service, overturned)
    claim, first, second, third = (str(s) for s in claim_streams(overturned, 3))
    assert {e.stream_id for e in bundle.events} == {claim, first, second}
    # Proofs for the claim, both payments, and the absence of a third payment.
    assert [(p.stream_id, p.version > 0) for p in bundle.stream_heads] == [
        (claim, True), (first, True), (second, True), (third, False)]
    report = verify_claim_bundle(bundle, VKEY)
    assert report.ok, report.failures
    assert report.complete.startswith("complete: every event of its 3 stream(s)")
    assert report.replay.startswith("identical")


def test_leaving_the_claims_last_event_out_is_named(service, overturned):
    bundle = export(service, overturned)
    last = max((e for e in bundle.events if e.stream_id == str(overturned)), key=lambda e: e.stream_version)
    report = verify_claim_bundle(without(bundle, lambda e: e is not last and e.position != last.position), VKEY)
    assert not report.ok
    assert (f"completeness: the claim (stream {overturned}): the checkpoint holds versions 1-{last.stream_version},"
            f" the bundle ends at version {last.stream_version - 1}: version {last.stream_version} left out") in report.failures


def test_leaving_a_payment_event_out_is_named(service, overturned):
    bundle = export(service, overturned)
    payment = str(claim_streams(overturned, 1)[1])
    events = [e for e in bundle.events if e.stream_id == payment]
    assert len(events) >= 2  # scheduled, issued, ...
    last = events[-1]
    report = verify_claim_bundle(without(bundle, lambda e: e.position != last.position), VKEY)
    assert any(f"payment 0 ({overturned}/0) (stream {payment}): the checkpoint holds versions 1-{last.stream_version}"
               in failure and f"version {last.stream_version} left out" in failure for failure in report.failures)
    # One from the middle: the stream's chain names the gap.
    middle = events[0]
    report = verify_claim_bundle(without(bundle, lambda e: e.position != middle.position), VKEY)
    assert any(f"stream {payment}: version 1 left out" in failure for failure in report.failures), report.failures


def test_leaving_a_whole_payment_stream_out_is_named(service, overturned):
    bundle = export(service, overturned)
    second = str(claim_streams(overturned, 2)[2])
    report = verify_claim_bundle(without(bundle, lambda e: e.stream_id != second), VKEY)
    assert any(f"payment 1 ({overturned}/1) (stream {second}): the checkpoint holds" in failure
               and "the bundle none: the whole stream is left out" in failure for failure in report.failures)
    # The stream and its map proof both gone: the bundle no longer shows whether payment 1 exists.
    gone = without(bundle, lambda e: e.stream_id != second)
    kept = [p for p in gone.stream_heads if p.stream_id != second]
    del gone.stream_heads[:]
    gone.stream_heads.extend(kept)
    report = verify_claim_bundle(gone, VKEY)
    assert any(f"payment 1 ({overturned}/1) (stream {second}): the bundle has no stream map proof" in failure
               for failure in report.failures), report.failures


def test_an_inclusion_only_bundle_fails_unless_asked_for(service, overturned):
    bundle = export(service, overturned)
    old = copy.deepcopy(bundle)
    old.format_version = 1
    del old.stream_heads[:]
    report = verify_claim_bundle(old, VKEY)
    assert not report.ok and "bundle format 1 proves inclusion only" in report.failures[0]
    report = verify_claim_bundle(old, VKEY, inclusion_only=True)
    assert report.ok and report.complete.startswith("NOT CHECKED")
    # Relabelling a bundle that left the overturn out as format 1 does not get it through.
    last = max((e for e in bundle.events if e.stream_id == str(overturned)), key=lambda e: e.stream_version)
    relabelled = without(old, lambda e: e.position != last.position)
    assert not verify_claim_bundle(relabelled, VKEY).ok


def test_verify_bundle_requires_the_witnesses_cosignatures(service, overturned, tmp_path, capsys):
    witness_dir = tmp_path / "witness"
    cosigner = init_witness(witness_dir, "witness.test/w1", {ORIGIN: [VerifierKey.parse(VKEY)]})
    server = WitnessServer(load_witness(witness_dir), "127.0.0.1:0").start()
    try:
        signer = Checkpointer(service.ledger.database_url, KEY, origin=ORIGIN,
                              witnesses=[WitnessEndpoint.parse(f"{server.url} {cosigner}")])
        bundle = export(service, overturned, signer)
    finally:
        server.stop()
    path = tmp_path / "bundle.json"
    path.write_text(bundle_to_json(bundle))
    stranger = str(CosignerKey.of(Ed25519PrivateKey.generate(), "witness.test/w3"))
    base = ["verify-bundle", str(path), "--public-key", VKEY]
    assert main(base + ["--witness", str(cosigner)]) == 0
    out = capsys.readouterr().out
    assert "cosigned by witness.test/w1+" in out and "complete: every event" in out
    assert main(base + ["--witness", str(cosigner), "--witness", stranger, "--min-witnesses", "1"]) == 0
    capsys.readouterr()
    assert main(base + ["--witness", str(cosigner), "--witness", stranger]) == 1  # default: all of them
    assert "1 valid cosignature(s) by the 2 witness key(s) given (witness.test/w1+" in capsys.readouterr().out
    assert main(base + ["--witness", stranger, "--min-witnesses", "1"]) == 1
    assert main(base + ["--witness", str(cosigner), "--min-witnesses", "2"]) == 2  # more than the keys given
    capsys.readouterr()
    # A cosignature by a trusted witness that does not verify rejects the checkpoint.
    name, blob = bundle.checkpoint.note.rstrip("\n").split("\n")[-1].split(" ")[1:]
    raw = bytearray(base64.b64decode(blob))
    raw[-1] ^= 1
    forged = copy.deepcopy(bundle)
    forged.checkpoint.note = bundle.checkpoint.note.replace(blob, base64.b64encode(bytes(raw)).decode())
    report = verify_claim_bundle(forged, VKEY, witnesses=[str(cosigner)])
    assert name == "witness.test/w1" and any("does not verify" in f for f in report.failures), report.failures
    # Without --witness the log's signature alone is checked, as before.
    assert verify_claim_bundle(forged, VKEY).ok
