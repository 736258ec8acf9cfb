"""What is cacheable and storable (gateway/cache/rules.py); Cache-Control is
test_directives.py."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cache.rules import Uncacheable, is_storable, uncacheable


@pytest.mark.parametrize(
    ("endpoint", "body", "why"),
    [
        ("chat", {"messages": []}, None),
        ("chat", {"messages": [], "n": 1}, None),
        ("chat", {"messages": [], "n": None}, None),
        ("completions", {"prompt": "x"}, None),
        ("embeddings", {"input": "x"}, None),
        ("chat", {"messages": [], "n": 2}, Uncacheable.SEVERAL_CHOICES),
        ("completions", {"prompt": "x", "n": 3}, Uncacheable.SEVERAL_CHOICES),
        ("chat", {"messages": [], "n": True}, Uncacheable.SEVERAL_CHOICES),
        ("chat", {"messages": [], "n": "1"}, Uncacheable.SEVERAL_CHOICES),
        ("chat", {"messages": [], "n": 1.0}, Uncacheable.SEVERAL_CHOICES),
        ("responses", {"input": "x"}, Uncacheable.ENDPOINT),
    ],
)
def test_what_is_cacheable(endpoint: str, body: dict[str, object], why: Uncacheable | None) -> None:
    """n > 1 asks for distinct samples; the Responses API keeps state upstream."""
    assert uncacheable(endpoint, body) == why


@pytest.mark.parametrize(
    ("endpoint", "whole", "storable"),
    [
        ("chat", {"choices": [{"index": 0}]}, True),
        ("chat", {"choices": [{"index": 0}], "error": None}, True),
        ("completions", {"choices": [{"text": "x"}]}, True),
        ("embeddings", {"data": [{"embedding": [0.1]}]}, True),
        ("chat", {"choices": []}, False),
        ("chat", {}, False),
        ("chat", {"error": {"message": "x"}}, False),
        ("chat", {"error": "x", "choices": [{"index": 0}]}, False),
        ("embeddings", {"data": []}, False),
        ("embeddings", {"choices": [{"index": 0}]}, False),
        ("chat", [{"choices": [1]}], False),
        ("chat", None, False),
    ],
)
def test_only_a_success_with_an_answer_is_storable(
    endpoint: str, whole: object, storable: bool
) -> None:
    assert is_storable(endpoint, whole) is storable


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@given(
    st.sampled_from(["chat", "completions", "embeddings"]),
    st.dictionaries(st.sampled_from(["choices", "data", "error", "id"]), _JSON),
)
def test_an_error_is_never_storable(endpoint: str, whole: dict[str, object]) -> None:
    """Whatever else it holds, an answer with an error object is never kept, and one
    that is kept has a non-empty list of answers."""
    if is_storable(endpoint, whole):
        assert whole.get("error") is None
        answers = whole["data" if endpoint == "embeddings" else "choices"]
        assert isinstance(answers, list) and answers
