"""Errors of the read side, each naming its gRPC status (see ``claims_service.errors``)."""

from __future__ import annotations

from typing import ClassVar

from claims_service.errors import ClaimsError, NotFoundError


class ProjectionLagError(ClaimsError):
    """The read model has not reached the position the caller asked for before its deadline.

    Retryable: the write is committed, the projection is just behind (or stopped). The caller
    should retry with the same ``min_position`` after a short delay.
    """

    status: ClassVar[str] = "UNAVAILABLE"

    def __init__(self, projection: str, wanted: int, reached: int) -> None:
        self.projection = projection
        self.wanted = wanted
        self.reached = reached
        super().__init__(
            f"the {projection} read model has reached ledger position {reached}, not yet {wanted}; "
            "retry shortly"
        )


class UnknownProjectionError(NotFoundError):
    """No projection has this name."""


class RebuildInProgressError(ClaimsError):
    """Another rebuild of the same projection holds its lock."""

    status: ClassVar[str] = "FAILED_PRECONDITION"
