"""Code tables with effective dates, and the engine's refusal to emit a code not in force."""

from __future__ import annotations

from datetime import date

import pytest

from adjudicator import RuleSet, adjudicate
from adjudicator.codes import CARC, GROUP_CODES, RARC, CodeNotInForceError, is_in_force, require_in_force
from adjudicator.rules import pend, pricing, timely_filing
from adjudicator.rulesets import v2026_1

from .kit import claim, coverage, facts, fee_schedule, line, summary


@pytest.mark.parametrize("code", ["15", "28", "38", "42", "62"])
def test_retired_reason_codes_are_valid_only_until_retired(code):
    entry = CARC[code]
    assert entry.valid_to is not None and entry.replaced_by
    assert is_in_force(CARC, code, entry.valid_to)
    assert not is_in_force(CARC, code, date.fromordinal(entry.valid_to.toordinal() + 1))
    assert all(CARC[successor].valid_to is None for successor in entry.replaced_by)


def test_group_codes_of_5010_are_co_oa_pi_pr():
    assert {code for code in GROUP_CODES if is_in_force(GROUP_CODES, code, date(2026, 1, 1))} == {"CO", "OA", "PI", "PR"}
    assert is_in_force(GROUP_CODES, "CR", date(2011, 12, 31))


def test_codes_that_need_a_remark_are_flagged():
    assert {code for code, entry in CARC.items() if entry.needs_remark} == {"16", "96", "234", "A1"}


def test_require_in_force_names_the_offending_code():
    require_in_force("CO", "96", ("N130",), date(2026, 1, 1))
    with pytest.raises(CodeNotInForceError, match="42"):
        require_in_force("CO", "42", (), date(2026, 1, 1))
    with pytest.raises(CodeNotInForceError, match="CR"):
        require_in_force("CR", "45", (), date(2026, 1, 1))
    with pytest.raises(CodeNotInForceError, match="N362"):
        require_in_force("CO", "151", ("N362",), date(2005, 1, 1))
    with pytest.raises(CodeNotInForceError, match="unknown|not in force"):
        require_in_force("CO", "ZZZ", (), date(2026, 1, 1))


def test_every_table_entry_is_well_formed():
    for table in (GROUP_CODES, CARC, RARC):
        for code, entry in table.items():
            assert entry.code == code and entry.description
            assert entry.valid_to is None or entry.valid_from <= entry.valid_to


def test_engine_refuses_a_decision_with_a_code_not_in_force_on_the_received_date():
    # A rule set (not released) that still emits CARC 42, retired in favour of 45.
    parameters = {
        "timely_filing": v2026_1.PARAMETERS["timely_filing"],
        "pricing": {"above_fee_schedule": {"group": "CO", "carc": "42", "remarks": []}},
        "pend": v2026_1.PARAMETERS["pend"],
    }
    old = RuleSet.build("test-old", (timely_filing, pricing, pend), parameters)
    with pytest.raises(CodeNotInForceError, match="42"):
        adjudicate(claim(), facts(), old)
    # Received while 42 was in force, the same rule set may use it.
    long_ago = claim(line(dos=date(2006, 3, 1)))
    history = facts(
        received=date(2006, 3, 10),
        coverages=[coverage(start=date(2000, 1, 1))],
        schedule=fee_schedule(effective=date(2006, 1, 1)),
    )
    assert summary(adjudicate(long_ago, history, old).lines[0])[5] == "CO-42:6000"
