"""Diagnosis fit: a procedure listed in the fit table needs a pointed diagnosis that supports it.

The table (rule-set parameters) maps a procedure code to ICD-10-CM prefixes ("M17" covers M1711).
A line whose diagnosis pointers name no code starting with one of its procedure's prefixes is denied
`mismatch` (CO-11). Diagnoses on the claim that the line does not point to do not count; a procedure
not in the table fits any diagnosis.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..findings import Finding, Reason
from ..models import ClaimInput, Facts
from ..ruleset import Rule
from ..state import ClaimState


@dataclass(frozen=True, slots=True)
class DiagnosisFitParams:
    prefixes: Mapping[str, tuple[str, ...]]
    mismatch: Reason

    @classmethod
    def from_parameters(cls, section: Mapping[str, Any]) -> DiagnosisFitParams:
        return cls(
            prefixes={code: tuple(prefixes) for code, prefixes in section["table"].items()},
            mismatch=Reason.from_json(section["mismatch"]),
        )


def diagnosis_fit(claim: ClaimInput, facts: Facts, params: DiagnosisFitParams, state: ClaimState) -> list[Finding]:
    diagnoses = claim.diagnosis_codes
    findings = []
    for line in state.open_lines():
        prefixes = params.prefixes.get(line.procedure)
        if prefixes is None:
            continue
        if not any(diagnoses[pointer - 1].startswith(prefixes) for pointer in line.line.diagnosis_pointers):
            findings.append(Finding.deny(line.number, params.mismatch))
    return findings


RULE = Rule("diagnosis_fit", diagnosis_fit, DiagnosisFitParams.from_parameters)
