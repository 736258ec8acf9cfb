"""Which 429 bodies say the request itself is too large (error_shape.is_request_too_large):
OpenAI's and Azure's wording, any case, after spaces; never a busy deployment's 429."""

import pytest

from gateway.providers.error_shape import is_request_too_large

OPENAI = (
    "Request too large for gpt-4o in organization org-abc on tokens per min (TPM): Limit "
    "30000, Requested 45000. The input or output tokens must be reduced in order to run "
    "successfully. Visit https://platform.openai.com/account/rate-limits to learn more."
)


@pytest.mark.parametrize("message", [OPENAI, "request too large", "  Request Too Large."])
def test_the_request_too_large_wordings(message):
    assert is_request_too_large({"message": message, "type": "tokens"})


@pytest.mark.parametrize(
    "fields",
    [
        {"message": "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000."},
        {"message": "You exceeded your current quota", "code": "insufficient_quota"},
        {"message": "The request too large was not"},
        {"message": "Request too largely"},
        {"message": None},
        {"message": ["Request too large"]},
        {},
    ],
)
def test_other_429s_are_not(fields):
    assert not is_request_too_large(fields)
