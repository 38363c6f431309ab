"""Provider credentials and networks, contract fee schedules, visits."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from claims_service.domain.contract import Contract
from claims_service.domain.provider import Provider
from claims_service.domain.visit import Visit
from claims_service.errors import NotFoundError, StateError, ValidationError

NPI = "1234567893"
ADMIN = "admin:root"


def register(**overrides: Any) -> Provider:
    kwargs: dict[str, Any] = {
        "actor": ADMIN,
        "npi": NPI,
        "name": "Main Street Clinic",
        "taxonomy": "207Q00000X",
    }
    kwargs.update(overrides)
    return Provider.register(**kwargs)


def verified() -> Provider:
    provider = register()
    provider.verify_credential(
        actor=ADMIN,
        licence_number="A12345",
        state="CA",
        valid_from=date(2024, 1, 1),
        valid_to=date(2025, 12, 31),
    )
    return provider


# --- provider ---------------------------------------------------------------------


def test_registers_a_provider_by_npi() -> None:
    provider = register()
    assert provider.id == Provider.create_id(NPI)
    (event,) = provider.collect_events()
    assert isinstance(event, Provider.Registered)
    assert (event.npi, event.taxonomy, event.actor) == (NPI, "207Q00000X", ADMIN)
    assert not provider.licensed_on(date(2025, 1, 1))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"npi": "1234567890"}, "npi"),  # check digit
        ({"npi": "3234567893"}, "npi"),
        ({"npi": 1234567893}, "npi"),
        ({"taxonomy": "207Q00000Y"}, "taxonomy"),
        ({"name": ""}, "name"),
        ({"actor": "admin root"}, "actor"),
    ],
)
def test_refuses_invalid_registration(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        register(**change)
    assert field in info.value.fields


def test_a_verified_credential_licenses_within_its_dates() -> None:
    provider = verified()
    assert provider.licensed_on(date(2024, 1, 1))
    assert provider.licensed_on(date(2025, 12, 31))
    assert provider.licensed_on(date(2025, 6, 1), state="CA")
    assert not provider.licensed_on(date(2025, 6, 1), state="NY")
    assert not provider.licensed_on(date(2026, 1, 1))
    assert [c["licence_number"] for c in provider.credentials_on(date(2025, 1, 1))] == ["A12345"]


def test_revocation_and_expiry_end_a_licence_from_their_date(refused: Any) -> None:
    provider = verified()
    provider.revoke_credential(actor=ADMIN, licence_number="A12345", revoked_on=date(2025, 3, 1))
    assert provider.licensed_on(date(2025, 2, 28))
    assert not provider.licensed_on(date(2025, 3, 1))
    with refused(provider, StateError):
        provider.revoke_credential(actor=ADMIN, licence_number="A12345", revoked_on=date(2025, 3, 2))
    with refused(provider, StateError):
        provider.expire_credential(actor=ADMIN, licence_number="A12345", expired_on=date(2025, 3, 2))
    with refused(provider, NotFoundError):
        provider.revoke_credential(actor=ADMIN, licence_number="B999", revoked_on=date(2025, 3, 2))
    # Reinstatement is a new verification; the revoked period stays unlicensed.
    provider.verify_credential(
        actor=ADMIN, licence_number="A12345", state="CA",
        valid_from=date(2025, 6, 1), valid_to=date(2026, 5, 31),
    )
    provider.expire_credential(actor=ADMIN, licence_number="A12345", expired_on=date(2026, 1, 1))
    assert not provider.licensed_on(date(2025, 4, 1))
    assert provider.licensed_on(date(2025, 7, 1))
    assert not provider.licensed_on(date(2026, 2, 1))
    names = [type(e).__name__ for e in provider.collect_events()]
    assert names == ["CredentialVerified", "CredentialExpired"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "XX"}, "state"),
        ({"state": "ca"}, "state"),
        ({"valid_to": date(2023, 12, 31)}, "valid_to"),
        ({"valid_from": date(1, 1, 1)}, "valid_from"),
        ({"licence_number": ""}, "licence_number"),
    ],
)
def test_refuses_invalid_credentials(change: dict[str, Any], field: str, refused: Any) -> None:
    provider = register()
    kwargs: dict[str, Any] = {
        "actor": ADMIN, "licence_number": "A1", "state": "CA",
        "valid_from": date(2024, 1, 1), "valid_to": date(2024, 12, 31),
    }
    with refused(provider, ValidationError, field=field):
        provider.verify_credential(**dict(kwargs, **change))


def test_refuses_verifying_the_same_credential_twice(refused: Any) -> None:
    provider = verified()
    with refused(provider, StateError):
        provider.verify_credential(
            actor=ADMIN, licence_number="A12345", state="CA",
            valid_from=date(2024, 1, 1), valid_to=date(2025, 12, 31),
        )


def test_network_participation(refused: Any) -> None:
    provider = register()
    provider.join_network(actor=ADMIN, payer_id="ACME", contract_id="C-1", effective_date=date(2025, 1, 1))
    assert provider.in_network_on("ACME", date(2025, 1, 1))
    assert not provider.in_network_on("ACME", date(2024, 12, 31))
    assert not provider.in_network_on("OTHER", date(2025, 6, 1))
    assert provider.contract_ids_on("ACME", date(2025, 6, 1)) == ["C-1"]
    with refused(provider, StateError):  # overlaps the open participation
        provider.join_network(actor=ADMIN, payer_id="ACME", contract_id="C-1", effective_date=date(2025, 6, 1))
    provider.leave_network(actor=ADMIN, payer_id="ACME", contract_id="C-1", end_date=date(2025, 6, 30))
    assert provider.in_network_on("ACME", date(2025, 6, 30))
    assert not provider.in_network_on("ACME", date(2025, 7, 1))
    with refused(provider, StateError):
        provider.leave_network(actor=ADMIN, payer_id="ACME", contract_id="C-1", end_date=date(2025, 7, 30))
    with refused(provider, StateError):
        provider.leave_network(actor=ADMIN, payer_id="ACME", contract_id="C-9", end_date=date(2025, 7, 30))
    with refused(provider, ValidationError, field="end_date"):
        provider.join_network(
            actor=ADMIN, payer_id="ACME", contract_id="C-2",
            effective_date=date(2025, 8, 1), end_date=date(2025, 7, 1),
        )
    provider.join_network(
        actor=ADMIN, payer_id="ACME", contract_id="C-1",
        effective_date=date(2025, 9, 1), end_date=date(2025, 12, 31),
    )
    assert provider.in_network_on("ACME", date(2025, 10, 1))
    assert not provider.in_network_on("ACME", date(2025, 8, 1))


# --- contract ---------------------------------------------------------------------

FEES = {"99213": 9_000, "99213:25": 9_500, "J1100": 250}


def publish(**overrides: Any) -> Contract:
    kwargs: dict[str, Any] = {
        "actor": ADMIN, "contract_id": "C-1", "payer_id": "ACME", "version": 1,
        "effective_date": date(2025, 1, 1), "fees": FEES,
    }
    kwargs.update(overrides)
    return Contract.publish(**kwargs)


def test_publishes_versioned_fee_schedules() -> None:
    contract = publish()
    assert contract.id == Contract.create_id("C-1")
    assert contract.fee_schedule_on(date(2024, 12, 31)) is None
    contract.publish_fee_schedule(
        actor=ADMIN, version=2, effective_date=date(2025, 7, 1), fees={"99213": 9_200}
    )
    contract.publish_fee_schedule(
        actor=ADMIN, version=3, effective_date=date(2025, 7, 1), fees={"99213": 9_300}
    )
    first = contract.fee_schedule_on(date(2025, 6, 30))
    assert first == {"version": 1, "effective_date": date(2025, 1, 1), "fees": FEES}
    assert contract.fee_schedule_on(date(2025, 7, 1))["version"] == 3  # type: ignore[index]
    first["fees"]["99213"] = 1  # type: ignore[index]
    assert contract.fee_schedule_on(date(2025, 6, 30))["fees"]["99213"] == 9_000  # type: ignore[index]
    assert contract.version == 3  # the aggregate's own sequence number is untouched
    assert contract.schedule_version == 3
    names = [type(e).__name__ for e in contract.collect_events()]
    assert names == ["Published", "FeeSchedulePublished", "FeeSchedulePublished"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fees": {}}, "fees"),
        ({"fees": {"9921": 100}}, 'fees["9921"]'),
        ({"fees": {"99213:2": 100}}, 'fees["99213:2"]'),
        ({"fees": {"99213": -1}}, 'fees["99213"]'),
        ({"fees": {"99213": 1.5}}, 'fees["99213"]'),
        ({"version": 0}, "version"),
        ({"effective_date": date(9999, 1, 1)}, "effective_date"),
    ],
)
def test_refuses_invalid_contracts(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        publish(**change)
    assert field in info.value.fields


def test_refuses_stale_versions_and_earlier_dates(refused: Any) -> None:
    contract = publish(version=2)
    with refused(contract, StateError):
        contract.publish_fee_schedule(actor=ADMIN, version=2, effective_date=date(2025, 2, 1), fees=FEES)
    with refused(contract, StateError):
        contract.publish_fee_schedule(actor=ADMIN, version=1, effective_date=date(2025, 2, 1), fees=FEES)
    with refused(contract, StateError):
        contract.publish_fee_schedule(actor=ADMIN, version=3, effective_date=date(2024, 12, 31), fees=FEES)
    with refused(contract, ValidationError, field="fees"):
        contract.publish_fee_schedule(actor=ADMIN, version=3, effective_date=date(2025, 2, 1), fees={})


# --- visit ------------------------------------------------------------------------


def visit_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "actor": f"provider:{NPI}", "visit_id": "V-1", "provider_id": NPI, "member_id": "M-0001",
        "payer_id": "ACME", "date_of_service": date(2025, 3, 3), "place_of_service": "11",
        "diagnosis_codes": ["E119", "I10"],
    }
    kwargs.update(overrides)
    return kwargs


def test_records_a_visit() -> None:
    visit = Visit.record(**visit_kwargs())
    assert visit.id == Visit.create_id(NPI, "V-1")
    (event,) = visit.collect_events()
    assert isinstance(event, Visit.Recorded)
    assert event.diagnosis_codes == ["E119", "I10"]
    assert event.actor == f"provider:{NPI}"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"diagnosis_codes": []}, "diagnosis_codes"),
        ({"diagnosis_codes": ["E11.9"]}, "diagnosis_codes[0]"),
        ({"diagnosis_codes": ["I10", "I10"]}, "diagnosis_codes[1]"),
        ({"diagnosis_codes": [f"A0{i}" for i in range(10)] + ["B01", "B02", "B03"]}, "diagnosis_codes"),
        ({"diagnosis_codes": ["I10", "Q9999X"]}, "diagnosis_codes[1]"),  # not in the ICD-10-CM code set
        ({"diagnosis_codes": ["E11"]}, "diagnosis_codes[0]"),  # a category, not billable
        ({"place_of_service": "1"}, "place_of_service"),
        ({"provider_id": "1234567890"}, "provider_id"),
        ({"date_of_service": date(1, 1, 1)}, "date_of_service"),
    ],
)
def test_refuses_invalid_visits(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Visit.record(**visit_kwargs(**change))
    assert field in info.value.fields
