"""The pure reading of Responses delta events (guardrails/response_deltas.py): which
`*.delta` grows a text, where a structured delta's strings stand, and putting a text
back at its place (the scanner's flush events are built this way)."""

import string

from hypothesis import given
from hypothesis import strategies as st

from gateway.guardrails.response_deltas import (
    delta_key,
    emptied,
    grows_a_text,
    keys_of,
    string_leaves,
    with_leaf,
)

identifiers = st.text(string.ascii_letters + "_", min_size=1, max_size=8)
leaves = st.one_of(st.text(max_size=6), st.integers(), st.booleans(), st.none())
deltas = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(identifiers, inner, max_size=3)
    ),
    max_leaves=12,
)


@given(deltas)
def test_each_leaf_put_back_in_its_place_gives_the_delta_again(delta):
    found = string_leaves(delta)
    if found is None:
        return
    for path, text in found:
        assert with_leaf(delta, path, text) == delta
        changed = with_leaf(delta, path, text + "!")
        assert (path, text + "!") in string_leaves(changed)


@given(deltas)
def test_emptied_keeps_the_shape_and_empties_every_string(delta):
    found = string_leaves(delta)
    if found is None:
        return
    assert string_leaves(emptied(delta)) == [(path, "") for path, _ in found]
    assert keys_of(emptied(delta)) == keys_of(delta)


def test_which_deltas_grow_a_text():
    assert grows_a_text("response.output_text.delta", "hi")
    assert grows_a_text("response.shell_call_command.delta", "ls")
    assert grows_a_text("vendor.thing.delta", {"stdout": "a", "truncated": False})
    assert grows_a_text("vendor.thing.delta", [["a"], {"b": "c"}])
    assert not grows_a_text("response.audio.delta", "AAAA")  # base64 audio, no text
    assert not grows_a_text("response.output_text.done", "hi")
    assert not grows_a_text("vendor.thing.delta", {"n": 1})  # no string in it
    assert not grows_a_text("vendor.thing.delta", {"not an identifier": "a"})
    assert not grows_a_text(None, "hi")


def test_a_structured_delta_too_deep_or_oddly_keyed_has_no_leaves():
    deep: object = "x"
    for _ in range(9):
        deep = {"a": deep}
    assert string_leaves(deep) is None
    assert string_leaves({"a": {"b": "x"}}) == [(("a", "b"), "x")]
    assert string_leaves({"1a": "x"}) is None
    assert string_leaves("x") is None  # a plain string is no structure


def test_the_text_a_delta_grows():
    event = {"item_id": "sh_1", "output_index": 3, "command_index": 0}
    assert delta_key("k", event) == ("k", "sh_1", 0)
    assert delta_key("k", {"output_index": 3.0}) == ("k", 3, None)
    assert delta_key("k", {"output_index": 3}, ("stdout",)) == ("k/stdout", 3, None)
