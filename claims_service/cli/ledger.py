"""claimsctl commands an auditor or a dispute team runs against the ledger: verify the chains,
sign and check checkpoints, export and verify claim bundles, re-run a decision, reconcile money.

    claimsctl verify [--json] [--expect-head POSITION:HASH] [--checkpoint FILE --public-key KEY]
    claimsctl checkpoint [-o FILE]                       sign a checkpoint now and print it
    claimsctl verify-checkpoint FILE --public-key KEY    check the live ledger against a kept checkpoint
    claimsctl export-bundle CLAIM_ID [-o FILE]           one claim's events, proofs and signed checkpoint
    claimsctl verify-bundle FILE --public-key KEY [--witness KEY ... --min-witnesses K] [--inclusion-only]
                                                         check a bundle offline
    claimsctl readjudicate CLAIM_ID [--ruleset VERSION]  re-run the recorded rule set; writes nothing
    claimsctl reconcile [--json] [--wait SECONDS]        every cent explained, from the ledger alone
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from claims_service.application import LedgerApplication
from claims_service.adjudication.bundles import export_claim_bundle, verify_claim_bundle
from claims_service.commands import Commands
from claims_service.config import Config
from claims_service.database import database_url
from claims_service.files import write_private
from claims_service.ledger.audit import verify_against_checkpoint
from claims_service.ledger.bundle import bundle_to_json, load_bundle_file
from claims_service.ledger.checkpointer import Checkpointer, export_checkpoint
from claims_service.ledger.cosignature import CosignerKey
from claims_service.observability.progress import record_verification
from claims_service.ledger.note import VerifierKey
from claims_service.ledger.verify import verify_ledger
from claims_service.reconcile import reconcile


def register(commands: Any) -> None:
    """Add the ledger's commands to claimsctl's subcommands."""
    verify = commands.add_parser("verify", help="recompute the hash chains; exit 1 at the first fault")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--expect-head", type=_parse_head, metavar="POSITION:HASH",
                        help="also require this earlier head to be in the chain (catches a cut-off end)")
    verify.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="check the ledger against a signed checkpoint kept earlier (same as verify-checkpoint)")
    verify.add_argument("--public-key", action="append", metavar="KEY",
                        help="with --checkpoint: the verifier key <name>+<key id>+<base64 key>, or a file holding it")
    verify.set_defaults(func=cmd_verify)

    checkpoint = commands.add_parser(
        "checkpoint", help="bring the Merkle tree up to date, sign a checkpoint of it now and print the note")
    checkpoint.add_argument("-o", "--output", type=Path, metavar="FILE", help="also write the signed note to FILE")
    checkpoint.set_defaults(func=cmd_checkpoint)

    audit = commands.add_parser(
        "verify-checkpoint",
        help="check the live ledger against a checkpoint kept earlier (signature, chain, tree, consistency);"
             " exit 1 on any failure")
    audit.add_argument("file", type=Path, metavar="FILE", help="the signed checkpoint note")
    audit.add_argument("--public-key", required=True, action="append", metavar="KEY",
                       help="the log's verifier key <name>+<key id>+<base64 key>, or a file holding it;"
                            " repeat to trust several keys (key rotation)")
    audit.add_argument("--json", action="store_true", help="print one JSON object")
    audit.set_defaults(func=cmd_verify_checkpoint)

    bundle = commands.add_parser("verify-bundle", help="check an exported claim bundle offline (no database)")
    bundle.add_argument("file", metavar="FILE", help="the bundle (JSON, from ExportClaimBundle or export-bundle)")
    bundle.add_argument("--public-key", required=True, action="append", metavar="KEY",
                        help="the ledger's verifier key <name>+<key id>+<base64 key>, or a file holding it;"
                             " repeat to trust several keys (key rotation)")
    bundle.add_argument("--witness", action="append", default=[], metavar="KEY",
                        help="a witness's verifier key (cosignature/v1, <name>+<key id>+<base64 0x04 key>), or a"
                             " file holding it; repeat for several witnesses")
    bundle.add_argument("--min-witnesses", type=int, metavar="K",
                        help="how many of the --witness keys must have cosigned the checkpoint (default: all)")
    bundle.add_argument("--inclusion-only", action="store_true",
                        help="check inclusion only: accept a bundle that does not prove it holds every event"
                             " (format 1); says so")
    bundle.add_argument("--json", action="store_true", help="print one JSON object")
    bundle.set_defaults(func=cmd_verify_bundle)

    export = commands.add_parser("export-bundle", help="write one claim's bundle (events, proofs, signed checkpoint)")
    export.add_argument("claim_id", metavar="CLAIM_ID")
    export.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    export.set_defaults(func=cmd_export_bundle)

    replay = commands.add_parser("readjudicate", help="re-run a claim's recorded adjudication; writes nothing")
    replay.add_argument("claim_id", metavar="CLAIM_ID")
    replay.add_argument("--ruleset", metavar="VERSION", help="what-if: judge the recorded facts by this version")
    replay.set_defaults(func=cmd_readjudicate)

    reconciliation = commands.add_parser(
        "reconcile", help="check every claim's payments and every member's accumulators against the decisions "
                          "and the read models; exit 1 at a difference")
    reconciliation.add_argument("--json", action="store_true", help="print one JSON object")
    reconciliation.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                                help="wait up to this long for the read models to reach the ledger's head (default 30)")
    reconciliation.set_defaults(func=cmd_reconcile)


def parse_hash(text: str) -> bytes:
    """A SHA-256 hash as a person or a program gives it: 64 hex digits (what claimsctl prints) or
    base64 (what the API's bytes fields look like in JSON and grpcurl), standard or URL-safe."""
    text = text.strip()
    try:
        digest = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (ValueError, binascii.Error):
        digest = b""
    if len(digest) != 32:
        raise argparse.ArgumentTypeError("a hash is 64 hex digits or the base64 of 32 bytes (SHA-256)")
    return digest


def _parse_head(text: str) -> tuple[int, bytes]:
    position, sep, digest = text.partition(":")
    if not sep or not position.strip().isdigit():
        raise argparse.ArgumentTypeError("expected POSITION:HASH, the hash in hex or base64")
    return int(position), parse_hash(digest)


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    if args.checkpoint:
        # Against a checkpoint kept earlier: signature, chain, tree and consistency proof.

        if not args.public_key:
            print("claimsctl: --checkpoint needs --public-key KEY (the ledger's verifier key)", file=sys.stderr)
            return 2
        args.file = args.checkpoint
        code = cmd_verify_checkpoint(config, args)
        if args.expect_head is None:
            return code
        # Both were asked for: the kept head must be in the chain too, whatever the checkpoint says.
        with database_url(config) as url:
            report = verify_ledger(url, expect_head=args.expect_head)
        if report.intact:
            print(f"the kept head {args.expect_head[0]}:{args.expect_head[1].hex()[:16]}… is in the chain")
        else:
            print(f"ledger BROKEN at {report.problem} ({report.events} events verified before it)")
        return code or (0 if report.intact else 1)

    with database_url(config) as url:
        report = verify_ledger(url, expect_head=args.expect_head)
        with psycopg.connect(url, autocommit=True) as conn:  # kept for metrics and claimsctl status
            record_verification(conn, report, verified_by="claimsctl verify")
    rate = report.events / report.seconds if report.seconds else 0.0
    summary = {
        "intact": report.intact,
        "events": report.events,
        "streams": report.streams,
        "head_position": report.head_position,
        "head_hash": report.head_hash.hex() if report.head_hash else None,
        "events_per_second": round(rate),
        "problem": None if report.intact else {
            "position": report.problem.position,
            "fault": report.problem.fault.value,
            "detail": report.problem.detail,
        },
    }
    if args.json:
        print(json.dumps(summary))
    elif report.intact:
        head = f"head {report.head_position}:{report.head_hash.hex()}" if report.head_hash else "empty ledger"
        print(f"ledger intact: {report.events} events in {report.streams} streams verified, {head}, {rate:,.0f} events/s")
    else:
        print(f"ledger BROKEN at {report.problem} ({report.events} events verified before it)")
    return 0 if report.intact else 1


def _missing_tables(error: Exception) -> int:
    print(f"claimsctl: {error.__class__.__name__}: {error}".strip(), file=sys.stderr)
    print("claimsctl: the tree or checkpoint tables are missing; run `claimsctl migrate`", file=sys.stderr)
    return 2


def cmd_checkpoint(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url:
        checkpointer = Checkpointer.from_settings(url, config.load_signing_key(), config.signing_settings())
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


def cmd_verify_checkpoint(config: Config, args: argparse.Namespace) -> int:
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


def cmd_verify_bundle(config: Config, args: argparse.Namespace) -> int:
    """Offline: no database, no service; the bundle file, the ledger's public key and the witnesses' keys."""
    keys = [_read_key(k) for k in args.public_key]
    witnesses = [str(CosignerKey.parse(_read_key(k))) for k in args.witness]  # a bad key: ClaimsError, exit 2
    if args.min_witnesses is not None and not 0 <= args.min_witnesses <= len(witnesses):
        print(f"claimsctl: --min-witnesses {args.min_witnesses} needs at least that many --witness keys"
              f" ({len(witnesses)} given)", file=sys.stderr)
        return 2
    report = verify_claim_bundle(load_bundle_file(args.file), keys, witnesses=witnesses,
                                 min_witnesses=args.min_witnesses, inclusion_only=args.inclusion_only)
    if args.json:
        print(json.dumps({"ok": report.ok, "claim_id": report.claim_id, "format_version": report.format_version,
                          "events": report.events, "tree_size": report.tree_size, "complete": report.complete,
                          "cosigned_by": report.cosigned_by, "replay": report.replay, "failures": report.failures}))
    elif report.ok:
        witnessed = f", cosigned by {', '.join(report.cosigned_by)}" if report.cosigned_by else ""
        if args.inclusion_only:
            print(f"INCLUSION ONLY ({report.complete})")
        print(f"bundle verified: claim {report.claim_id}, {report.events} events included in the signed tree of "
              f"{report.tree_size} leaves{witnessed}, chains intact, {report.complete}, decision {report.replay}")
    else:
        print(f"bundle FAILED for claim {report.claim_id}:")
        for failure in report.failures:
            print(f"  - {failure}")
    return 0 if report.ok else 1


@contextmanager
def claims_ledger(url: str) -> Iterator[Commands]:
    """The ledger's commands over a small pool, for one CLI command."""
    ledger = LedgerApplication(url, pool_size=2)
    service = Commands(ledger)
    try:
        yield service
    finally:
        service.close()
        ledger.close()


def cmd_export_bundle(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url:
        checkpointer = Checkpointer.from_settings(url, config.load_signing_key(), config.signing_settings())
        with claims_ledger(url) as service:
            claim = service.own_claim(args.claim_id)
        text = bundle_to_json(export_claim_bundle(url, claim.id, checkpointer))
    if args.output:
        write_private(args.output, text)  # member data: 0600
        print(f"bundle for claim {args.claim_id} written to {args.output}; verifier key: {checkpointer.verifier_key}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_readjudicate(config: Config, args: argparse.Namespace) -> int:
    """Re-run the recorded rule set (or --ruleset) on the recorded facts; writes nothing."""
    with database_url(config) as url, claims_ledger(url) as service:
        replay = service.replay(args.claim_id, args.ruleset)
    what = f"rule set {args.ruleset}" if args.ruleset else "the recorded rule set"
    if replay.identical:
        print(f"identical: re-running {what} on the recorded facts gives the recorded decision "
              f"(position {replay.recorded_position}, paid {replay.replayed['total_paid_cents']} cents)")
    else:
        print(f"different under {what}:")
        for line in replay.differences:
            print(f"  - {line}")
    return 0 if replay.identical or args.ruleset else 1


def cmd_reconcile(config: Config, args: argparse.Namespace) -> int:
    """Every cent explained, from the ledger alone; exit 1 naming the first difference."""
    with database_url(config) as url:
        report = reconcile(url, wait_seconds=args.wait)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.summary())
    return 0 if report.clean else 1
