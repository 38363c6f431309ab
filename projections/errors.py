"""Errors of the read side, each naming its gRPC status (see ``claims_service.errors``)."""

from __future__ import annotations

from typing import ClassVar

from claims_service.errors import ClaimsError, DeadlineExceededError, NotFoundError, OutOfRangeError


class ProjectionLagError(DeadlineExceededError):
    """The read model has not reached the position the caller asked for before its deadline
    (DEADLINE_EXCEEDED).

    The write is committed, the projection is just behind (or stopped): the caller may ask again with
    the same ``min_position`` after a pause, or with a longer deadline. Not UNAVAILABLE, which an
    automatic retry policy would repeat at once, for as long as the read model is behind.
    """

    def __init__(self, projection: str, wanted: int, reached: int) -> None:
        self.projection = projection
        self.wanted = wanted
        self.reached = reached
        super().__init__(
            f"the {projection} read model has reached ledger position {reached}, not yet {wanted}, within the "
            "deadline; ask again with the same min_position after a pause or with a longer deadline"
        )


class PositionBeyondHeadError(OutOfRangeError):
    """The caller asked to wait for a ledger position no write has reached: it is not from a receipt
    (which is only given once its write is committed), so waiting for it would be in vain."""

    def __init__(self, wanted: int, head: int) -> None:
        self.wanted = wanted
        self.head = head
        super().__init__(
            f"ledger position {wanted} is beyond the ledger's head ({head}): no write has reached it; "
            "min_position is a position from a receipt"
        )


class UnknownProjectionError(NotFoundError):
    """No projection has this name."""


class RebuildInProgressError(ClaimsError):
    """Another rebuild of the same projection holds its lock."""

    status: ClassVar[str] = "FAILED_PRECONDITION"
