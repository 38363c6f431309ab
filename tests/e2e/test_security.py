"""Security checks over a real channel and a real database: no call without a credential; keys
stored only as hashes and compared in constant time; a provider can neither read nor write as
another; the service's database role can append events but neither change them nor get past the
append-only guard (and the README's SQL grants it exactly that); secrets and PHI never reach the
logs or the messages a client gets back."""

from __future__ import annotations

import logging
import re
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from psycopg import sql
from psycopg.conninfo import make_conninfo

from claims.v1 import admin_pb2, common_pb2, ledger_pb2, payer_pb2, provider_pb2
from claims_service.api import auth
from claims_service.application import LedgerApplication
from claims_service.commands import Commands
from claims_service.database import ledger_bypass
from claims_service.domain.apikey import secret_hash
from claims_service.errors import UnauthenticatedError
from claims_service.migrate import migrate
from tests import world
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided
from tests.e2e.test_errors import field_violations, ledger_size
from tests.e2e.test_fuzz import METHODS, filled, invoke, plausible

KEY_TOKEN = re.compile(r"ck_[a-z0-9]{12}_[A-Z2-7]{52}")
PHI = "SSN-123-45-6789"


def _secret(api_key: str) -> str:
    return api_key.rsplit("_", 1)[1]


# --- no credential, no call -----------------------------------------------------------------------


def test_no_call_succeeds_without_a_valid_credential_and_health_and_reflection_need_none(parties):
    """Every method of every service, with a request that would otherwise succeed (or garbage):
    UNAUTHENTICATED, with a message, and nothing written."""
    set_up(parties)
    mine = parties.provider.provider.SubmitClaim(claim_request("mine"))
    wait_decided(parties, mine.claim_id, mine.receipt.position)
    time.sleep(0.5)
    before = ledger_size(parties)
    unknown_key = "ck_000000000000_" + "A" * 52
    known_id_wrong_secret = parties.admin.key.rsplit("_", 1)[0] + "_" + "B" * 52
    credentials = [(), (("authorization", "Bearer"),), (("authorization", f"Bearer {unknown_key}"),),
                   (("authorization", f"Bearer {known_id_wrong_secret}"),),
                   (("authorization", f"Basic {parties.admin.key}"),), (("authorization", parties.admin.key),),
                   (("x-api-key", parties.admin.key),)]
    for method in METHODS:
        valid = filled(method.request.DESCRIPTOR, plausible(mine.claim_id), copies=1).SerializeToString()
        for payload in (valid, b"\xff\xff\xff\x0f garbage"):
            for metadata in credentials:
                code, details = invoke(parties.channel, method, payload, metadata)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (method.path, metadata, code, details)
                assert details.strip(), (method.path, metadata)
    assert ledger_size(parties) == before

    # Health and reflection are open by design (probes, tooling).
    health = health_pb2_grpc.HealthStub(parties.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(parties.channel)
    asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    answers = list(reflection.ServerReflectionInfo(asked, timeout=5))
    listed = {s.name for s in answers[0].list_services_response.service}
    assert {m.service for m in METHODS} <= listed


# --- keys ------------------------------------------------------------------------------------------


def _user_tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c"
        " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2").fetchall()


def test_api_keys_are_stored_only_as_hashes(parties):
    created = parties.admin.admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(
        role=common_pb2.ROLE_PAYER, party_id=world.PAYER, label="stored hashed"))
    secret = _secret(created.api_key)
    # The key works: it is the one the ledger knows.
    parties_key = type(parties.payer)(parties.channel, created.api_key)
    parties_key.payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest())
    time.sleep(1.0)  # let the projections see the Issued event too

    keys = [created.api_key] + [getattr(parties, p).key for p in ("admin", "provider", "payer", "dispute")]
    with psycopg.connect(parties.service.ledger.database_url) as conn:
        tables = _user_tables(conn)
        assert ("public", "ledger_events") in tables and len(tables) > 10
        scanned = 0
        for schema, table in tables:
            query = sql.SQL("SELECT t::text FROM {}.{} t").format(sql.Identifier(schema), sql.Identifier(table))
            rows = conn.execute(query)
            for (row,) in rows:
                scanned += 1
                for key in keys:
                    for needle in (_secret(key), key):
                        found = needle in row or needle.encode().hex() in row  # bytea shows as hex
                        assert not found, f"{needle[:8]}… found in {table}"
        # What is stored instead: the SHA-256 of the secret, in the key's Issued event.
        states = b"".join(bytes(s) for (s,) in conn.execute("SELECT state FROM ledger_events WHERE topic LIKE %s",
                                                            ("%ApiKey.Issued%",)))
    assert secret_hash(secret).encode() in states
    assert scanned > 20


def test_keys_are_compared_in_constant_time_and_that_comparison_decides(parties, monkeypatch):
    """The stored hash is compared with hmac.compare_digest (also for an unknown key id, so that
    timing does not tell known ids from unknown ones), and nothing else decides."""
    real = auth.hmac.compare_digest
    calls: list[tuple[Any, Any]] = []
    verdict: dict[str, bool | None] = {"forced": None}

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b) if verdict["forced"] is None else bool(verdict["forced"])

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    key = parties.provider.key
    key_id, secret = key.split("_")[1], _secret(key)
    wrong = f"ck_{key_id}_{'A' * 52}"
    unknown = f"ck_{'0' * 12}_{secret}"

    def authenticate(token: str) -> auth.Principal:
        return auth.Authenticator(parties.service.ledger).authenticate(f"Bearer {token}")

    principal = authenticate(key)
    assert (principal.role, principal.party_id) == ("provider", world.NPI)
    assert calls == [(secret_hash(secret), secret_hash(secret))]  # hashes compared, never the secret
    for token in (wrong, unknown):
        calls.clear()
        with pytest.raises(UnauthenticatedError):
            authenticate(token)
        assert len(calls) == 1 and all(len(x) == 64 for x in calls[0]), calls
    # compare_digest's answer is the answer: forced false, the right key fails; forced true, a
    # wrong secret for a known id passes (so no other comparison short-circuits it).
    verdict["forced"] = False
    with pytest.raises(UnauthenticatedError):
        authenticate(key)
    verdict["forced"] = True
    assert authenticate(wrong).party_id == world.NPI
    with pytest.raises(UnauthenticatedError):  # an unknown id never passes, whatever the comparison says
        authenticate(unknown)


# --- one provider, another's claims -----------------------------------------------------------------


def _shape(details: str, *values: str) -> str:
    for value in values:
        details = details.replace(value, "<id>")
    return details


def test_a_provider_can_neither_read_nor_write_as_another(parties):
    set_up(parties)
    mine = parties.provider.provider.SubmitClaim(claim_request("mine"))
    claim = wait_decided(parties, mine.claim_id, mine.receipt.position)
    assert claim.status == common_pb2.CLAIM_STATUS_ADJUDICATED
    time.sleep(0.5)
    issued = parties.payer.payer.IssuePayments(payer_pb2.IssuePaymentsRequest())
    payment = issued.payments[0]
    remittance = parties.provider.provider.GetRemittance(provider_pb2.GetRemittanceRequest(
        claim_id=mine.claim_id, min_position=issued.receipt.position))
    assert [p.payment_id for p in remittance.payments] == [payment.payment_id]  # the owner sees it
    time.sleep(0.5)
    before = ledger_size(parties)

    other = parties.other_provider
    missing = str(uuid.uuid4())

    def correction(claim_id: str) -> provider_pb2.CorrectClaimRequest:
        body = claim_request("correction")
        return provider_pb2.CorrectClaimRequest(
            claim_id=claim_id, idempotency_key="correction", member_id=body.member_id, payer_id=body.payer_id,
            diagnosis_codes=body.diagnosis_codes, place_of_service=body.place_of_service, lines=body.lines)

    attempts = {
        "GetClaim": lambda cid: other.provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=cid)),
        "VoidClaim": lambda cid: other.provider.VoidClaim(provider_pb2.VoidClaimRequest(claim_id=cid, reason="mine")),
        "CorrectClaim": lambda cid: other.provider.CorrectClaim(correction(cid)),
        "ExportClaimBundle": lambda cid: other.ledger.ExportClaimBundle(
            ledger_pb2.ExportClaimBundleRequest(claim_id=cid)),
    }
    for name, attempt in attempts.items():
        answers = []
        for claim_id in (mine.claim_id, missing):
            with pytest.raises(grpc.RpcError) as refused:
                attempt(claim_id)
            answers.append((refused.value.code(), _shape(refused.value.details(), claim_id)))
        assert answers[0][0] == grpc.StatusCode.NOT_FOUND, (name, answers)
        assert answers[0] == answers[1], f"{name}: another's claim and a missing one differ: {answers}"

    # Remittances: by claim, by payment and by trace number, the same answer as for nothing at all.
    for field, value, absent in (("claim_id", mine.claim_id, missing), ("payment_id", payment.payment_id, "P-missing"),
                                 ("trace_number", payment.trace_number, "0000000000")):
        answers = []
        for v in (value, absent):
            try:
                found = other.provider.GetRemittance(provider_pb2.GetRemittanceRequest(**{field: v}))
                answers.append(("OK", len(found.payments)))
            except grpc.RpcError as error:
                answers.append((error.code(), _shape(error.details(), v)))
        assert answers[0] == answers[1], f"GetRemittance({field}): another's and a missing one differ: {answers}"
        assert answers[0][0] == grpc.StatusCode.NOT_FOUND, answers
    listed = other.provider.ListClaims(provider_pb2.ListClaimsRequest(min_position=before))
    assert mine.claim_id not in [c.claim_id for c in listed.claims]

    # Nothing was written, and the claim is as it was.
    assert ledger_size(parties) == before
    assert parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=mine.claim_id)).claim.status \
        == common_pb2.CLAIM_STATUS_ADJUDICATED

    # A claim is the credential's provider's: the request has no field to name another, and a
    # smuggled unknown field ("provider_id" = the other NPI, as field 99) changes nothing.
    fields = set(provider_pb2.SubmitClaimRequest.DESCRIPTOR.fields_by_name)
    assert not fields & {"provider_id", "npi", "billing_provider", "provider"}
    smuggled = (claim_request("smuggled").SerializeToString()
                + b"\x9a\x06" + bytes([len(world.OTHER_NPI)]) + world.OTHER_NPI.encode())  # field 99, length-delimited
    submit = parties.channel.unary_unary("/claims.v1.ProviderService/SubmitClaim", request_serializer=None,
                                         response_deserializer=provider_pb2.SubmitClaimResponse.FromString)
    submitted = submit(smuggled, metadata=parties.provider.metadata, timeout=20)
    stored = parties.service.commands.own_claim(submitted.claim_id)
    assert stored.provider_id == world.NPI
    assert parties.provider.provider.GetClaim(provider_pb2.GetClaimRequest(
        claim_id=submitted.claim_id, min_position=submitted.receipt.position)).claim.provider_id == world.NPI
    with pytest.raises(grpc.RpcError) as refused:
        other.provider.GetClaim(provider_pb2.GetClaimRequest(claim_id=submitted.claim_id,
                                                             min_position=submitted.receipt.position))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


# --- the database roles -----------------------------------------------------------------------------

LEDGER_TABLES = ("ledger_events", "ledger_leaves", "merkle_nodes", "ledger_checkpoints")
GUARDS = {"ledger_events": "ledger_events_guard", "ledger_leaves": "ledger_leaves_guard",
          "merkle_nodes": "merkle_nodes_guard", "ledger_checkpoints": "ledger_checkpoints_guard"}


def readme_sql() -> tuple[list[str], list[str]]:
    """The statements of the README's "Production database roles" section: the superuser's (its
    first SQL block) and the owner's grants (the block with the GRANTs)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Production database roles", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```sql")[1:]]

    def statements(block: str) -> list[str]:
        text = "\n".join(line.split("--", 1)[0] for line in block.splitlines())
        found, current, quoted = [], "", False
        for piece in re.split(r"(\$\$|;)", text):  # a ; inside $$ ... $$ (a DO block) ends nothing
            if piece == "$$":
                quoted = not quoted
            if piece == ";" and not quoted:
                found.append(" ".join(current.split()))
                current = ""
            else:
                current += piece
        return [f for f in found + [" ".join(current.split())] if f]

    setup, grants = statements(blocks[0]), statements(blocks[1])
    assert any(s.startswith("GRANT") for s in grants) and all(not s.startswith("GRANT") for s in setup), blocks
    return setup, grants


def readme_grants() -> list[str]:
    """The GRANT statements of the README's "Production database roles" section."""
    return [s for s in readme_sql()[1] if s.upper().startswith("GRANT")]


def _privileges(url: str, role: str) -> dict[str, set[str]]:
    """Every privilege `role` holds in the database: on each table and sequence of public, on the
    schema, and by default on what the owner creates later."""
    with psycopg.connect(url) as conn:
        held: dict[str, set[str]] = {}
        for name, kind, acl in conn.execute(
                "SELECT c.relname, c.relkind, c.relacl FROM pg_class c"
                " WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'S')"):
            held[f"{kind}:{name}"] = {row[0] for row in conn.execute(
                "SELECT privilege_type FROM aclexplode(%s::aclitem[]) WHERE grantee = %s::regrole",
                (acl, role))} if acl else set()
        held["schema:public"] = {p for p in ("USAGE", "CREATE") if conn.execute(
            "SELECT has_schema_privilege(%s, 'public', %s)", (role, p)).fetchone()[0]}
        for kind, acl in conn.execute("SELECT defaclobjtype, defaclacl FROM pg_default_acl"
                                      " WHERE defaclnamespace = 'public'::regnamespace"):
            held[f"default:{kind}"] = {row[0] for row in conn.execute(
                "SELECT privilege_type FROM aclexplode(%s::aclitem[]) WHERE grantee = %s::regrole", (acl, role))}
    return held


@pytest.fixture
def roles(pg_roles):
    if pg_roles is None:
        pytest.skip("the server's admin may not create roles (CLAIMS_DATABASE_URL): no split to test")
    return pg_roles


def test_the_service_role_appends_but_cannot_update_or_delete_events(database_url, service_database_url, roles):
    # The normal path works with these grants: the service appends (hash-linked, under its lock).
    ledger = LedgerApplication(service_database_url, pool_size=2)
    commands = Commands(ledger)
    try:
        commands.register_provider(actor=world.ADMIN, npi=world.NPI, name="Riverside", taxonomy="207Q00000X")
        _, _, receipt = commands.create_api_key(actor=world.ADMIN, role="dispute", party_id="", label="as the service")
    finally:
        commands.close()
        ledger.close()
    assert receipt.position >= 2 and len(receipt.event_hash) == 32

    # UPDATE, DELETE and TRUNCATE are refused by the privilege system itself, before any trigger.
    # (For the owner, who has the privileges, the append-only trigger refuses them: see
    # tests/integration/test_hash_chain.py::test_the_database_refuses_update_delete_and_truncate.)
    with psycopg.connect(service_database_url, autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == roles.service
        events = conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0]
        assert events == 2
        for statement in ("UPDATE ledger_events SET topic = 'x'",
                          "UPDATE ledger_events SET state = state WHERE notification_id = 1",
                          "DELETE FROM ledger_events",
                          "DELETE FROM ledger_events WHERE notification_id = 1",
                          "TRUNCATE ledger_events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table ledger_events"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM ledger_events").fetchone()[0] == events


@pytest.mark.parametrize("table", LEDGER_TABLES)
def test_the_service_role_can_neither_change_nor_unguard_a_ledger_table(database_url, service_database_url, roles,
                                                                         table):
    """Each way past the append-only guard, tried as the service's role: each refused with
    InsufficientPrivilege (SQLSTATE 42501), the message saying which check refused it."""
    guard = GUARDS[table]
    with psycopg.connect(database_url) as conn:
        (column,) = conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = 1",
                                 (table,)).fetchone()
    denied, not_owner = f"permission denied for table {table}", f"must be owner of (table|relation) {table}"
    attempts = {
        f"UPDATE {table} SET {column} = {column}": denied,
        f"DELETE FROM {table}": denied,
        f"TRUNCATE {table}": denied,
        f"ALTER TABLE {table} ADD COLUMN forged bytea": not_owner,
        f"ALTER TABLE {table} RENAME TO {table}_old": not_owner,
        f"ALTER TABLE {table} DISABLE TRIGGER ALL": not_owner,
        f"ALTER TABLE {table} DISABLE TRIGGER {guard}": not_owner,
        f"ALTER TABLE {table} DISABLE TRIGGER USER": not_owner,
        f"DROP TRIGGER {guard} ON {table}": not_owner,
        f"DROP TABLE {table}": not_owner,
        f"CREATE TRIGGER forged BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION ledger_refuse_rewrite()":
            denied,
        f"ALTER TABLE {table} OWNER TO CURRENT_USER": not_owner,
        # The guard's functions: replacing one with a no-op would unguard every table.
        "ALTER FUNCTION ledger_refuse_change() RENAME TO unguarded": "must be owner of function ledger_refuse_change",
        "ALTER FUNCTION ledger_refuse_rewrite() RENAME TO unguarded": "must be owner of function ledger_refuse_rewrite",
        "CREATE OR REPLACE FUNCTION ledger_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RETURN NEW; END $$": "permission denied for schema public",
        # Triggers skipped for the session: a superuser's parameter.
        "SET session_replication_role = replica": 'permission denied to set parameter "session_replication_role"',
    }
    with psycopg.connect(service_database_url, autocommit=True) as conn:
        for statement, refusal in attempts.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal):
                conn.execute(statement)
    with psycopg.connect(database_url) as conn:
        enabled = dict(conn.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass"
                                    " AND NOT tgisinternal", (table,)).fetchall())
        assert enabled[guard] == "O" and all(state == "O" for state in enabled.values()), enabled
        assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass",
                            (table,)).fetchone()[0] == roles.owner


def test_the_owner_is_no_superuser_but_could_disable_the_guard_so_the_service_is_not_the_owner(
        database_url, owner_database_url, service_database_url, roles):
    """Why the service must not connect as the owner (docs/LEDGER.md, "The append-only guard"):
    DISABLE TRIGGER needs only ownership of the table."""
    with psycopg.connect(owner_database_url) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
        with conn.transaction(force_rollback=True):
            conn.execute("ALTER TABLE ledger_events DISABLE TRIGGER ledger_events_guard")
            conn.execute("DELETE FROM ledger_events")  # accepted: the guard is off in this transaction
    assert ledger_bypass(owner_database_url) == f"role {roles.owner} owns the ledger's tables"
    assert ledger_bypass(database_url) is not None and "superuser" in ledger_bypass(database_url)
    assert ledger_bypass(service_database_url) is None


def test_the_readme_sql_grants_a_service_role_exactly_what_claimsctl_migrate_does(
        pg_admin_url, database_url, roles):
    """The DBA's way (README, run by hand) and the service's (`grant_service_role`, which the
    template database's owner ran) give the service's role the same privileges, no more."""
    setup, grants = readme_sql()
    suffix = uuid.uuid4().hex[:8]
    names = {"claims_owner": f"readme_owner_{suffix}", "claims_service": f"readme_service_{suffix}",
             "claims": f"readme_claims_{suffix}"}

    def ours(statement: str) -> str:
        return re.sub(r"\b(claims_owner|claims_service|claims)\b", lambda m: f'"{names[m.group(1)]}"', statement)

    admin = psycopg.connect(pg_admin_url, autocommit=True)
    try:
        for statement in setup:
            admin.execute(ours(statement))
        for role in (names["claims_owner"], names["claims_service"]):
            admin.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(roles.password)))
        database = make_conninfo(pg_admin_url, dbname=names["claims"])
        owner = make_conninfo(database, user=names["claims_owner"], password=roles.password)
        migrate(owner)
        with psycopg.connect(owner) as conn, conn.transaction():
            for statement in grants:
                conn.execute(ours(statement))
        by_hand = _privileges(database, names["claims_service"])
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names["claims"])))
        for role in (names["claims_service"], names["claims_owner"]):
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.close()
    by_migrate = _privileges(database_url, roles.service)
    assert by_hand == by_migrate
    assert all(by_migrate[f"r:{table}"] == {"SELECT", "INSERT"} for table in LEDGER_TABLES)
    assert by_migrate["r:claim_status"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert by_migrate["r:ledger_tracking"] == {"SELECT", "INSERT", "UPDATE"}
    assert by_migrate["schema:public"] == {"USAGE"}
    assert by_migrate["default:r"] == {"SELECT", "INSERT", "UPDATE", "DELETE"}


# --- logs and messages ------------------------------------------------------------------------------


@pytest.fixture
def every_log(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> pytest.LogCaptureFixture:
    """Every record of this process at DEBUG. Set up before the service, so that the worker process
    inherits the level, and a file (capfd's) as its stderr, where it logs: see `worker_log`."""
    caplog.set_level(logging.DEBUG)
    for name in ("claims_service", "projections"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def worker_log(parties: Any) -> str:
    """All the worker processes have logged (their stderr, one file, read from the start through /proc)."""
    assert parties.service.workers.restarts == 0
    stderr = Path(f"/proc/{parties.service.workers.pid_of('adjudicator')}/fd/2")
    assert stat.S_ISREG(stderr.stat().st_mode), "the worker process's stderr is not a file"
    return stderr.read_bytes().decode(errors="replace")


def test_secrets_and_phi_never_reach_the_logs_or_messages(every_log, parties):
    set_up(parties)
    created = parties.admin.admin.CreateApiKey(admin_pb2.CreateApiKeyRequest(
        role=common_pb2.ROLE_PROVIDER, party_id=world.OTHER_NPI, label="logged?"))
    mine = parties.provider.provider.SubmitClaim(claim_request("logs"))
    wait_decided(parties, mine.claim_id, mine.receipt.position)
    parties.payer.payer.ListPendedClaims(payer_pb2.ListPendedClaimsRequest())
    parties.dispute.ledger.GetPublicKey(ledger_pb2.GetPublicKeyRequest())

    # Invalid credentials: an unknown key, a known id with a wrong secret, a key in the wrong scheme.
    stub = parties.provider.provider._stub
    wrong = created.api_key.rsplit("_", 1)[0] + "_" + "Q" * 52
    unknown = "ck_abcdefabcdef_" + _secret(created.api_key)
    for header in (f"Bearer {wrong}", f"Bearer {unknown}", f"Basic {created.api_key}", created.api_key):
        with pytest.raises(grpc.RpcError) as refused:
            stub.ListClaims(provider_pb2.ListClaimsRequest(), metadata=(("authorization", header),), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert _secret(created.api_key) not in refused.value.details() and "Q" * 52 not in refused.value.details()

    # PHI in otherwise invalid claims: the field path comes back, the value does not.
    bad_member = claim_request("phi-1")
    bad_member.member_id = PHI + "\x07"  # not printable: member_id is refused
    long_member = claim_request("phi-2")
    long_member.member_id = PHI * 10  # too long: member_id is refused
    bad_code = claim_request("phi-3", code="NOT-A-CODE")
    bad_code.member_id = PHI  # a valid id, in a claim refused for its procedure code
    refused_for = ((bad_member, "member_id"), (long_member, "member_id"), (bad_code, "lines[0].procedure_code"))
    for request, field in refused_for:
        with pytest.raises(grpc.RpcError) as refused:
            parties.provider.provider.SubmitClaim(request)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(refused.value), refused.value.details()
        trailers = "".join(f"{k}={v!r}" for k, v in refused.value.trailing_metadata() or ())
        for where in (refused.value.details(), trailers):
            assert PHI not in where and "123-45-6789" not in where, where
    time.sleep(1.0)  # let the workers log whatever they log about all this

    secrets = [created.api_key, _secret(created.api_key), unknown, wrong.rsplit("_", 1)[1]]
    secrets += [getattr(parties, p).key
                for p in ("admin", "provider", "other_provider", "payer", "other_payer", "dispute")]
    secrets += [_secret(s) for s in secrets if s.startswith("ck_")]
    texts = []
    for record in every_log.records:
        texts += [record.getMessage(), repr(record.args), str(record.msg), record.exc_text or ""]
    workers = worker_log(parties)
    texts.append(workers)
    logged = "\n".join(texts)
    # The capture saw the calls (this process) and the worker process's log.
    assert "principal=provider:" + world.NPI in logged and "code=UNAUTHENTICATED" in logged
    assert "workers running" in workers, workers[-2000:]
    # (Checked as booleans, so that a failure does not print the secret it found.)
    for secret in secrets:
        leaked = secret in logged
        assert not leaked, f"a secret ({secret[:6]}…) reached the logs"
    leaked = KEY_TOKEN.search(logged) is not None
    assert not leaked, "an API key reached the logs"
    leaked = PHI in logged or "123-45-6789" in logged
    assert not leaked, "PHI reached the logs"
