"""The error hierarchy and the pydantic -> field violation conversion."""

from __future__ import annotations

import inspect

import pydantic
import pytest

from claims_service import errors
from claims_service.domain.values import PlanTerms, SubmitClaim
from claims_service.errors import (
    ClaimsError,
    FieldViolation,
    ValidationError,
    field_path,
    from_pydantic,
)

# The canonical gRPC status code names (grpc.StatusCode member names).
GRPC_STATUSES = {
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
}


def error_classes() -> list[type[ClaimsError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, Exception) and obj.__module__ == errors.__name__
    ]


def test_every_error_ends_in_error_and_names_a_grpc_status() -> None:
    classes = error_classes()
    assert len(classes) >= 10
    for cls in classes:
        assert cls.__name__.endswith("Error")
        assert issubclass(cls, ClaimsError)
        assert cls.status in GRPC_STATUSES


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("ValidationError", "INVALID_ARGUMENT"),
        ("NotFoundError", "NOT_FOUND"),
        ("ClaimNotFoundError", "NOT_FOUND"),
        ("MemberNotFoundError", "NOT_FOUND"),
        ("ProviderNotFoundError", "NOT_FOUND"),
        ("ContractNotFoundError", "NOT_FOUND"),
        ("StateError", "FAILED_PRECONDITION"),
        ("ConflictError", "ABORTED"),
        ("DuplicateRequestError", "ALREADY_EXISTS"),
        ("PermissionDeniedError", "PERMISSION_DENIED"),
    ],
)
def test_status_of(name: str, status: str) -> None:
    assert getattr(errors, name).status == status


def test_errors_module_does_not_import_grpc() -> None:
    source = inspect.getsource(errors)
    assert "import grpc" not in source


def test_field_paths_are_dotted_and_indexed() -> None:
    assert field_path(("lines", 2, "billed_cents")) == "lines[2].billed_cents"
    assert field_path(("fees", "99213:25", "[key]")) == 'fees["99213:25"]'
    assert field_path(("cost_share", "default", "copay_cents"), "terms") == (
        "terms.cost_share.default.copay_cents"
    )


def test_converts_pydantic_errors_without_echoing_the_input() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        SubmitClaim.model_validate({"member_id": 5, "lines": [{"billed_cents": "SECRET-PHI"}]})
    ours = from_pydantic(info.value)
    assert isinstance(ours, ValidationError)
    assert "member_id" in ours.fields
    assert "lines[0].billed_cents" in ours.fields
    assert "lines[0].line_number" in ours.fields  # missing field
    assert "SECRET-PHI" not in str(ours)


def test_nested_model_paths_and_key_errors() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        PlanTerms.model_validate(
            {
                "deductible_cents": 0,
                "oop_max_cents": 0,
                "cost_share": {"default": {"copay_cents": -1, "coinsurance_bp": 0}},
                "timely_filing_days": 90,
                "in_network_only": True,
                "review_threshold_cents": 0,
                "non_covered_procedures": [],
                "benefit_limits": {"not-a-code": 1},
                "prior_auth_required": [],
            }
        )
    ours = from_pydantic(info.value, prefix="terms")
    assert ours.fields == ['terms.cost_share.default.copay_cents', 'terms.benefit_limits["not-a-code"]']
    assert ours.violations[1].description.startswith("invalid key:")


def test_validation_error_needs_a_violation() -> None:
    with pytest.raises(ValueError):
        ValidationError([])
    err = ValidationError.single("x", "bad")
    assert err.violations == [FieldViolation("x", "bad")]
    assert str(err) == "x: bad"
