"""Which 200 bodies are an error in place of an answer (gateway/providers/error_answer.py)."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers.error_answer import is_error_answer, may_hold_error

ERRORS = [
    {"error": {"message": "provider overloaded", "code": 502}},
    {"error": "model is loading"},
    {"error": {"message": "x"}, "choices": None},
    {"error": {"message": "x"}, "data": []},
]
ANSWERS = [
    {"id": "c", "object": "chat.completion", "choices": [{"index": 0}]},
    {"object": "list", "data": [{"embedding": [0.1]}]},
    {"id": "r", "object": "response", "status": "completed", "error": None, "output": []},
    {"id": "r", "object": "response", "status": "failed", "error": {"message": "x"}},
    {"id": "c", "choices": [{"index": 0}], "error": {"message": "partial"}},
]


@pytest.mark.parametrize("body", ERRORS)
def test_an_error_alone_is_no_answer(body):
    for spelled in (orjson.dumps(body), orjson.dumps(body, option=orjson.OPT_INDENT_2)):
        assert may_hold_error(spelled)
    assert is_error_answer(body)


@pytest.mark.parametrize("body", ANSWERS)
def test_an_answer_is_one(body):
    assert not is_error_answer(body)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id":"c","choices":[{"message":{"content":"say \\"error\\""}}]}',
        b'{"object":"response","error":null,"output":[]}',
        b'{"object":"response","error" :  null}',
    ],
)
def test_the_bytes_check_lets_answers_pass_unparsed(raw):
    assert not may_hold_error(raw)
