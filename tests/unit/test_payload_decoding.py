"""The projections' payload decoder gives exactly what the plain ``json`` route gives, on payloads
written by the ledger's own transcoder (markers for dates and timestamps) and on odd ones."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from claims_service.application import LedgerApplication
from claims_service.ledger.payloads import _DECODER, decode_json

TRANSCODER = LedgerApplication.construct_transcoder(LedgerApplication.__new__(LedgerApplication))

# The transcoder refuses integers beyond 64 bits, so the ledger holds none (tested below).
plain = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=8),
              st.dates(), st.datetimes(timezones=st.just(UTC))),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "_type_", "_data_", "timestamp", 'q"\\{']), inner, max_size=3),
    ),
    max_leaves=12,
)


def reference(raw: bytes) -> object:
    return _DECODER.decode(raw.decode("utf-8"))


@given(st.dictionaries(st.text(max_size=6), plain, max_size=5), st.datetimes(timezones=st.just(UTC)))
def test_decoding_matches_the_plain_json_route(payload: dict, stamp: datetime) -> None:
    raw = TRANSCODER.encode({**payload, "timestamp": stamp})
    assert decode_json(raw) == reference(raw)


def test_markers_become_their_text() -> None:
    raw = TRANSCODER.encode({"timestamp": datetime(2026, 11, 2, 9, 30, tzinfo=UTC),
                             "lines": [{"date_of_service": date(2026, 10, 15)}], "note": '{"_type_":"x"}'})
    assert decode_json(raw) == {"timestamp": "2026-11-02T09:30:00+00:00",
                                "lines": [{"date_of_service": "2026-10-15"}], "note": '{"_type_":"x"}'}


def test_the_ledger_cannot_hold_an_integer_the_decoder_would_misread() -> None:
    with pytest.raises(TypeError):
        TRANSCODER.encode({"n": 2**64})


def test_odd_payloads_take_the_plain_route() -> None:
    for raw in (b'{"x": {"_type_": 1, "_data_": [1]}}',
                b'{"s": "\\ud800"}', json.dumps({"a": {"_type_": "t", "_data_": {"x": 1}}}).encode()):
        assert decode_json(raw) == reference(raw)


@pytest.mark.parametrize("kind", ["submitted", "voided"])
def test_reconcile_opens_a_sealed_payload_whose_nonce_begins_like_json(monkeypatch, kind: str) -> None:
    """A payload sealed under CIPHER_KEY is nonce + tag + ciphertext: one in 256 begins with "{"
    and must still be opened, not parsed as JSON (a flaky test found it)."""
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from claims_service import reconcile
    from claims_service.ledger import payloads

    key = os.urandom(32)
    monkeypatch.setattr(payloads, "_default", payloads.PayloadOpener(key))
    plain_json = b'{"claim_id":"c1","amount":125}'
    nonce = b"{" + os.urandom(11)
    sealed = AESGCM(key).encrypt(nonce, plain_json, None)
    state = nonce + sealed[-16:] + sealed[:-16]  # as the library lays it out: nonce, tag, ciphertext
    assert reconcile.payload(state, kind) == {"claim_id": "c1", "amount": 125}


def test_reconcile_reads_a_submissions_idempotency_key_past_its_cut_lines() -> None:
    """A submission is parsed up to its lines and again from its idempotency key on (the request
    id needs it); a key-like text inside a line's string cannot pass for the top-level key."""
    from claims_service import reconcile

    lines = [{"line_number": 1, "note": 'x,"idempotency_key":"forged"'}]
    state = json.dumps({"claim_id": "c1", "provider_id": "1234567893", "payer_id": "P1", "visit_id": None,
                        "lines": lines, "idempotency_key": "k-1", "body_hash": "ab", "timestamp": {"_type_": "x"}},
                       separators=(",", ":")).encode()
    assert reconcile.payload(state, "submitted") == {"claim_id": "c1", "provider_id": "1234567893", "payer_id": "P1",
                                                    "idempotency_key": "k-1", "body_hash": "ab",
                                                    "timestamp": {"_type_": "x"}}
