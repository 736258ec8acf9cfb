"""An upstream's whole answer is read as the openai SDK's reader (Python's `json`) reads
it: what orjson refuses but that reader takes is served, lone surrogates as U+FFFD."""

import orjson
import pytest

from gateway.guardrails.normalize import fold
from gateway.providers.answer_json import read_answer


def test_an_answer_orjson_reads_is_relayed_as_it_came():
    body = b'{"a": "caf\xc3\xa9",  "n": 1}'
    value, raw = read_answer(body)
    assert value == {"a": "café", "n": 1} and raw is body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "x\\ud83dy"}', {"a": "x\ufffdy"}),
        (b'{"a": ["\\udc00", {"\\ud800k": "v"}]}', {"a": ["\ufffd", {"\ufffdk": "v"}]}),
        (b'{"a": "\\ud83d\\ude00"}', {"a": "\U0001f600"}),  # a pair is one character
    ],
)
def test_lone_surrogates_become_the_replacement_character(body, expected):
    value, raw = read_answer(body)
    assert value == expected and orjson.loads(raw) == expected


def test_numbers_orjson_refuses_are_read_as_json_reads_them():
    value, raw = read_answer(b'{"big": 123456789012345678901234567890, "x": "\\ud83d"}')
    assert value["big"] == 123456789012345678901234567890
    assert b"123456789012345678901234567890" in raw


@pytest.mark.parametrize("body", [b"not json", b'{"a": ', b"[" * 100_000 + b"]" * 100_000])
def test_no_json_is_a_value_error(body):
    with pytest.raises(ValueError):
        read_answer(body)


def test_fold_reads_a_lone_surrogate_as_the_replacement_character():
    folded = fold("key \ud83d AKIA")
    assert folded.text == "key \ufffd AKIA"
