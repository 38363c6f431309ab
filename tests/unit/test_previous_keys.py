"""Retired verifier keys for key rotation are a setting (CLAIMS_PREVIOUS_VERIFIER_KEYS), each
checked for its format when the configuration is read."""

from __future__ import annotations

import pydantic
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.config import Config
from claims_service.ledger.note import verifier_key


def test_retired_keys_are_listed_in_order():
    old = [verifier_key(Ed25519PrivateKey.generate(), "claims-ledger.local/ledger") for _ in range(2)]
    assert Config.from_env({"CLAIMS_PREVIOUS_VERIFIER_KEYS": f" {old[0]}, {old[1]} "}).previous_verifier_keys == old
    assert Config.from_env({}).previous_verifier_keys == []


def test_a_malformed_retired_key_is_refused_when_the_configuration_is_read():
    with pytest.raises(pydantic.ValidationError, match="previous_verifier_keys"):
        Config.from_env({"CLAIMS_PREVIOUS_VERIFIER_KEYS": "not-a-key"})
