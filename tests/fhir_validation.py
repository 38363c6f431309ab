"""How the tests validate a FHIR resource: fhir.resources' R4B models (FHIR 4.3.0; docs/FHIR.md
says why and what differs from R4 4.0.1 for these resources), plus the two rules those models do
not enforce: a code of a required binding the model lists (`enum_values`: status, use, outcome,
Bundle.type, issue severity ...) is one of its codes, and nothing in the JSON is empty (FHIR
forbids empty arrays, objects and strings)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import BaseModel


def validated(resource: dict[str, Any] | bytes) -> dict[str, Any]:
    """The resource as its JSON says (amounts as Decimal), once it is valid; AssertionError or
    pydantic's ValidationError naming the element otherwise."""
    text = resource if isinstance(resource, bytes) else _json(resource)
    found = json.loads(text, parse_float=Decimal)
    model = get_fhir_model_class(found["resourceType"]).model_validate_json(text)
    _codes_in_their_lists(model, found["resourceType"])
    _nothing_empty(found, found["resourceType"])
    return found


def _json(resource: dict[str, Any]) -> bytes:
    from claims_service.fhir.resources import dumps

    return dumps(resource)


def _codes_in_their_lists(model: BaseModel, path: str) -> None:
    for name, field in type(model).model_fields.items():
        value = getattr(model, name, None)
        if value is None:
            continue
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        allowed = extra.get("enum_values")
        if allowed:
            for code in value if isinstance(value, list) else [value]:
                assert code in allowed, f"{path}.{name}: {code!r} is not one of {allowed}"
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, BaseModel):
                _codes_in_their_lists(child, f"{path}.{name}")


def _nothing_empty(value: Any, path: str) -> None:
    assert value not in ([], {}, ""), f"{path} is empty"
    if isinstance(value, dict):
        for key, child in value.items():
            _nothing_empty(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _nothing_empty(child, f"{path}[{index}]")
