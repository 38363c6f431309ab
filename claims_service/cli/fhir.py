"""claimsctl fhir: one claim's FHIR resource as JSON, read from the database's read models.

    claimsctl fhir eob CLAIM_ID              the ExplanationOfBenefit (CARIN BB professional)
    claimsctl fhir claim-response CLAIM_ID   the ClaimResponse

Like the other operator commands (`readjudicate`, `export-bundle`), it reads the database itself
and sees every claim: who may read what is the HTTP endpoint's business (docs/FHIR.md), and a
member or provider asks there with their own API key. The resource is exactly what
`GET /fhir/ExplanationOfBenefit/{id}` answers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import psycopg

from claims_service.config import Config
from claims_service.database import database_url
from claims_service.fhir.reads import unrestricted
from claims_service.fhir.resources import claim_response, dumps, explanation_of_benefit

BUILDERS = {"eob": explanation_of_benefit, "claim-response": claim_response}


def register(subparsers: Any) -> None:
    """Add ``fhir eob|claim-response`` to claimsctl's subcommands."""
    fhir = subparsers.add_parser("fhir", help="a claim's FHIR R4 resource as JSON (from the database)")
    commands = fhir.add_subparsers(dest="fhir_command", required=True)
    for name, what in (("eob", "ExplanationOfBenefit"), ("claim-response", "ClaimResponse")):
        command = commands.add_parser(name, help=f"print the claim's {what}")
        command.add_argument("claim_id", help="the claim id (a UUID)")
        command.add_argument("--compact", action="store_true", help="one line, no indentation")
        command.set_defaults(func=cmd_resource, builder=BUILDERS[name])


def cmd_resource(config: Config, args: argparse.Namespace) -> int:
    with database_url(config) as url, psycopg.connect(url, autocommit=True) as conn:
        record = unrestricted(conn, args.claim_id)
    sys.stdout.write(dumps(args.builder(record), indent=not args.compact).decode() + "\n")
    return 0
