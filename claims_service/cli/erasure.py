"""claimsctl erase-member and member-keys: erasing a member's data (crypto-shredding) and the
key-encryption keys of the member data keys (README, "Erasure").

    claimsctl erase-member MEMBER_ID [--json] [--wait SECONDS]
    claimsctl member-keys status [--json]
    claimsctl member-keys add-kek          a new KEK in the KEK file, the newest from now on
    claimsctl member-keys rewrap           every data key wrapped under the newest KEK

Like the ledger's other commands, these act on the database itself (no running service needed);
a running service stops using an erased member's key within CLAIMS_MEMBER_KEY_CACHE_SECONDS.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import psycopg

from claims_service.cli.ledger import claims_ledger
from claims_service.config import Config
from claims_service.database import database_url
from claims_service.erasure import Eraser, wait_for_read_models
from claims_service.keys.kek import LocalKeyEncryptionKeys, add_kek, kek_file_path
from claims_service.keys.store import kek_usage, rewrap_all

ACTOR = "admin:claimsctl"


def register(commands: Any) -> None:
    erase = commands.add_parser("erase-member", help="erase a member's data: destroy their data key, purge the read "
                                "models and their attachments, record the erasure (every proof still verifies)")
    erase.add_argument("member_id", metavar="MEMBER_ID")
    erase.add_argument("--json", action="store_true", help="print one JSON object")
    erase.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                       help="wait this long for the read models to pass the erasure (default 10)")
    erase.set_defaults(func=cmd_erase)

    keys = commands.add_parser("member-keys", help="the key-encryption keys of the member data keys")
    sub = keys.add_subparsers(dest="member_keys_command", required=True)
    status = sub.add_parser("status", help="the KEKs configured, and how many data keys each wraps")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_status)
    sub.add_parser("add-kek", help="append a new KEK to the KEK file (CLAIMS_MEMBER_KEK_FILE or the data "
                   "directory's); new data keys are wrapped under it").set_defaults(func=cmd_add_kek)
    sub.add_parser("rewrap", help="wrap every data key under the newest KEK (then older KEKs can be retired)"
                   ).set_defaults(func=cmd_rewrap)


def cmd_erase(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url, claims_ledger(url) as commands:
        report = Eraser(commands.ledger, commands._save, config.open_blob_store()).erase(args.member_id, actor=ACTOR)
        purged = wait_for_read_models(url, report.receipt.position, args.wait) if args.wait > 0 else False
    if args.json:
        print(json.dumps({**report.as_json(), "read_models_purged": purged}))
    else:
        print(report.summary())
        if not report.already_erased and args.wait > 0 and not purged:
            print(f"the read models had not passed the erasure within {args.wait:g} s (are the workers running?); "
                  "they purge its streams when they do", file=sys.stderr)
    return 0


def cmd_status(config: Config, args: argparse.Namespace) -> int:
    keks = config.load_member_keks()
    with database_url(config) as url, psycopg.connect(url, autocommit=True) as conn:
        usage = kek_usage(conn)
        members, erased = conn.execute("SELECT count(*), count(erased_at) FROM member_keys").fetchone()
    ids = keks.ids if isinstance(keks, LocalKeyEncryptionKeys) else [keks.newest]
    found = {"newest_kek": keks.newest, "keks": ids, "data_keys_by_kek": usage, "members": members, "erased": erased,
             "unknown_keks": sorted(set(usage) - set(ids)) if isinstance(keks, LocalKeyEncryptionKeys) else []}
    if args.json:
        print(json.dumps(found))
        return 0
    print(f"{members} member data keys ({erased} destroyed by erasures); newest KEK {keks.newest}")
    for kek_id in sorted(set(ids) | set(usage)):
        note = "" if kek_id in ids else "  NOT CONFIGURED: these keys cannot be opened"
        print(f"  {kek_id}: wraps {usage.get(kek_id, 0)} data key(s){note}")
    return 1 if found["unknown_keks"] else 0


def cmd_add_kek(config: Config, _args: argparse.Namespace) -> int:
    if config.member_keks is not None or config.member_kek_provider:
        print("claimsctl: the KEKs come from CLAIMS_MEMBER_KEKS or a KMS here: add one there", file=sys.stderr)
        return 2
    settings = config.member_key_settings()
    path = kek_file_path(settings)
    config.load_member_keks()  # the file exists (made on first use) and parses
    kek_id = add_kek(path)
    print(f"added KEK {kek_id} to {path}: new member data keys are wrapped under it; "
          "`claimsctl member-keys rewrap` wraps the existing ones (restart running services first)")
    return 0


def cmd_rewrap(config: Config, _args: argparse.Namespace) -> int:
    keks = config.load_member_keks()
    with database_url(config) as url, psycopg.connect(url) as conn, conn.transaction():
        count = rewrap_all(conn, keks)
    print(f"{count} member data key(s) wrapped under KEK {keks.newest}")
    return 0
