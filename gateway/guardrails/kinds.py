"""The closed sets of the guardrails section: detectors, actions, where a rule looks.

No imports from the rest of the gateway, so the policy schema can use them.
"""

from __future__ import annotations

from enum import StrEnum


class DetectorKind(StrEnum):
    SECRETS = "secrets"
    EMAIL = "email"
    PHONE = "phone"
    CREDIT_CARD = "credit_card"
    IBAN = "iban"
    US_SSN = "us_ssn"
    IP_ADDRESS = "ip_address"
    PATTERN = "pattern"  # an admin's own regular expression
    KEYWORDS = "keywords"  # a list of words or phrases
    CLASSIFIER = "classifier"  # an external model's score
    MAX_INPUT_TOKENS = "max_input_tokens"  # the profile's token limit (a profile field)


class GuardAction(StrEnum):
    BLOCK = "block"  # 400 content_policy_violation naming the rule
    REDACT = "redact"  # the match becomes [REDACTED:<rule>]
    FLAG = "flag"  # nothing changes; the request records that the rule fired


class Where(StrEnum):
    INPUT = "input"  # what the request carries upstream
    OUTPUT = "output"  # what the answer carries to the client


class FailMode(StrEnum):
    """What a classifier rule decides when its classifier cannot answer."""

    CLOSED = "closed"  # refuse the request (the default)
    OPEN = "open"  # let it through, flagged as unchecked
