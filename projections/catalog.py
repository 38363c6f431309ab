"""Every projection by name: the read models the supervisor runs and ``claimsctl`` rebuilds."""

from __future__ import annotations

from projections.access import AccessLogModel
from projections.benefits import BenefitsModel
from projections.claims import ClaimStatusModel
from projections.errors import UnknownProjectionError
from projections.payments import PaymentsModel
from projections.store import ReadModel
from projections.timeline import DisputeTimelineModel

MODELS: dict[str, type[ReadModel]] = {
    model.name: model for model in (ClaimStatusModel, BenefitsModel, PaymentsModel, DisputeTimelineModel,
                                    AccessLogModel)
}
NAMES: tuple[str, ...] = tuple(MODELS)


def model(name: str) -> ReadModel:
    """A new instance of the named read model; ``UnknownProjectionError`` if there is none."""
    try:
        return MODELS[name]()
    except KeyError:
        known = ", ".join(NAMES)
        raise UnknownProjectionError(f"no projection named {name!r} (known: {known})") from None
