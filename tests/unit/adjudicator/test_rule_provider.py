"""Rule 2, provider: a valid licence on the date of service (CO-B7), in network when required (CO-242)."""

from datetime import date

from adjudicator.rules import provider
from adjudicator.rules.provider import in_network_on, licensed_on

from .kit import DOS, PAYER, claim, credential, day, described, facts, findings_of, network, provider_facts


def test_licence_is_valid_from_its_first_to_its_last_day():
    licence = credential(valid_from=day(-10), valid_to=DOS)
    assert licensed_on(licence, day(-10))
    assert licensed_on(licence, DOS)
    assert not licensed_on(licence, day(-11))
    assert not licensed_on(licence, day(1))


def test_revocation_ends_the_licence_on_the_day_it_happens():
    licence = credential(revoked_on=DOS)
    assert licensed_on(licence, day(-1))
    assert not licensed_on(licence, DOS)


def test_network_membership_includes_both_ends_and_only_its_payer():
    membership = network(start=day(-5), end=DOS)
    assert in_network_on(membership, PAYER, DOS)
    assert not in_network_on(membership, PAYER, day(1))
    assert not in_network_on(membership, "PAYER-B", DOS)


def test_denies_unlicensed_provider_b7_before_looking_at_the_network():
    found = findings_of(provider, claim(), facts(provider=provider_facts([], networks=[])))
    assert described(found) == ["1 deny CO-B7"]


def test_denies_out_of_network_only_when_the_plan_requires_network():
    out = provider_facts(networks=[network(end=date(2025, 12, 31))])
    assert described(findings_of(provider, claim(), facts(provider=out))) == ["1 deny CO-242"]
    assert findings_of(provider, claim(), facts(provider=out, in_network_only=False)) == []
