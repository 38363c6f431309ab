"""claimsctl projections: status, rebuild and drop-previous of the read models.

    claimsctl projections status [--json]
    claimsctl projections rebuild NAME [--keep-previous] [--batch-size N]
    claimsctl projections drop-previous NAME

A rebuild runs while the service keeps serving: readers answer from the live tables until the
rebuilt ones are swapped in atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from claims_service.config import Config
from claims_service.database import database_url, owner_database_url
from projections.catalog import NAMES
from projections.rebuild import REBUILD_BATCH_SIZE, drop_previous, rebuild, status


def register(subparsers: Any) -> None:
    """Add ``projections status|rebuild|drop-previous`` to claimsctl's subcommands."""
    projections = subparsers.add_parser("projections", help="read models: status, rebuild, drop-previous")
    commands = projections.add_subparsers(dest="projections_command", required=True)
    status_parser = commands.add_parser("status", help="each projection's position, the ledger head and the lag")
    status_parser.add_argument("--json", action="store_true", help="print one JSON array")
    status_parser.set_defaults(func=cmd_status)
    rebuild_parser = commands.add_parser("rebuild", help="rebuild a projection from position 0 and swap it in while serving")
    rebuild_parser.add_argument("name", choices=NAMES, help="the projection to rebuild")
    rebuild_parser.add_argument("--batch-size", type=int, default=REBUILD_BATCH_SIZE, help="events per transaction")
    rebuild_parser.add_argument("--keep-previous", action="store_true", help="keep the replaced tables as <table>_previous")
    rebuild_parser.set_defaults(func=cmd_rebuild)
    drop = commands.add_parser("drop-previous", help="drop the <table>_previous copies a --keep-previous rebuild left")
    drop.add_argument("name", choices=NAMES, help="the projection whose previous tables to drop")
    drop.set_defaults(func=cmd_drop_previous)


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url:
        rows = status(url)
    if args.json:
        print(json.dumps([{"name": s.name, "position": s.position, "head": s.head, "lag": s.lag,
                           "rebuild_position": s.rebuild_position} for s in rows]))
        return 0
    width = max(len(s.name) for s in rows)
    print(f"{'projection':<{width}}  {'position':>10}  {'head':>10}  {'lag':>8}")
    for s in rows:
        rebuilding = f"  (rebuild at {s.rebuild_position})" if s.rebuild_position is not None else ""
        print(f"{s.name:<{width}}  {s.position:>10}  {s.head:>10}  {s.lag:>8}{rebuilding}")
    return 0


def _not_the_owner(error: Exception) -> int:
    print(f"claimsctl: {error}".strip(), file=sys.stderr)
    print("claimsctl: a rebuild creates, renames and drops the read model's tables: run it as their owner "
          "(CLAIMS_MIGRATION_DATABASE_URL)", file=sys.stderr)
    return 2


def cmd_rebuild(config: Config, args: argparse.Namespace) -> int:
    # As the owner: the rebuilt tables are created (and the replaced ones dropped) by the role
    # that owns them; the service keeps its privileges on them (default privileges).
    with owner_database_url(config) as url:
        try:
            report = rebuild(url, args.name, batch_size=args.batch_size, keep_previous=args.keep_previous)
        except psycopg.errors.InsufficientPrivilege as error:
            return _not_the_owner(error)
    print(f"rebuilt {report.name}: {report.events} events in {report.seconds:.1f} s "
          f"({report.events_per_second:,.0f} events/s), swapped in at position {report.position}")
    return 0


def cmd_drop_previous(config: Config, args: argparse.Namespace) -> int:
    with owner_database_url(config) as url:
        try:
            dropped = drop_previous(url, args.name)
        except psycopg.errors.InsufficientPrivilege as error:
            return _not_the_owner(error)
    print(f"dropped {', '.join(dropped)}" if dropped else f"{args.name}: no <table>_previous tables to drop")
    return 0
