"""What an event may carry as data: the checker's fast path agrees with its detailed one, and a
copy shares no container with its original."""

from __future__ import annotations

from datetime import date, datetime

from hypothesis import given
from hypothesis import strategies as st

from claims_service.domain.values import _is_plain, copy_plain, plain_violations

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.dates(),
    st.floats(allow_nan=False), st.datetimes(), st.tuples(st.integers()), st.binary(max_size=3),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), inner, max_size=4),
        st.fixed_dictionaries({"_type_": inner, "_data_": inner}),
    ),
    max_leaves=20,
)


@given(values)
def test_fast_check_agrees_with_the_violations(value: object) -> None:
    assert _is_plain(value) == (plain_violations(value, "x") == [])


def test_violations_name_the_offending_paths() -> None:
    value = {"lines": [{"paid": 1.5}, {"when": datetime(2026, 1, 1)}], "ok": date(2026, 1, 1), 3: "key"}
    assert sorted(v.field for v in plain_violations(value, "decision")) == [
        "decision", "decision.lines[0].paid", "decision.lines[1].when"]
    assert plain_violations({"_type_": "date", "_data_": "2026-01-01"}, "facts")[0].field == "facts"


def _containers(value: object) -> list[object]:
    found: list[object] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) in (dict, list):
            found.append(item)
            stack.extend(item.values() if type(item) is dict else item)  # type: ignore[union-attr]
    return found


@given(values)
def test_a_copy_equals_its_original_and_shares_no_container_with_it(value: object) -> None:
    copied = copy_plain(value)
    assert copied == value
    shared = {id(c) for c in _containers(value)} & {id(c) for c in _containers(copied)}
    assert not shared
