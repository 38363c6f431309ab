"""Bad input against every RPC over a real channel: odd field values (a sweep, then hypothesis),
garbled protobuf bytes, and oversized requests. Whatever a client sends, the answer is a status
it can read (never INTERNAL or UNKNOWN) with a message, the server keeps serving, and a refused
call writes nothing to the ledger.

The methods are enumerated from the generated descriptors (every `*_pb2` module of claims.v1),
so a new RPC is fuzzed without touching this file; a new service must be given a party below.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

import claims.v1
from claims.v1 import admin_pb2, common_pb2, dispute_pb2
from claims_service.api.auth import SERVICE_ROLES
from claims_service.server import MAX_MESSAGE_BYTES
from tests import world
from tests.e2e.test_claim_flow import claim_request, set_up, wait_decided
from tests.e2e.test_errors import field_violations, ledger_size

# The party each service is called as: one allowed to call it, so that the input (not the
# credential) decides the answer.
SERVICE_PARTY = {
    "claims.v1.ProviderService": "provider",
    "claims.v1.PayerService": "payer",
    "claims.v1.DisputeService": "dispute",
    "claims.v1.AdminService": "admin",
    "claims.v1.AttachmentService": "payer",
    "claims.v1.MemberService": "member",
    "claims.v1.LedgerService": "dispute",
}

READ_DEADLINE = 0.4  # a read may wait for a position that never comes: UNAVAILABLE or DEADLINE_EXCEEDED then
WRITE_DEADLINE = 15.0  # a write that takes this long on a tiny ledger hangs; it does not refuse
STREAM_DEADLINE = 0.4  # a stream whose input is fine runs until its deadline
STREAM_MESSAGES = 3
NEVER = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
WRONG_PARTY = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
WAITED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    descriptor: MethodDescriptor
    request: type[Message]
    response: type[Message]

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def streaming(self) -> bool:
        return self.descriptor.server_streaming

    @property
    def writes(self) -> bool:
        """Every write returns a receipt; a method whose response has none only reads."""
        return "receipt" in self.descriptor.output_type.fields_by_name

    @property
    def party(self) -> str:
        return SERVICE_PARTY[self.service]

    def __str__(self) -> str:
        return self.path


def all_methods() -> list[Method]:
    methods = []
    for info in pkgutil.iter_modules(claims.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"claims.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods.append(Method(
                    service.full_name, method.name, method,
                    message_factory.GetMessageClass(method.input_type),
                    message_factory.GetMessageClass(method.output_type),
                ))
    return sorted(methods, key=lambda m: m.path)


METHODS = all_methods()


def test_every_service_is_enumerated_and_has_a_party_allowed_to_call_it():
    assert {m.service for m in METHODS} == set(SERVICE_PARTY) == set(SERVICE_ROLES), \
        "a new service needs a party in SERVICE_PARTY"
    for service, party in SERVICE_PARTY.items():
        assert party in SERVICE_ROLES[service]
    # A client stream is fuzzed here as a stream of one message (as a unary call sends it);
    # tests/e2e/test_attachments.py sends it longer streams.
    assert {m.name for m in METHODS if m.descriptor.client_streaming} == {"UploadAttachment"}, \
        "a new client stream needs fuzzing of its own"
    names = {m.name for m in METHODS}
    assert len(METHODS) >= 32 and {"SubmitClaim", "SubscribeAdjudications", "WatchClaims", "CreateApiKey"} <= names


# --- calling any method with any bytes, and watching the ledger ---------------------------------


def invoke(channel: grpc.Channel, method: Method, payload: bytes, metadata: Any = (),
           timeout: float | None = None) -> tuple[grpc.StatusCode, str]:
    """Send raw bytes to a method (a stream: read a few messages); the status and message it ends with."""
    if method.streaming:
        call = channel.unary_stream(method.path, request_serializer=None,
                                    response_deserializer=method.response.FromString)
        stream = call(payload, metadata=metadata, timeout=timeout or STREAM_DEADLINE)
        try:
            for n, _ in enumerate(stream, 1):
                if n >= STREAM_MESSAGES:
                    stream.cancel()
                    break
        except grpc.RpcError:
            pass
        return stream.code(), stream.details() or ""
    unary = channel.unary_unary(method.path, request_serializer=None, response_deserializer=method.response.FromString)
    try:
        unary(payload, metadata=metadata, timeout=timeout or (WRITE_DEADLINE if method.writes else READ_DEADLINE))
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


class LedgerWatch:
    """The ledger's head, and a way to wait until the background workers have nothing left to do."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(database_url, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def head(self) -> tuple[int, int]:
        return self.conn.execute("SELECT count(*), coalesce(max(notification_id), 0) FROM ledger_events").fetchone()

    def _followers(self) -> tuple[tuple[str, int], ...]:
        return tuple(self.conn.execute(
            "SELECT application_name, notification_id FROM ledger_tracking"
            " WHERE application_name <> '__migration__' AND application_name NOT LIKE '%.rebuild'"
            " ORDER BY 1").fetchall())

    def settle(self, timeout: float = 30.0) -> tuple[int, int]:
        """Wait until nothing is pending (the head and every follower stopped moving, caught up); the head."""
        deadline = time.monotonic() + timeout
        last, stable_since = None, time.monotonic()
        while True:
            now = (self.head(), self._followers())
            if now != last:
                last, stable_since = now, time.monotonic()
            (_, position), followers = now
            caught_up = bool(followers) and all(p >= position for _, p in followers)
            quiet = time.monotonic() - stable_since
            if (caught_up and quiet >= 0.2) or quiet >= 5.0:
                return now[0]
            assert time.monotonic() < deadline, f"the workers never settled: {now}"
            time.sleep(0.05)


def _note(text: str) -> None:
    try:
        note(text)  # shown with a falsifying example
    except InvalidArgument:
        pass  # not inside a hypothesis test


class Checker:
    """Calls a method as its party and checks the outcome: a readable, non-internal status with a
    message, and no write for a call that failed (the world is at rest between calls)."""

    def __init__(self, parties: Any, ledger: LedgerWatch) -> None:
        self.parties, self.ledger = parties, ledger
        self.head = ledger.settle()
        self.seen: dict[str, set[grpc.StatusCode]] = {}

    def check(self, method: Method, payload: bytes, what: str = "", timeout: float | None = None) -> grpc.StatusCode:
        before = self.head
        metadata = getattr(self.parties, method.party).metadata
        code, details = invoke(self.parties.channel, method, payload, metadata, timeout)
        self.seen.setdefault(method.path, set()).add(code)
        call = f"{method.path}({what})" if what else method.path
        _note(f"{call} -> {code.name}: {details[:300]!r}")
        assert code not in NEVER, f"{call} answered {code.name}: {details!r}"
        assert code not in WRONG_PARTY, f"{call} refused its own party: {code.name} {details!r}"
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:  # else the client could not read the status it was sent
            assert len(payload) > MAX_MESSAGE_BYTES, f"{call} ({len(payload)} bytes) answered {code.name}: {details!r}"
        stream_ended = method.streaming and code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED)
        if code == grpc.StatusCode.OK or stream_ended:
            if method.writes:
                self.head = self.ledger.settle()  # a write may set the workers going: wait for them
            else:
                self.head = self.ledger.head()  # a read of a member's data records it (the access log)
            return code
        assert details.strip(), f"{call} answered {code.name} without a message"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            assert not method.writes, f"{call} hung past its {WRITE_DEADLINE} s deadline"
        assert self.ledger.head() == before, \
            f"{call} failed with {code.name} ({details[:300]!r}) but wrote to the ledger"
        return code


@dataclass
class Fuzzing:
    parties: Any
    ledger: LedgerWatch
    checker: Checker
    claim_id: str
    known: list[str]


@pytest.fixture
def fuzzing(parties) -> Iterator[Fuzzing]:
    """The demo world with one decided claim in it, every worker idle; and the real ids of this
    world, which fuzzed requests borrow to get past the first checks."""
    set_up(parties)
    submitted = parties.provider.provider.SubmitClaim(claim_request("fuzz-base"))
    wait_decided(parties, submitted.claim_id, submitted.receipt.position)
    ledger = LedgerWatch(parties.service.ledger.database_url)
    known = [world.MEMBER, world.PAYER, world.NPI, world.OTHER_NPI, world.PLAN, world.CONTRACT, "2026.1",
             "99213", "E119", "11", "fuzz-base", submitted.claim_id, str(uuid.UUID(int=0))]
    try:
        yield Fuzzing(parties, ledger, Checker(parties, ledger), submitted.claim_id, known)
    finally:
        ledger.close()


# --- odd values ------------------------------------------------------------------------------------

INT64 = (-(2**63), 2**63 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT64 = (0, 2**64 - 1)
UINT32 = (0, 2**32 - 1)
INT_BOUNDS = {FieldDescriptor.CPPTYPE_INT64: INT64, FieldDescriptor.CPPTYPE_INT32: INT32,
              FieldDescriptor.CPPTYPE_UINT64: UINT64, FieldDescriptor.CPPTYPE_UINT32: UINT32}
EXTREMES = [-(2**63), 2**63 - 1, -(2**31), 2**31 - 1, 2**32, 2**53 + 1, -1, 0, 1, 10**12, -(10**12), 9_999_999_999]
DATES = ["0001-01-01", "9999-12-31", "2026-02-30", "2026-13-45", "2026-00-10", "", "2026-1-5", "20261015",
         "2026-10-15", "1900-01-01", "2199-12-31", "+2026-10-15", "2026-10-15T00:00:00Z", "２０２６-１０-１５"]
NASTY = [
    "", " ", "'; DROP TABLE ledger_events; --", "' OR '1'='1", "1; DELETE FROM ledger_events", "\\", "%", "_",
    "\u202eevil\u202c", "\u200f\u200e", "\x00", "a\x00b", "\U0001F600\U0001F9B7\u200d\U0001F468", "e\u0301\u0301\u0301",
    "Z\u0338\u0322\u031b\u032a\u0353", "\ufeff", "\ufffd", "\n\r\t", "%s%n%x{0}", "${jndi:ldap://x}",
    "../../etc/passwd",
    "<script>alert(1)</script>", "x" * 20_000, "9" * 400, "null", "NaN", "-1", "１２３", "İı", "SSN-123-45-6789",
]
SHORT_NASTY = ["'; DROP TABLE ledger_events; --", "\x00", "\u202eevil\u202c", "e\u0301\u0301", "x" * 5_000, ""]
ODD_ENUMS = [99, -1, 2**31 - 1, -(2**31)]


def _is_date(field: FieldDescriptor) -> bool:
    return "date" in field.name or field.name.startswith(("valid_", "received_", "revoked_on"))


def _is_map(field: FieldDescriptor) -> bool:
    return field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _assign(message: Message, field: FieldDescriptor, value: Any) -> None:
    """Set a field: a scalar, a message, a list for a repeated field, a dict for a map."""
    target = getattr(message, field.name)
    if _is_map(field):
        nested = field.message_type.fields_by_name["value"].cpp_type == FieldDescriptor.CPPTYPE_MESSAGE
        for k, v in value.items():
            if nested:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif field.is_repeated and field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        for v in value:
            target.add().CopyFrom(v)
    elif field.is_repeated:
        target.extend(value)
    elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def filled(descriptor: Descriptor, choose: Callable[[FieldDescriptor], Any], *, copies: int = 2,
           depth: int = 0) -> Message:
    """A message with each scalar field set by `choose` (None: left unset), nested messages filled
    the same way, repeated fields `copies` times."""
    message = message_factory.GetMessageClass(descriptor)()
    for field in descriptor.fields:
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if depth >= 3:
                continue
            if _is_map(field):
                key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
                k = choose(key)
                v = (filled(value.message_type, choose, copies=copies, depth=depth + 1) if value.message_type
                     else choose(value))
                if k is not None and v is not None:
                    _assign(message, field, {k: v})
                continue
            one = filled(field.message_type, choose, copies=copies, depth=depth + 1)
            _assign(message, field, [one] * copies if field.is_repeated else one)
        else:
            one = choose(field)
            if one is not None:
                _assign(message, field, [one] * copies if field.is_repeated else one)
    return message


def odd_values(field: FieldDescriptor) -> list[Any]:
    """Every odd value of the field's type; for a message, the message filled with odd values."""
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        if _is_map(field):
            entry = field.message_type.fields_by_name
            return [{k: v} for k, v in zip(odd_values(entry["key"]), odd_values(entry["value"]) * 10, strict=False)]
        return [filled(field.message_type, lambda f, i=i: _nth(odd_values(f), i)) for i in range(len(SHORT_NASTY))]
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return [b"", b"\x00" * 32, b"\xff" * 33, b"\x00" * 100_000]
        return (DATES if _is_date(field) else []) + NASTY
    if cpp == FieldDescriptor.CPPTYPE_ENUM:  # open enums: numbers nobody declared arrive as they are
        return ODD_ENUMS
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return [True]
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return [float("nan"), float("inf"), -float("inf"), -0.0, 1e308]
    low, high = INT_BOUNDS[cpp]
    return sorted({n for n in EXTREMES + [low, high] if low <= n <= high})


def _nth(values: list[Any], i: int) -> Any:
    return values[i % len(values)]


def plausible(claim_id: str, salt: str = "") -> Callable[[FieldDescriptor], Any]:
    """A value this world accepts for a field (by its name), or None (unset); `salt` keeps the
    idempotency keys of different methods apart."""
    by_name = {
        # EraseMember is fuzzed on a member the world does not have: erasing the world's would
        # turn every later call about them into FAILED_PRECONDITION.
        "member_id": "M-NOT-IN-THE-WORLD" if salt == "EraseMember" else world.MEMBER, "payer_id": world.PAYER, "npi": world.NPI, "provider_id": world.NPI,
        "claim_id": claim_id, "plan_id": world.PLAN, "contract_id": world.CONTRACT, "version": "2026.1",
        "ruleset_version": "2026.1", "procedure_code": "99213", "place_of_service": "11", "diagnosis_codes": "E119",
        "idempotency_key": f"fuzz-plausible-{salt}", "plan_year": 2026, "units": 1, "line_number": 1,
        "diagnosis_pointers": 1,
        "billed_cents": 12_000, "reason": "checking", "note": "checked", "visit_id": "fuzz-visit",
        "dispute_id": f"D-{claim_id[:8]}-1", "resolution": 1, "role": 1, "party_id": world.OTHER_NPI, "label": "fuzz",
        "allowed_cents": 9_000, "paid_cents": 1_500, "group": "CO", "carc": "50",
    }

    def choose(field: FieldDescriptor) -> Any:
        value = by_name.get(field.name)
        if value is not None and isinstance(value, str) == (field.cpp_type == FieldDescriptor.CPPTYPE_STRING):
            return value
        if _is_date(field) and field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
            return "2026-10-15"
        return None
    return choose


# --- hypothesis strategies ---------------------------------------------------------------------------


def _ints(bounds: tuple[int, int]) -> st.SearchStrategy[int]:
    low, high = bounds
    return st.one_of(st.integers(max(low, -3), min(high, 60)),
                     st.sampled_from(sorted({n for n in EXTREMES + [low, high] if low <= n <= high})))


def _scalars(field: FieldDescriptor, known: list[str]) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if field.type == FieldDescriptor.TYPE_BYTES:
            return st.one_of(st.binary(max_size=64), st.sampled_from([b"", b"\x00" * 32, b"\xff" * 33]))
        pool = (DATES if _is_date(field) else []) + NASTY + known
        return st.one_of(st.sampled_from(pool), st.text(max_size=30))
    if cpp in INT_BOUNDS:
        return _ints(INT_BOUNDS[cpp])
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp in (FieldDescriptor.CPPTYPE_DOUBLE, FieldDescriptor.CPPTYPE_FLOAT):
        return st.floats(width=32 if cpp == FieldDescriptor.CPPTYPE_FLOAT else 64)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values] + ODD_ENUMS)
    raise AssertionError(f"no strategy for {field.full_name}")


def _values(field: FieldDescriptor, known: list[str], depth: int) -> st.SearchStrategy[Any]:
    """Values for a field: one, a list of 0..60 (4 when nested) for a repeated one, a dict for a map."""
    def one(f: FieldDescriptor) -> st.SearchStrategy[Any]:
        if f.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            return messages(f.message_type, known, depth + 1)
        return _scalars(f, known)

    most = 60 if depth == 0 else 4
    if _is_map(field):
        entry = field.message_type.fields_by_name
        return st.dictionaries(one(entry["key"]), one(entry["value"]), max_size=most)
    if field.is_repeated:
        return st.lists(one(field), max_size=most)
    return one(field)


def messages(descriptor: Descriptor, known: list[str], depth: int = 0,
             base: Message | None = None) -> st.SearchStrategy[Message]:
    """Messages of this type: each field left alone (unset, or as in `base`) or set to random values."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 3:
        return st.just(cls())
    fields = {f.name: st.none() | _values(f, known, depth) for f in descriptor.fields}

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        if base is not None:
            message.CopyFrom(base)
        for field in descriptor.fields:
            if values[field.name] is not None:
                message.ClearField(field.name)
                _assign(message, field, values[field.name])
        return message

    return st.fixed_dictionaries(fields).map(build)


FUZZ = settings(
    max_examples=24, deadline=None, derandomize=True, database=None, print_blob=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.large_base_example],
)


# --- the tests ---------------------------------------------------------------------------------------


def test_every_odd_value_in_every_field_of_every_method(fuzzing):
    """First a plausible request (most succeed: the success paths are checked too), then one field
    at a time, every odd value of its type (SQL, unicode oddities, very long, NUL, int64 extremes,
    year 1 and 9999, February 30th, enum 99, nested messages full of them): on an otherwise empty
    request for a write (so nothing but that value could make it succeed), on the plausible one for
    a read (so that the value reaches the query)."""
    checker, calls, failures = fuzzing.checker, 0, []
    for method in METHODS:
        likely = filled(method.request.DESCRIPTOR, plausible(fuzzing.claim_id, method.name), copies=1)
        checker.check(method, likely.SerializeToString(), what="a plausible request")
        base = method.request() if method.writes else likely
        checker.check(method, base.SerializeToString(), what="the base request")
        for field in method.request.DESCRIPTOR.fields:
            waited = False
            for value in odd_values(field):
                if waited and isinstance(value, int) and value > 10**6:
                    continue  # every position beyond the head waits alike: once per field is enough
                request = method.request()
                request.CopyFrom(base)
                request.ClearField(field.name)
                _assign(request, field, [value] * 2 if field.is_repeated and not _is_map(field) else value)
                calls += 1
                try:
                    code = checker.check(method, request.SerializeToString(), what=f"{field.name}={value!r:.100}")
                except AssertionError as failed:
                    failures.append(str(failed).splitlines()[0][:400])
                    checker.head = fuzzing.ledger.settle()
                    continue
                waited = waited or (code in WAITED and isinstance(value, int))
    assert not failures, f"{len(failures)} of {calls} calls went wrong:\n" + "\n".join(failures[:40])
    assert calls > 1000
    succeeded = {m.name for m in METHODS if grpc.StatusCode.OK in checker.seen[m.path] and m.writes}
    assert {"RecordVisit", "SubmitClaim", "CorrectClaim", "OpenDispute", "CreateApiKey"} <= succeeded, succeeded


def _fuzz_fields(fuzzing: Fuzzing, method: Method) -> None:
    plausible_request = filled(method.request.DESCRIPTOR, plausible(fuzzing.claim_id, method.name), copies=1)
    requests = st.one_of(messages(method.request.DESCRIPTOR, fuzzing.known),
                         messages(method.request.DESCRIPTOR, fuzzing.known, base=plausible_request))

    @settings(FUZZ, max_examples=5 if method.streaming else FUZZ.max_examples)
    @given(request=requests)
    def fuzz(request: Message) -> None:
        fuzzing.checker.check(method, request.SerializeToString())

    fuzz()


def test_random_field_values_are_refused_properly_and_write_nothing(fuzzing):
    """Random mixes: every field unset, random, or (half the time) as in a plausible request; repeated
    fields of 0..60 items; nested messages; strings borrowed from this world's real ids."""
    for method in METHODS:
        _fuzz_fields(fuzzing, method)
    seen = fuzzing.checker.seen
    assert set(seen) == {m.path for m in METHODS}
    assert sum(grpc.StatusCode.OK in codes for codes in seen.values()) >= 8, seen  # some got through to the end
    assert sum(codes != {grpc.StatusCode.OK} for codes in seen.values()) >= len(METHODS) - 2, seen


# --- garbled bytes -------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


GARBAGE = [
    b"\xff\xff\xff\x0f garbage",
    b"\x08" + b"\xff" * 10 + b"\x01",  # a varint longer than 64 bits
    b"\x0a\x7fabc",  # a length beyond the end
    b"\x0a\x80\x80\x80\x80\x10",  # a length of 2**32
    b"\x0b" * 300 + b"\x0c" * 300,  # groups nested beyond the recursion limit
    b"\x0b" * 5,  # groups never closed
    b"\x00\x01",  # field number 0
    b"\x0f\x01",  # wire type 7
    b"\x80",  # a tag cut short
    _tag(2**29 - 1, 2) + b"\x01x",  # the highest field number, unknown
]


def crafted(method: Method, other: Method, claim_id: str) -> list[tuple[str, bytes]]:
    """Deterministic bad payloads for a method: garbage, invalid UTF-8 in each string field,
    truncations of a valid request, and valid messages of other types."""
    payloads = [(f"garbage {i}", g) for i, g in enumerate(GARBAGE)]
    for field in method.request.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            payloads.append((f"invalid UTF-8 in {field.name}", _tag(field.number, 2) + b"\x04\xff\xfe\xc0\x80"))
    valid = filled(method.request.DESCRIPTOR, plausible(claim_id), copies=1).SerializeToString()
    full = filled(method.request.DESCRIPTOR, lambda f: _nth(odd_values(f), 2)).SerializeToString()
    for name, data in (("plausible", valid), ("odd", full)):
        for cut in sorted({1, len(data) // 3, len(data) // 2, len(data) - 1}):
            if 0 < cut < len(data):
                payloads.append((f"{name} request cut at {cut} of {len(data)}", data[:cut]))
    for message in (other.request.DESCRIPTOR, method.response.DESCRIPTOR):
        payloads.append((f"a {message.name}", filled(message, plausible(claim_id), copies=1).SerializeToString()))
    return payloads


def _fuzz_bytes(fuzzing: Fuzzing, method: Method) -> None:
    valid = filled(method.request.DESCRIPTOR, lambda f: _nth(odd_values(f), 0)).SerializeToString() or b"\x08\x01"

    @st.composite
    def flipped(draw: st.DrawFn) -> bytes:
        data = bytearray(valid)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)

    @settings(FUZZ, max_examples=4 if method.streaming else 10)
    @given(payload=st.one_of(st.binary(min_size=1, max_size=300), flipped()))
    def fuzz(payload: bytes) -> None:
        fuzzing.checker.check(method, payload, what=f"{payload[:60]!r}")

    fuzz()


def test_garbled_bytes_are_refused_without_a_crash_or_a_write(fuzzing):
    checker = fuzzing.checker
    for i, method in enumerate(METHODS):
        for what, payload in crafted(method, METHODS[(i + 1) % len(METHODS)], fuzzing.claim_id):
            code = checker.check(method, payload, what=what)
            if what.startswith("invalid UTF-8") or what == "garbage 0":
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.path, what, code)
        _fuzz_bytes(fuzzing, method)
    # The server is still there and whole: it answers a health check without a credential, the
    # worker process never died, and the ledger verifies.
    parties = fuzzing.parties
    health = health_pb2_grpc.HealthStub(parties.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert parties.service.workers.restarts == 0
    verified = parties.dispute.dispute.VerifyLedger(dispute_pb2.VerifyLedgerRequest())
    assert verified.intact and verified.events == fuzzing.ledger.head()[0]


# --- oversized ---------------------------------------------------------------------------------------


def test_oversized_requests_are_refused_and_write_nothing(fuzzing):
    parties, checker = fuzzing.parties, fuzzing.checker
    # Over the receive limit, to every method: an unknown field, so the type does not matter.
    over = _tag(1000, 2) + _varint(MAX_MESSAGE_BYTES + 1) + b"x" * (MAX_MESSAGE_BYTES + 1)
    for method in METHODS:
        code = checker.check(method, over, what="a request over the receive limit", timeout=10)
        assert code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT), (method.path, code)

    before = ledger_size(parties)
    # 10,000 diagnosis codes, each well-formed: refused for their number.
    many = claim_request("ten-thousand-diagnoses")
    many.diagnosis_codes[:] = [f"E11{n:04d}" for n in range(10_000)]
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.SubmitClaim(many)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "diagnosis_codes" in field_violations(refused.value)
    # 50 lines (the most allowed), each wrong in several ways: hundreds of violations still arrive as
    # INVALID_ARGUMENT with field violations (bounded to fit in the trailers), not a transport error.
    messy = claim_request("fifty-messy-lines")
    del messy.lines[:]
    messy.lines.extend(common_pb2.ServiceLine(line_number=n + 1, procedure_code="ABCDE", modifiers=["??"], units=-1,
                                             billed_cents=-5, diagnosis_pointers=[9], date_of_service="2026-10-15")
                       for n in range(50))
    with pytest.raises(grpc.RpcError) as refused:
        parties.provider.provider.SubmitClaim(messy)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    assert "lines[0].procedure_code" in field_violations(refused.value)
    # A fee schedule of 20,001 entries (one over the bound).
    fees = admin_pb2.PublishFeeScheduleRequest(
        contract_id="BIG-1", payer_id=world.PAYER, version=1, effective_date="2026-01-01",
        entries=[admin_pb2.FeeScheduleEntry(procedure_code=f"{n:05d}", allowed_cents=100) for n in range(20_001)])
    with pytest.raises(grpc.RpcError) as refused:
        parties.admin.admin.PublishFeeSchedule(fees)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value.details()
    # A long value echoed back in a message does not make the status unreadable either.
    for method, request in (
        (next(m for m in METHODS if m.name == "GetRemittance"), {"trace_number": "x" * 50_000}),
        (next(m for m in METHODS if m.name == "DeployRuleSet"),
         {"version": "\U0001F600" * 20_000, "effective_date": "2026-01-01"}),
    ):
        code = checker.check(method, method.request(**request).SerializeToString(), what="a long value")
        assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), (method.path, code)
    assert ledger_size(parties) == before
    health = health_pb2_grpc.HealthStub(parties.channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
