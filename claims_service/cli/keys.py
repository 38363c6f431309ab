"""claimsctl keys: issue, list and revoke API keys, on the ledger itself (like the ledger's other
commands, through `Commands`; no running service is needed, so the first admin key of a new
deployment comes from here).

    claimsctl keys create --role ROLE [--party-id ID] [--label TEXT] [--ttl DURATION | --expires-at INSTANT] [--json]
    claimsctl keys list [--json]
    claimsctl keys revoke KEY_ID --reason TEXT [--json]

`create` prints the key once, alone on stdout (`KEY=$(claimsctl keys create ...)`), what it issued
on stderr; the ledger keeps only the hash of its secret. A key is issued only for a party the
ledger knows (a registered provider's NPI, a payer with an enrolled member or a contract). A
revocation here reaches a running service within its cache time (`api/auth.py`, CACHE_SECONDS).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

from claims_service.api.converters import instant, parse_instant
from claims_service.cli.ledger import claims_ledger
from claims_service.config import Config
from claims_service.database import database_url
from claims_service.domain.apikey import ROLES, ApiKey

ACTOR = "admin:claimsctl"
DURATION = re.compile(r"([0-9]{1,9})([smhd]?)")
UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def register(commands: Any) -> None:
    """Add ``keys create|list|revoke`` to claimsctl's subcommands."""
    keys = commands.add_parser("keys", help="API keys: create, list, revoke")
    sub = keys.add_subparsers(dest="keys_command", required=True)

    create = sub.add_parser("create", help="issue a key for a role and party; prints the key once")
    create.add_argument("--role", required=True, choices=ROLES, help="the role the key acts in")
    create.add_argument("--party-id", "--party", dest="party_id", default="",
                        help="the provider's NPI, the payer id or the member id (none for dispute and admin keys)")
    create.add_argument("--label", default="", help="a label to recognise the key by")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--ttl", type=_duration, metavar="DURATION",
                        help="expire after this long: seconds, or a number with s, m, h or d (e.g. 90d)")
    expiry.add_argument("--expires-at", metavar="INSTANT", help='expire at this RFC 3339 instant, e.g. "2027-01-31T00:00:00Z"')
    create.add_argument("--json", action="store_true", help="print one JSON object (with the key)")
    create.set_defaults(func=cmd_create)

    listing = sub.add_parser("list", help="every key with its role, party, label and state (never a secret)")
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    listing.set_defaults(func=cmd_list)

    revoke = sub.add_parser("revoke", help="revoke a key for good (revoking it again writes nothing)")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (the 12 characters after ck_)")
    revoke.add_argument("--reason", required=True, help="why, for the record")
    revoke.add_argument("--json", action="store_true", help="print one JSON object")
    revoke.set_defaults(func=cmd_revoke)


def _duration(text: str) -> int:
    match = DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError("expected a positive number of seconds, or a number with s, m, h or d (e.g. 90d)")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def cmd_create(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url, claims_ledger(url) as commands:
        expires_at = commands.key_expiry(expires_at=parse_instant(args.expires_at or "", "expires_at"),
                                         ttl_seconds=args.ttl or 0)
        api_key, key_id, receipt = commands.create_api_key(actor=ACTOR, role=args.role, party_id=args.party_id,
                                                           label=args.label, expires_at=expires_at)
    if args.json:
        print(json.dumps({"api_key": api_key, "key_id": key_id, "role": args.role, "party_id": args.party_id,
                          "expires_at": instant(expires_at), "position": receipt.position}))
        return 0
    print(api_key)
    party = f" for {args.party_id}" if args.party_id else ""
    until = f", expires {instant(expires_at)}" if expires_at else ", never expires"
    print(f"issued {args.role} key {key_id}{party}{until}; ledger position {receipt.position}. "
          "The key is shown only this once.", file=sys.stderr)
    return 0


def _key_json(key: ApiKey, now: Any) -> dict[str, Any]:
    return {
        "key_id": key.key_id, "role": key.role, "party_id": key.party_id, "label": key.label,
        "state": "revoked" if key.revoked else "expired" if key.expired(now) else "active",
        "created_at": instant(key.created_on), "created_by": key.issued_by, "expires_at": instant(key.expires_at),
        "revoked_at": instant(key.revoked_at), "revoke_reason": key.revoke_reason,
    }


def cmd_list(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url, claims_ledger(url) as commands:
        now, after, rows = commands.now(), 0, []
        while True:
            page = commands.api_keys(after_position=after, limit=500)
            rows.extend(_key_json(key, now) for _, key in page)
            if len(page) < 500:
                break
            after = page[-1][0]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'key id':<12}  {'role':<8}  {'party':<16}  {'state':<7}  {'created':<20}  {'expires':<20}  label")
    for row in rows:
        print(f"{row['key_id']:<12}  {row['role']:<8}  {row['party_id'] or '-':<16}  {row['state']:<7}  "
              f"{row['created_at'][:19] + 'Z':<20}  {(row['expires_at'][:19] + 'Z') if row['expires_at'] else 'never':<20}"
              f"  {row['label']}")
    return 0


def cmd_revoke(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url, claims_ledger(url) as commands:
        receipt, already = commands.revoke_api_key(actor=ACTOR, key_id=args.key_id, reason=args.reason)
    if args.json:
        print(json.dumps({"key_id": args.key_id, "already_revoked": already, "position": receipt.position}))
    elif already:
        print(f"key {args.key_id} was revoked already (ledger position {receipt.position}); nothing written")
    else:
        print(f"revoked key {args.key_id}; ledger position {receipt.position}. A running service refuses it within seconds.")
    return 0
