"""The synthetic code set in adjudicator/data/: well formed and consistent with itself."""

from __future__ import annotations

import re

from adjudicator import codeset

PROCEDURE = re.compile(r"^([0-9]{5}|[A-Z][0-9]{4})$")
ICD10CM = re.compile(r"^[A-Z][0-9A][0-9AB][0-9A-Z]{0,4}$")


def test_procedures_are_cpt_or_hcpcs_shaped_with_a_category_and_short_own_description():
    procedures = codeset.load("procedures.json")["procedures"]
    assert len(procedures) >= 20
    for code, entry in procedures.items():
        assert PROCEDURE.match(code), code
        assert entry["category"] and entry["category"].islower()
        assert 0 < len(entry["description"]) <= 50
    for code in ("99213", "80053", "71046", "20610", "93000", "36415", "29881", "97110", "J1100", "G0008"):
        assert code in procedures


def test_diagnoses_are_icd10cm_shaped_without_the_dot():
    diagnoses = codeset.diagnoses()
    for code in ("E119", "I10", "J069", "M1711", "Z0000"):
        assert code in diagnoses
    assert all(ICD10CM.match(code) for code in diagnoses)


def test_fit_table_names_known_procedures_and_prefixes_of_known_diagnoses():
    procedures = codeset.procedure_categories()
    diagnoses = codeset.diagnoses()
    for code, prefixes in codeset.diagnosis_fit().items():
        assert code in procedures
        assert prefixes == sorted(set(prefixes))
        assert any(d.startswith(tuple(prefixes)) for d in diagnoses), code


def test_bundling_pairs_are_known_distinct_and_one_way():
    procedures = codeset.procedure_categories()
    pairs = {(p["column1"], p["column2"]) for p in codeset.bundling_pairs()}
    assert len(pairs) == len(codeset.bundling_pairs())
    for column1, column2 in pairs:
        assert column1 in procedures and column2 in procedures and column1 != column2
        assert (column2, column1) not in pairs
    assert all(isinstance(p["modifier_bypass"], bool) for p in codeset.bundling_pairs())


def test_unit_limits_are_positive_whole_units_of_known_procedures():
    procedures = codeset.procedure_categories()
    for code, limit in codeset.unit_limits().items():
        assert code in procedures
        assert type(limit) is int and limit >= 1
