"""A witness's directory: everything it keeps, made by `claimsctl witness init`.

    witness-key.pem      its Ed25519 key (PKCS#8 PEM, mode 0600)
    witness.json         its name and the logs it witnesses: {"name": …, "logs": {origin: [verifier keys]}}
    state.json           the last checkpoint it cosigned per log (claims_service.ledger.witness.WitnessState)
    evidence/            refused checkpoints of logs that misbehaved, with what they contradict

The directory is 0700; the key and state 0600. Imports: the standard library, cryptography and the
ledger package.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from claims_service.files import private_dir, write_private
from claims_service.ledger.cosignature import CosignerKey
from claims_service.ledger.note import VerifierKey, check_key_name
from claims_service.ledger.signing_key import parse_signing_key
from claims_service.ledger.witness import Witness, WitnessError, WitnessState

KEY_FILE = "witness-key.pem"
CONFIG_FILE = "witness.json"
STATE_FILE = "state.json"
EVIDENCE_DIR = "evidence"


def init_witness(directory: Path, name: str, logs: Mapping[str, Sequence[VerifierKey]]) -> CosignerKey:
    """Make a new witness in `directory` (its key, its configuration, an empty state); return its
    verifier key. Refuses a directory that already holds a witness key."""
    check_key_name(name)
    if not logs:
        raise WitnessError("a witness needs at least one log to witness (--log-key)")
    directory = private_dir(directory)
    if (directory / KEY_FILE).exists():
        raise WitnessError(f"{directory / KEY_FILE} exists: this directory already holds a witness")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write_private(directory / KEY_FILE, pem.decode("ascii"))
    config = {"name": name, "logs": {origin: [str(k) for k in keys] for origin, keys in sorted(logs.items())}}
    write_private(directory / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    WitnessState(directory / STATE_FILE).save({})
    return CosignerKey.of(key, name)


def load_witness(directory: Path) -> Witness:
    """The witness kept in `directory` (made by init_witness)."""
    directory = Path(directory)
    try:
        key = parse_signing_key((directory / KEY_FILE).read_bytes(), f"witness key {KEY_FILE}")
        config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise WitnessError(f"{error.filename} is missing: run `claimsctl witness init` first") from None
    except ValueError as error:
        raise WitnessError(f"{CONFIG_FILE} is not JSON: {error}") from None
    try:
        name = check_key_name(config["name"])
        logs = {str(origin): [VerifierKey.parse(k) for k in keys] for origin, keys in config["logs"].items()}
    except (KeyError, TypeError, AttributeError) as error:
        raise WitnessError(f"{CONFIG_FILE} needs a name and logs ({error})") from None
    return Witness(key, name, logs, WitnessState(directory / STATE_FILE), directory / EVIDENCE_DIR)
