"""The hold-back window: any chunking releases exactly the whole-text result, and prose
is held back by at most its last word."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.guardrails.decision import review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.window import advance, advance_clean

KINDS = (
    DetectorKind.SECRETS,
    DetectorKind.EMAIL,
    DetectorKind.PHONE,
    DetectorKind.CREDIT_CARD,
    DetectorKind.IBAN,
    DetectorKind.US_SSN,
    DetectorKind.IP_ADDRESS,
)
REDACT_ALL = Scanner([RuleSource(Rule(k.value, k, GuardAction.REDACT)) for k in KINDS])
BASELINE = Scanner(
    [
        RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
        RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
        RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
    ]
)

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7Zq\n-----END RSA PRIVATE KEY-----"
FRAGMENTS = [
    "Hello",
    " there",
    ", ",
    ".",
    "\n",
    " ",
    "1",
    "42",
    "-",
    "4111 1111 1111 1111",
    "4111111111111112",
    "5500-0000-0000-0004",
    "jane.doe@corp.example.com",
    "a@b",
    ".co",
    "AKIAZ7Q2W9X4C6V8B1N3",
    "AKIA",
    "sk-",
    "q8Xr2LmZ7vK1pT9wq8Xr2LmZ7vK1pT9wZ3",
    'api_key = "q8Xr2LmZ7vK1pT9w"',
    "+1 415 555 0132",
    "123-45-6789",
    "DE89 3704 0044 0532 0130 00",
    "10.20.30.40",
    "version 1.2.3.4",
    PEM,
    "-----BEGIN",
    "\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 1111",  # full-width
    "jane\u200b.doe@corp.example.com",  # a zero-width space inside
    "\u0410KIAZ7Q2W9X4C6V8B1N3",  # a Cyrillic A
]


def chunked(scanner: Scanner, pieces: list[str]) -> tuple[str, str | None]:
    """Feed `pieces` through the window as a stream would; what was released, and the
    rule that blocked (None when none did)."""
    released, context, pending = "", "", ""
    for index, piece in enumerate([*pieces, ""]):
        step = advance(scanner, context, pending + piece, final=index == len(pieces))
        if step.blocked_by is not None:
            return released, step.blocked_by.name
        released += step.release
        context, pending = step.context, step.keep
    assert pending == ""
    return released, None


@st.composite
def texts_and_cuts(draw: st.DrawFn) -> tuple[str, list[str]]:
    text = "".join(draw(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=12)))
    cuts = sorted(draw(st.sets(st.integers(0, len(text)), max_size=8)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(case=texts_and_cuts())
def test_any_chunking_releases_the_whole_text_result(case):
    text, pieces = case
    whole = review(REDACT_ALL, text)
    released, blocked = chunked(REDACT_ALL, pieces)
    assert blocked is None
    assert released == whole.text


@settings(max_examples=400, deadline=None)
@given(case=texts_and_cuts())
def test_a_block_releases_nothing_of_the_match(case):
    """With secrets blocking: chunked and whole agree on the block, and what was released
    before it is a prefix of the text that stops before the secret."""
    text, pieces = case
    whole = review(BASELINE, text)
    released, blocked = chunked(BASELINE, pieces)
    assert blocked == (whole.blocked_by.name if whole.blocked_by else None)
    if blocked is None:
        assert released == whole.text
    else:
        first = min(f.start for f in BASELINE.find(text) if f.rule.name == "secrets")
        assert len(released) <= first or "[REDACTED" in released


def test_prose_flows_with_only_its_last_word_held():
    """A long clean answer token by token: after each token at most its last word waits,
    with the baseline profile (whose longest match, a PEM block, is 4 KB)."""
    prose = ("The quick brown fox jumps over the lazy dog, and then it rests. " * 40).split(" ")
    context, pending, most = "", "", 0
    for word in prose:
        step = advance(BASELINE, context, pending + word + " ", final=False)
        context, pending = step.context, step.keep
        most = max(most, len(pending))
    assert most == 0  # every token ends in a space: nothing could be in progress


def test_a_trailing_word_or_key_prefix_is_held_then_released():
    step = advance(BASELINE, "", "Your key is sk-", final=False)
    assert (step.release, step.keep) == ("Your key is ", "sk-")
    step = advance(BASELINE, step.context, step.keep + "less. Fine", final=False)
    assert step.release == "sk-less. " and step.keep == "Fine"


def test_a_pem_header_is_held_until_its_block_ends_then_blocks():
    step = advance(BASELINE, "", "Here it is: -----BEGIN RSA PRIV", final=False)
    assert step.release == "Here it is: " and step.keep.startswith("-----BEGIN")
    step = advance(BASELINE, step.context, step.keep + "ATE KEY-----\nMIIEow", final=False)
    assert step.release == "" and step.blocked_by is None
    end = "\n-----END RSA PRIVATE KEY-----\n"
    step = advance(BASELINE, step.context, step.keep + end, final=False)
    assert step.blocked_by is not None and step.blocked_by.name == "secrets"


@settings(max_examples=400, deadline=None)
@given(case=texts_and_cuts())
def test_the_clean_step_is_the_full_step_when_it_answers(case):
    """`advance_clean` (a stream's per-event path) releases, keeps and remembers what
    `advance` does, with nothing fired (it may decline: then `advance` decides)."""
    _, pieces = case
    for scanner in (BASELINE, REDACT_ALL):
        context, pending = "", ""
        for piece in pieces:
            full = advance(scanner, context, pending + piece, final=False)
            clean = advance_clean(scanner, context, pending + piece)
            if clean is not None:
                assert clean == (full.release, full.keep, full.context)
                assert full.fired == () and full.blocked_by is None
            if full.blocked_by is not None:
                break
            context, pending = full.context, full.keep


def test_a_match_held_back_holds_the_one_its_start_overlaps():
    """`api_key = "..."` begins inside the address before it (`...comapi`): held back from
    there, the address is held too, not sent redacted with its last letters sent again."""
    text = 'jane.doe@corp.example.comapi_key = "q8Xr2LmZ7vK1pT9w"'
    assert chunked(REDACT_ALL, [text]) == (review(REDACT_ALL, text).text, None)
