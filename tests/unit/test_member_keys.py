"""Member data keys, the pure parts: the sealed payload format (what is sealed, by path; opened
with the member's key; "erased" once it is gone) and key-encryption keys (wrapping, rotation, what
a KEK list or file holds). No database."""

from __future__ import annotations

import base64
import copy
import os
import stat

import orjson
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from claims_service.domain import phi
from claims_service.domain.benefits import BenefitPeriod
from claims_service.domain.claim import Claim
from claims_service.domain.member import MemberCoverage
from claims_service.domain.visit import Visit
from claims_service.keys.kek import (
    KeyEncryptionKeyError,
    LocalKeyEncryptionKeys,
    add_kek,
    create_kek_file,
    load_keks,
    parse_kek_list,
    read_kek_file,
)
from claims_service.keys.store import BatchKeys
from claims_service.ledger.payloads import (
    SEALED,
    UndecodablePayloadError,
    decode_state,
    is_erased,
    merge_sealed,
    open_payload,
    seal,
    sealed_key_id,
    split_sealed,
)

KEY_ID = "6f0c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"


def stored(state: dict, plain: set[str], within: tuple[str, ...] = (), key: bytes = b"k" * 32) -> bytes:
    kept, sealed = split_sealed(state, plain, within)
    return orjson.dumps({SEALED: seal(KEY_ID, AESGCM(key), orjson.dumps(sealed)), **kept})


DECISION_EVENT = {
    "timestamp": {"_type_": "datetime_iso", "_data_": "2026-11-02T10:00:00+00:00"},
    "actor": "system:adjudicator",
    "decision": {"outcome": "PAID", "total_paid_cents": 1500,
                 "accumulator_changes": [{"plan_year": 2026, "deductible_cents": 5000, "oop_cents": 7500,
                                          "benefit_units": {"97110": 2}}]},
    "facts": {"coverages": [{"member_id": "M-1", "effective_date": {"_type_": "date_iso", "_data_": "2026-01-01"}}],
              "earlier_claim_lines": ["x" * 2000]},
    "ruleset_version": "2026.1",
}


def test_a_sealed_payload_keeps_only_its_plain_fields_readable_and_opens_whole():
    plain = {"timestamp", "actor", "decision", "ruleset_version"}
    within = ("decision/accumulator_changes/*/benefit_units",)
    state = stored(DECISION_EVENT, plain, within)
    assert sealed_key_id(state) == KEY_ID and state.startswith(b'{"_sealed_":{"k":"' + KEY_ID.encode() + b'"')
    assert b"M-1" not in state and b"97110" not in state and b"5000" in state  # money readable, the rest not
    keys = BatchKeys({KEY_ID: AESGCM(b"k" * 32)})
    opened = decode_state(state, keys=keys)
    assert opened["decision"]["accumulator_changes"][0]["benefit_units"] == {"97110": 2}
    assert opened["facts"]["coverages"][0]["effective_date"] == "2026-01-01"  # markers decoded, as for plain JSON
    assert orjson.loads(open_payload(state, keys=keys)) == DECISION_EVENT  # the event's JSON, markers kept
    # Erased: the plain fields and the marker, never an error.
    erased = decode_state(state, keys=BatchKeys({KEY_ID: None}))
    assert is_erased(erased) and "facts" not in erased and erased["ruleset_version"] == "2026.1"
    assert "benefit_units" not in erased["decision"]["accumulator_changes"][0]
    assert erased["decision"]["accumulator_changes"][0]["deductible_cents"] == 5000


def test_a_sealed_payload_does_not_open_with_another_key_nor_without_one():
    state = stored({"actor": "a", "member_id": "M-1"}, {"actor"})
    with pytest.raises(UndecodablePayloadError):
        decode_state(state, keys=BatchKeys({KEY_ID: AESGCM(b"x" * 32)}))
    with pytest.raises(UndecodablePayloadError):
        decode_state(state, keys=BatchKeys({}))  # a key this database does not know
    tampered = state.replace(b'"actor":"a"', b'"actor":"b"')
    assert decode_state(tampered, keys=BatchKeys({KEY_ID: AESGCM(b"k" * 32)}))["actor"] == "b"  # the chain catches it
    swapped = bytearray(state)
    swapped[state.index(b'"c":"') + 8] ^= 1
    with pytest.raises(UndecodablePayloadError):
        decode_state(bytes(swapped), keys=BatchKeys({KEY_ID: AESGCM(b"k" * 32)}))


def test_split_and_merge_are_inverse_and_leave_the_state_alone():
    state = copy.deepcopy(DECISION_EVENT)
    kept, sealed = split_sealed(state, {"actor", "decision"}, ("decision/accumulator_changes/*/benefit_units",))
    assert state == DECISION_EVENT
    assert set(sealed) == {"timestamp", "facts", "ruleset_version", "decision/accumulator_changes/0/benefit_units"}
    assert merge_sealed(copy.deepcopy(kept), sealed) == DECISION_EVENT
    assert sealed_key_id(b'{"actor":"a"}') is None and sealed_key_id(b'{"_sealed_":{"k":"short"}}') is None


def test_every_event_of_a_members_stream_is_classified():
    """A new event of a member's aggregate is sealed whole until someone decides what of it may stay readable."""
    for aggregate in (Claim, MemberCoverage, BenefitPeriod, Visit):
        events = [v for n, v in vars(aggregate).items() if isinstance(v, type) and issubclass(v, aggregate.Event)
                  and n not in ("Event", "Created", "Snapshot")]
        assert events and all(e in phi.PLAIN for e in events), [e for e in events if e not in phi.PLAIN]
    never = {"member_id", "diagnosis_codes", "lines", "facts", "visit_id", "idempotency_key", "body_hash", "sha256",
             "date_of_service", "effective_date", "effective_on", "termination_date", "received_on", "note", "reason"}
    for event, fields in phi.PLAIN.items():
        if event is not BenefitPeriod.ClaimReversed:  # its reason is the system's ("voided claim")
            assert not fields & never, (event, fields & never)


def test_keks_wrap_under_the_newest_and_unwrap_under_any_held():
    old, new = os.urandom(32), os.urandom(32)
    first = LocalKeyEncryptionKeys([("k1", old)])
    kek_id, wrapped = first.wrap(b"d" * 32, b"key-a")
    rotated = LocalKeyEncryptionKeys([("k1", old), ("k2", new)])
    assert rotated.newest == "k2" and rotated.wrap(b"d" * 32, b"key-a")[0] == "k2"
    assert rotated.unwrap(kek_id, wrapped, b"key-a") == b"d" * 32
    with pytest.raises(KeyEncryptionKeyError):
        rotated.unwrap(kek_id, wrapped, b"key-b")  # bound to its member's key id
    with pytest.raises(KeyEncryptionKeyError, match="not configured"):
        LocalKeyEncryptionKeys([("k2", new)]).unwrap(kek_id, wrapped, b"key-a")
    for bad in ([], [("k 1", old)], [("k1", b"short")], [("k1", old), ("k1", new)]):
        with pytest.raises(KeyEncryptionKeyError):
            LocalKeyEncryptionKeys(bad)


def test_kek_settings_and_files(tmp_path):
    key = base64.b64encode(b"a" * 32).decode()
    assert parse_kek_list(f"one:{key},two:{key}") == [("one", b"a" * 32), ("two", b"a" * 32)]
    assert parse_kek_list(f"# comment\none {key}\n\ntwo {key}  # newest\n") == [("one", b"a" * 32), ("two", b"a" * 32)]
    for bad in ("one", f"one:{key[:-2]}!", "one:"):
        with pytest.raises(KeyEncryptionKeyError):
            parse_kek_list(bad)
    assert load_keks({"CLAIMS_MEMBER_KEKS": f"one:{key}"}).newest == "one"
    made = load_keks({"CLAIMS_DATA_DIR": str(tmp_path / "data")})  # the development default, made on first use
    path = tmp_path / "data" / "member-keks"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and made.newest == read_kek_file(path)[0][0]
    newer = add_kek(path)
    assert [k for k, _ in read_kek_file(path)][-1] == newer and load_keks({"CLAIMS_MEMBER_KEK_FILE": str(path)}).newest == newer
    with pytest.raises(FileExistsError):
        create_kek_file(path)
    with pytest.raises(KeyEncryptionKeyError):
        load_keks({"CLAIMS_MEMBER_KEK_FILE": str(tmp_path / "missing")})
