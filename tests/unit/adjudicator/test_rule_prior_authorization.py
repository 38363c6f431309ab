"""Rule 7, prior authorisation: none valid on the date (CO-197); units beyond it (CO-198)."""

from adjudicator.rules import prior_authorization

from .kit import KNEE, DOS, authorization, claim, day, described, facts, findings_of, line


def exercise(number: int, units: int, dos=DOS):
    return line(number, "97110", units=units, pointers=KNEE, dos=dos)


def test_only_procedures_the_plan_lists_need_authorisation():
    assert findings_of(prior_authorization, claim(exercise(1, 3)), facts()) == []


def test_denies_without_an_authorisation_valid_on_the_date_of_service():
    auths = [authorization("97110", 5, valid_from=day(1), valid_to=day(30))]
    found = findings_of(prior_authorization, claim(exercise(1, 1)), facts(prior_auth_required=["97110"], authorizations=auths))
    assert described(found) == ["1 deny CO-197"]


def test_draws_units_from_several_authorisations_earliest_first_across_lines():
    auths = [
        authorization("97110", 2, valid_from=day(-5), valid_to=day(5), auth_id="PA-2"),
        authorization("97110", 2, valid_from=day(-20), valid_to=day(0), used=1, auth_id="PA-1"),
    ]
    found = findings_of(
        prior_authorization,
        claim(exercise(1, 2), exercise(2, 2, dos=day(1))),
        facts(prior_auth_required=["97110"], authorizations=auths),
    )
    # Line 1 draws PA-1's one unit left and one of PA-2's; on day 1 only PA-2 (one unit left) is valid.
    assert described(found) == ["2 cut CO-198 x1"]


def test_cuts_every_unit_when_the_authorisation_is_spent():
    found = findings_of(
        prior_authorization,
        claim(exercise(1, 2)),
        facts(prior_auth_required=["97110"], authorizations=[authorization("97110", 3, used=3)]),
    )
    assert described(found) == ["1 cut CO-198 x2"]
