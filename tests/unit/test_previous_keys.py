"""Retired verifier keys for key rotation come from the environment, each checked for its format."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.api.ledger import previous_verifier_keys
from claims_service.ledger.checkpoints import CheckpointError, verifier_key


def test_retired_keys_are_listed_in_order():
    old = [verifier_key(Ed25519PrivateKey.generate(), "claims-ledger.local/ledger") for _ in range(2)]
    assert previous_verifier_keys({"CLAIMS_PREVIOUS_VERIFIER_KEYS": f" {old[0]}, {old[1]} "}) == old
    assert previous_verifier_keys({}) == []


def test_a_malformed_retired_key_is_refused():
    with pytest.raises((CheckpointError, ValueError)):
        previous_verifier_keys({"CLAIMS_PREVIOUS_VERIFIER_KEYS": "not-a-key"})
