"""claimsctl commands for the Merkle tree and signed checkpoints; `register` adds them to the CLI.

    claimsctl checkpoint [-o FILE]                       sign a checkpoint now and print it
    claimsctl verify-checkpoint FILE --public-key KEY    check the live ledger against a kept checkpoint

Signing reads CLAIMS_SIGNING_KEY (base64 Ed25519 seed), else CLAIMS_SIGNING_KEY_FILE, else
`<data dir>/signing-key.pem` (generated on first use); CLAIMS_CHECKPOINT_ORIGIN and
CLAIMS_SIGNING_KEY_NAME name the log and its key (see checkpoints.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add `checkpoint` and `verify-checkpoint` to claimsctl's subcommands."""
    checkpoint = subparsers.add_parser(
        "checkpoint", help="bring the Merkle tree up to date, sign a checkpoint of it now and print the note")
    checkpoint.add_argument("-o", "--output", type=Path, metavar="FILE", help="also write the signed note to FILE")
    checkpoint.set_defaults(func=cmd_checkpoint)

    verify = subparsers.add_parser(
        "verify-checkpoint",
        help="check the live ledger against a checkpoint kept earlier (signature, chain, tree, consistency);"
             " exit 1 on any failure")
    verify.add_argument("file", type=Path, metavar="FILE", help="the signed checkpoint note")
    verify.add_argument("--public-key", required=True, action="append", metavar="KEY",
                        help="the log's verifier key <name>+<key id>+<base64 key>, or a file holding it;"
                             " repeat to trust several keys (key rotation)")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.set_defaults(func=cmd_verify_checkpoint)


def _missing_tables(error: Exception) -> int:
    print(f"claimsctl: {error.__class__.__name__}: {error}".strip(), file=sys.stderr)
    print("claimsctl: the tree or checkpoint tables are missing; run `claimsctl migrate`", file=sys.stderr)
    return 2


def cmd_checkpoint(config: Any, args: argparse.Namespace) -> int:
    import psycopg

    from claims_service.cli import database_url
    from claims_service.ledger.checkpoints import (
        Checkpointer,
        SigningSettings,
        export_checkpoint,
        resolve_signing_key,
    )

    settings = SigningSettings.from_env()
    key = resolve_signing_key(config.data_dir)
    with database_url(config) as url:
        checkpointer = Checkpointer.from_settings(url, key, settings)
        try:
            stored = checkpointer.checkpoint_now()
        except psycopg.errors.UndefinedTable as error:
            return _missing_tables(error)
    sys.stdout.write(stored.note)
    sys.stdout.flush()
    if args.output:
        export_checkpoint(stored, args.output)
    print(f"checkpoint of {stored.tree_size} leaves, signed {stored.signed_at:%Y-%m-%d %H:%M:%S %Z};"
          f" verify it with --public-key {checkpointer.verifier_key}", file=sys.stderr)
    return 0


def _read_key(value: str) -> str:
    if "+" not in value and Path(value).is_file():
        return Path(value).read_text(encoding="utf-8").strip()
    return value.strip()


def cmd_verify_checkpoint(config: Any, args: argparse.Namespace) -> int:
    import psycopg

    from claims_service.cli import database_url
    from claims_service.ledger.checkpoints import VerifierKey, verify_against_checkpoint

    keys = [VerifierKey.parse(_read_key(k)) for k in args.public_key]  # a bad key: ClaimsError, exit 2
    try:
        note = args.file.read_bytes()
    except OSError as error:
        print(f"claimsctl: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 2
    with database_url(config) as url:
        try:
            audit = verify_against_checkpoint(url, note, keys)
        except psycopg.errors.UndefinedTable as error:
            return _missing_tables(error)
    if args.json:
        print(json.dumps(audit.as_dict()))
        return 0 if audit.ok else 1
    cp = audit.checkpoint
    if cp is None:
        print(f"checkpoint REJECTED: {audit.problems[0]}")
        return 1
    head = f"checkpoint {cp.origin} at {cp.size} leaves, signed by {', '.join(cp.signed_by)}"
    if audit.ok:
        print(f"ledger consistent with {head}: the live tree has {audit.leaves} leaves over {audit.events} events,"
              f" chain intact, consistency proof from {cp.size} to {audit.leaves} verified ({audit.seconds:.2f} s)")
        return 0
    print(f"ledger FAILS {head}:")
    for problem in audit.problems:
        print(f"  - {problem}")
    return 1
