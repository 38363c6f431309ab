"""claimsctl x12: send an 837 to the running service; write a payment run's 835.

    claimsctl x12 submit FILE [--api-key KEY] [-o DIR]
        over gRPC (CLAIMS_GRPC_ADDR) as the provider whose key it is (--api-key, else
        CLAIMS_API_KEY); writes FILE.999, FILE.277ca (and FILE.ta1 when one comes back) beside FILE
        or into DIR, prints one line per claim; exit 0 when everything was accepted, 1 otherwise.
    claimsctl x12 remittance --payer PAYER_ID [--run RUN_ID] [--provider NPI] -o FILE --payer-name ...
        on the database itself (like reconcile): the 835 of the payer's run (its latest without
        --run), one transaction set per provider paid; the payer's name, tax id, address and
        contact are given (the ledger keeps none).

The files hold member data: they are written 0600, as every such file the service writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc

from claims.v1 import provider_pb2, provider_pb2_grpc
from claims_service.config import Config
from claims_service.database import database_url
from claims_service.files import write_private
from claims_service.x12.remittance import RemittancePayer, remittance_835


def register(commands: Any) -> None:
    """Add ``x12 submit|remittance`` to claimsctl's subcommands."""
    x12 = commands.add_parser("x12", help="X12: send an 837, write a payment run's 835")
    sub = x12.add_subparsers(dest="x12_command", required=True)

    submit = sub.add_parser("submit", help="send an 837P interchange to the service; write its 999 and 277CA")
    submit.add_argument("file", metavar="FILE", type=Path, help="the 837 (ISA ... IEA)")
    submit.add_argument("--api-key", default=os.environ.get("CLAIMS_API_KEY", ""),
                        help="the provider's API key (default: CLAIMS_API_KEY)")
    submit.add_argument("-o", "--output", type=Path, metavar="DIR", help="write the acknowledgements here (default: beside FILE)")
    submit.set_defaults(func=cmd_submit)

    remittance = sub.add_parser("remittance", help="write the 835 of a payer's payment run (on the database)")
    remittance.add_argument("--payer", required=True, metavar="PAYER_ID", help="the payer whose run it is")
    remittance.add_argument("--run", default="", metavar="RUN_ID", help="the run (IssuePayments' run_id); default: the latest")
    remittance.add_argument("--provider", default="", metavar="NPI", help="only this provider's 835")
    remittance.add_argument("-o", "--output", required=True, type=Path, metavar="FILE", help="where to write the 835")
    remittance.add_argument("--payer-name", required=True, help="the payer's name (1000A N102)")
    remittance.add_argument("--payer-tax-id", required=True, help="its federal tax id, nine digits (TRN03)")
    remittance.add_argument("--payer-address", required=True, help="its street address (N301)")
    remittance.add_argument("--payer-city", required=True)
    remittance.add_argument("--payer-state", required=True, help="two letters")
    remittance.add_argument("--payer-zip", required=True, help="five or nine digits")
    remittance.add_argument("--payer-contact", required=True, help="e-mail, https:// address or telephone (PER*BL)")
    remittance.set_defaults(func=cmd_remittance)


def cmd_submit(config: Config, args: argparse.Namespace) -> int:
    if not args.api_key:
        print("claimsctl x12 submit: give the provider's API key (--api-key or CLAIMS_API_KEY)", file=sys.stderr)
        return 2
    data = args.file.read_bytes()
    channel = grpc.insecure_channel(config.grpc_addr, options=[("grpc.max_send_message_length", 4 * 1024 * 1024 + 1024)])
    try:
        stub = provider_pb2_grpc.ProviderServiceStub(channel)
        answer = stub.SubmitX12(provider_pb2.SubmitX12Request(interchange=data),
                                metadata=(("authorization", f"Bearer {args.api_key}"),), timeout=300)
    except grpc.RpcError as error:
        print(f"claimsctl x12 submit: {error.code().name}: {error.details()}", file=sys.stderr)
        return 2
    finally:
        channel.close()
    directory = args.output or args.file.parent
    directory.mkdir(parents=True, exist_ok=True)
    for suffix, content in (("ta1", answer.ta1), ("999", answer.ack_999), ("277ca", answer.ack_277ca)):
        if content:
            path = write_private(directory / f"{args.file.name}.{suffix}", content)
            print(f"wrote {path}", file=sys.stderr)
    for claim in answer.claims:
        if claim.accepted:
            print(f"{claim.patient_control_number}\tfrequency {claim.frequency_code}\taccepted {claim.status}\t"
                  f"claim {claim.claim_id}\tposition {claim.receipt.position}")
        else:
            print(f"{claim.patient_control_number}\tfrequency {claim.frequency_code}\trejected {claim.status}\t"
                  f"{claim.field}: {claim.description}")
    rejected = not answer.ack_999 or any(not c.accepted for c in answer.claims) \
        or any(marker in answer.ack_999 for marker in (b"IK5*E", b"IK5*R", b"AK9*R", b"AK9*P", b"AK9*E"))
    if not answer.ack_999:
        print("the interchange was rejected: see the TA1", file=sys.stderr)
    return 1 if rejected else 0


def cmd_remittance(config: Config, args: argparse.Namespace) -> int:
    import psycopg
    from psycopg.rows import dict_row

    payer = RemittancePayer(payer_id=args.payer, name=args.payer_name, tax_id=args.payer_tax_id,
                            address_line=args.payer_address, city=args.payer_city, state=args.payer_state,
                            postal_code=args.payer_zip, contact=args.payer_contact)
    with database_url(config) as url, psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        text, run, summaries = remittance_835(conn, payer, run_id=args.run or None, provider_id=args.provider or None,
                                              now=lambda: datetime.now(UTC))
    path = write_private(args.output, text)
    print(f"wrote {path}: run {run}", file=sys.stderr)
    for s in summaries:
        print(f"{s.provider_id}\ttrace {s.trace_number}\tpaid {dollars(s.amount_cents)}\tclaims {s.claims}\t"
              f"provider adjustments {dollars(s.provider_adjustment_cents)}")
    return 0


def dollars(cents: int) -> str:
    whole, part = divmod(abs(cents), 100)
    return f"{'-' if cents < 0 else ''}{whole}.{part:02d}"
