"""The model allow-list: an empty list allows nothing, "*" everything, else exactly the list."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.policy.compiled import TeamRules

names = st.text(alphabet="abcdefgh-.", min_size=1, max_size=8)


@given(alias=names)
def test_an_empty_list_allows_no_model(alias: str) -> None:
    assert not TeamRules("t", False, frozenset()).allows(alias)


@given(models=st.frozensets(names), alias=names)
def test_a_list_allows_exactly_its_models(models: frozenset[str], alias: str) -> None:
    assert TeamRules("t", False, models).allows(alias) == (alias in models)
    assert TeamRules("t", True, models).allows(alias)
