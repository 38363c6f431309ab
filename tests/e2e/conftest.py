"""End-to-end fixtures: the real service (gRPC server, adjudicator, projections, Merkle tree) on a
fresh PostgreSQL database, reached through a real channel, with one API key per role (the member's
for KEYHOLDER_MEMBER, who is enrolled with both payers)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import grpc
import pytest

from claims.v1 import (
    admin_pb2_grpc,
    dispute_pb2_grpc,
    ledger_pb2_grpc,
    member_pb2_grpc,
    payer_pb2_grpc,
    provider_pb2_grpc,
)
from claims_service.bootstrap import Service, build_service
from claims_service.config import Config
from tests import world

OTHER_PAYER = "PAYER-OTHER"
KEYHOLDER_MEMBER = "M-9001"  # enrolled with each payer before its key is issued


@dataclass
class Client:
    """The stubs, authenticated as one party."""

    channel: grpc.Channel
    key: str

    @property
    def metadata(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.key}"),)

    def __getattr__(self, service: str) -> Any:
        stubs = {
            "provider": provider_pb2_grpc.ProviderServiceStub,
            "payer": payer_pb2_grpc.PayerServiceStub,
            "dispute": dispute_pb2_grpc.DisputeServiceStub,
            "admin": admin_pb2_grpc.AdminServiceStub,
            "ledger": ledger_pb2_grpc.LedgerServiceStub,
            "member": member_pb2_grpc.MemberServiceStub,
        }
        if service not in stubs:
            raise AttributeError(service)
        return _Authenticated(stubs[service](self.channel), self.metadata)


class _Authenticated:
    """Every call on the stub carries the party's credential and a deadline."""

    def __init__(self, stub: Any, metadata: tuple[tuple[str, str]]) -> None:
        self._stub, self._metadata = stub, metadata

    def __getattr__(self, method: str) -> Any:
        call = getattr(self._stub, method)

        def invoke(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("metadata", self._metadata)
            kwargs.setdefault("timeout", 20)
            return call(request, **kwargs)

        invoke.future = lambda request, **kw: call.future(request, metadata=self._metadata, timeout=20, **kw)  # type: ignore[attr-defined]
        return invoke


@dataclass
class Parties:
    """The running service (connected as the service role, which cannot alter the ledger), a channel
    to it, a client per party; `database_url` is the same database as its superuser (a DBA or an
    attacker: what tamper drills connect as)."""

    service: Service
    channel: grpc.Channel
    admin: Client
    provider: Client
    other_provider: Client
    payer: Client
    other_payer: Client
    dispute: Client
    member: Client
    keys: dict[str, str]
    database_url: str

    @property
    def fhir_url(self) -> str:
        """The FHIR endpoint's base, e.g. http://127.0.0.1:40123/fhir."""
        assert self.service.fhir is not None
        return f"http://127.0.0.1:{self.service.fhir.port}/fhir"


def register_parties(commands: Any) -> None:
    """What an administrator does before issuing the parties' keys, as keys are issued only for
    parties the ledger knows: register both providers (as `set_up` registers the first) and enrol
    a member with each payer (not the member `set_up` enrols)."""
    commands.register_provider(actor=world.ADMIN, npi=world.NPI, name="Riverside", taxonomy="207Q00000X")
    commands.register_provider(actor=world.ADMIN, npi=world.OTHER_NPI, name="Lakeside", taxonomy="207Q00000X")
    for payer in (world.PAYER, OTHER_PAYER):
        commands.enroll_member(actor=world.ADMIN, member_id=KEYHOLDER_MEMBER, payer_id=payer, plan_id=world.PLAN,
                               effective_date=date(2026, 1, 1), terms=world.TERMS)


@pytest.fixture
def parties(database_url: str, service_database_url: str, owner_database_url: str,
            tmp_path: Path) -> Iterator[Parties]:
    # Every service runs its FHIR endpoint too, on a free port (tests/e2e/test_fhir.py reads it).
    config = Config(database_url=service_database_url, migration_database_url=owner_database_url, data_dir=tmp_path,
                    grpc_addr="127.0.0.1:0", fhir_addr="127.0.0.1:0")
    service = build_service(config, service_database_url)
    service.start()
    register_parties(service.commands)
    keys = {}
    for name, role, party in (
        ("admin", "admin", ""), ("provider", "provider", world.NPI), ("other_provider", "provider", world.OTHER_NPI),
        ("payer", "payer", world.PAYER), ("other_payer", "payer", OTHER_PAYER), ("dispute", "dispute", ""),
        ("member", "member", KEYHOLDER_MEMBER),
    ):
        keys[name] = service.commands.create_api_key(actor="admin:test", role=role, party_id=party, label=name)[0]
    channel = grpc.insecure_channel(f"127.0.0.1:{service.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield Parties(service, channel, **{name: Client(channel, key) for name, key in keys.items()}, keys=keys,
                      database_url=database_url)
    finally:
        channel.close()
        service.stop(grace=1.0)
