"""Domain errors: one root, each class naming the gRPC status it maps to.

The status is a plain string so that the domain never imports grpc; the API
interceptor looks it up on the exception (``type(err).status``) in one table.
Messages are written for the caller: they must not echo PHI beyond the field
path, because they travel back over the wire.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import pydantic


class ClaimsError(Exception):
    """Root of every error the service raises on purpose."""

    status: ClassVar[str] = "INTERNAL"


# ---------------------------------------------------------------------------
# INVALID_ARGUMENT


@dataclass(frozen=True)
class FieldViolation:
    """One bad field, in the shape of ``google.rpc.BadRequest.FieldViolation``.

    ``field`` is a dotted/indexed path into the request, e.g.
    ``lines[2].billed_cents`` (indexes are 0-based list positions, not claim
    line numbers); dictionary keys that are not plain identifiers are quoted,
    e.g. ``fees["99213:25"]``.
    """

    field: str
    description: str


class ValidationError(ClaimsError):
    """The request is malformed regardless of any stored state."""

    status: ClassVar[str] = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation]) -> None:
        if not violations:
            msg = "a ValidationError needs at least one violation"
            raise ValueError(msg)
        self.violations: list[FieldViolation] = list(violations)
        super().__init__(
            "; ".join(f"{v.field or '<request>'}: {v.description}" for v in self.violations)
        )

    @classmethod
    def single(cls, field: str, description: str) -> ValidationError:
        """Shorthand for an error about one field."""
        return cls([FieldViolation(field, description)])

    @property
    def fields(self) -> list[str]:
        """The offending field paths, in order (handy in tests and logs)."""
        return [v.field for v in self.violations]


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def field_path(loc: Iterable[str | int], prefix: str = "") -> str:
    """Render a pydantic ``loc`` tuple as ``a.b[2].c`` (``prefix`` goes first)."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            # pydantic appends this marker after a dictionary key that failed
            # validation; the key itself is already in the path.
            continue
        elif _IDENTIFIER.match(part):
            path += f".{part}" if path else part
        else:
            # JSON-style quoting keeps keys like "99213:25" unambiguous.
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            path += f'["{escaped}"]'
    return path


def from_pydantic(
    exc: pydantic.ValidationError, prefix: str = ""
) -> ValidationError:
    """Convert a pydantic ``ValidationError`` into ours, keeping field paths.

    Only pydantic's message is kept, never the offending input value: the
    value may be PHI and the message goes back to the client.
    """
    violations = []
    for error in exc.errors(include_url=False, include_input=False):
        loc: tuple[Any, ...] = tuple(error.get("loc", ()))
        # Errors raised by our own validators read "Value error, <msg>".
        description = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":
            description = f"invalid key: {description}"
        violations.append(FieldViolation(field_path(loc, prefix), description))
    return ValidationError(violations)


# ---------------------------------------------------------------------------
# NOT_FOUND


class NotFoundError(ClaimsError):
    status: ClassVar[str] = "NOT_FOUND"


class ClaimNotFoundError(NotFoundError):
    pass


class MemberNotFoundError(NotFoundError):
    pass


class ProviderNotFoundError(NotFoundError):
    pass


class ContractNotFoundError(NotFoundError):
    pass


class VisitNotFoundError(NotFoundError):
    pass


class PaymentNotFoundError(NotFoundError):
    pass


# ---------------------------------------------------------------------------
# FAILED_PRECONDITION / ALREADY_EXISTS / ABORTED / PERMISSION_DENIED


class StateError(ClaimsError):
    """The command is well formed but the aggregate's state refuses it
    (voiding a voided claim, issuing a payment twice, ...)."""

    status: ClassVar[str] = "FAILED_PRECONDITION"


class AlreadyExistsError(ClaimsError):
    """Something with this identity already exists (an aggregate, a prior
    authorisation id, a dispute id)."""

    status: ClassVar[str] = "ALREADY_EXISTS"


class DuplicateRequestError(AlreadyExistsError):
    """The idempotency key was used before with a different request body."""


class ConflictError(ClaimsError):
    """A concurrent write won; the caller may reload and retry."""

    status: ClassVar[str] = "ABORTED"


class PermissionDeniedError(ClaimsError):
    status: ClassVar[str] = "PERMISSION_DENIED"


class UnauthenticatedError(ClaimsError):
    """No credential, or one that does not check out."""

    status: ClassVar[str] = "UNAUTHENTICATED"


class UnavailableError(ClaimsError):
    """A dependency (the database) is not reachable; retrying later, with backoff, may work."""

    status: ClassVar[str] = "UNAVAILABLE"


# ---------------------------------------------------------------------------
# DEADLINE_EXCEEDED / OUT_OF_RANGE / DATA_LOSS


class DeadlineExceededError(ClaimsError):
    """What the call waits for (a read model reaching the caller's position, the Merkle tree reaching
    a size) did not come within its deadline. Nothing is wrong with the request: the caller may try
    again with the same values after a pause, or with a longer deadline; an automatic retry policy
    should not (that is UNAVAILABLE's job)."""

    status: ClassVar[str] = "DEADLINE_EXCEEDED"


class OutOfRangeError(ClaimsError):
    """A ledger position or tree size beyond what the ledger holds: no write has reached it yet.
    Unlike INVALID_ARGUMENT, the same request may become valid once the ledger grows."""

    status: ClassVar[str] = "OUT_OF_RANGE"


class DataLossError(ClaimsError):
    """A stored event cannot be read: its bytes no longer decode into the event they recorded.
    Never retryable; the message names the ledger position (`claimsctl verify` finds the rest)."""

    status: ClassVar[str] = "DATA_LOSS"

    def __init__(self, position: int | None, detail: str) -> None:
        self.position = position
        where = f"the ledger event at position {position}" if position is not None else "a ledger event"
        super().__init__(f"{where} cannot be read: {detail}; the stored data is damaged (run `claimsctl verify`)")


# ---------------------------------------------------------------------------
# RESOURCE_EXHAUSTED


class TooManyStreamsError(ClaimsError):
    """The caller (or the server as a whole) already holds as many open streams as allowed."""

    status: ClassVar[str] = "RESOURCE_EXHAUSTED"


__all__ = [
    "AlreadyExistsError",
    "ClaimNotFoundError",
    "ClaimsError",
    "ConflictError",
    "ContractNotFoundError",
    "DataLossError",
    "DeadlineExceededError",
    "DuplicateRequestError",
    "FieldViolation",
    "MemberNotFoundError",
    "NotFoundError",
    "OutOfRangeError",
    "PaymentNotFoundError",
    "PermissionDeniedError",
    "ProviderNotFoundError",
    "StateError",
    "TooManyStreamsError",
    "UnauthenticatedError",
    "UnavailableError",
    "ValidationError",
    "VisitNotFoundError",
    "field_path",
    "from_pydantic",
]
