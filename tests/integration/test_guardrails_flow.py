"""Output guardrails on a live stream, and the ledger naming the rules that fired,
through the official openai SDK against a real gateway and a mock upstream."""

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.gateway import running_gateway
from tests.support.upstream import Behaviour, MockUpstream

# One team, one model; `{profile}` names the team's guardrail profile, defined below it.
HEAD = """
providers:
  up: {{type: openai-compatible, api_base: "{base}", api_key: "${{UPSTREAM_KEY}}"}}
models:
  gpt-4o-mini:
    deployments: [{{provider: up, model: upstream-chat}}]
teams:
  demo: {{models: ["*"], guardrails: [{profile}]}}
guardrails:
"""
POLICY = (
    HEAD.replace("{profile}", "baseline")
    + """  baseline:
    input:
      - {{detector: secrets, action: block}}
      - {{detector: email, action: redact}}
    output:
      - {{detector: secrets, action: block}}
      - {{detector: email, action: redact}}
      - {{detector: credit_card, action: redact}}
"""
)
LEAKED_KEY = "AKIA" + "Z7Q2W9X4C6V8B1N3"  # an AWS access key id, made up here
CARD = "4111 1111 1111 1111"  # Luhn-valid test card


def ledger_rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM usage_ledger")]
    return {row["request_id"]: row for row in rows}


async def test_a_long_clean_answer_streams_as_it_comes(tmp_path, monkeypatch):
    """With secrets (4 KB PEM blocks) on output, the first content delta of a long clean
    answer reaches the client while the upstream is still streaming, not at its end: the
    upstream takes 40 x 50 ms, and at least a second of it is still to come."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    answer = "The quick brown fox jumps over the lazy dog near the river bank. " * 30
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", content=answer, chunks=40, chunk_delay_s=0.05))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "tell me"}], stream=True
            )
            text = ""
            first_at: float | None = None
            async for chunk in stream:
                piece = chunk.choices[0].delta.content if chunk.choices else None
                if piece and first_at is None:
                    first_at = time.monotonic()
                    still_streaming = not up.requests[0].completed
                text += piece or ""
            ended_at = time.monotonic()
    assert first_at is not None and still_streaming
    assert ended_at - first_at > 1.0
    assert text == answer


async def test_ledger_rows_name_the_rule_that_blocked_or_redacted(tmp_path, monkeypatch):
    """A blocked prompt, a redacted prompt and a streamed answer with a card: each ledger
    row names the rule, its action and side, and never the matched text."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": f"deploy with {LEAKED_KEY}"}],
                )
            blocked_id = caught.value.request_id
            redacted = await client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "mail jane.doe@corp.example.com"}],
            )
            up.behave(Behaviour("ok", content=f"Your card {CARD} is on file.", chunks=6))
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "card?"}], stream=True
            )
            streamed_id = stream.response.headers["x-request-id"]
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "Your card [REDACTED:credit_card] is on file."
            await asyncio.sleep(0)
    rows = ledger_rows(tmp_path)  # the gateway stopped: its writer flushed every row
    blocked, redacted_row, streamed = (
        rows[blocked_id],
        rows[redacted._request_id],
        rows[streamed_id],
    )
    assert blocked["status"] == 400 and blocked["error_code"] == "content_policy_violation"
    assert json.loads(blocked["guardrails"]) == [
        {"rule": "secrets", "action": "block", "where": "input"}
    ]
    assert json.loads(redacted_row["guardrails"]) == [
        {"rule": "email", "action": "redact", "where": "input"}
    ]
    assert json.loads(streamed["guardrails"]) == [
        {"rule": "credit_card", "action": "redact", "where": "output"}
    ]
    stored = json.dumps(list(rows.values()))
    assert LEAKED_KEY not in stored and "jane.doe" not in stored and "1111" not in stored


POSIX_POLICY = (
    HEAD.replace("{profile}", "codes")
    + """  codes:
    output:
      - {{detector: pattern, name: codes, pattern: "[[:digit:]]{{8}}", action: block}}
"""
)


async def test_a_posix_class_pattern_split_across_events_blocks_and_leaks_no_digit(
    tmp_path, monkeypatch
):
    """An admin pattern RE2 reads differently from Python (`[[:digit:]]{8}`), its match
    split across two stream events: the stream ends with the block, no digit of it sent."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        async with running_gateway(tmp_path, POSIX_POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            up.behave(Behaviour("ok", content="code 12345678 x", chunks=2))  # "code 12|345678 x"
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "code?"}], stream=True
            )
            text = ""
            with pytest.raises(openai.APIError) as caught:
                async for chunk in stream:
                    text += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert "'codes'" in caught.value.message
    assert not any(c.isdigit() for c in text)


async def test_a_stream_blocked_mid_way_is_a_400_refused_row(tmp_path, monkeypatch):
    """An answer that leaks a key mid-stream ends with a content_policy_violation event;
    the ledger row says 400 refused, as for a whole answer, though the stream began 200."""
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-secret")
    async with MockUpstream("up") as up:
        up.behave(Behaviour("ok", content=f"Here it is: {LEAKED_KEY} enjoy.", chunks=6))
        async with running_gateway(tmp_path, POLICY.format(base=up.base_url)) as gw:
            client = await gw.openai()
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "key?"}], stream=True
            )
            request_id = stream.response.headers["x-request-id"]
            assert stream.response.status_code == 200
            with pytest.raises(openai.APIError):
                async for _ in stream:
                    pass
    row = ledger_rows(tmp_path)[request_id]
    assert (row["status"], row["outcome"], row["error_code"]) == (
        400,
        "refused",
        "content_policy_violation",
    )
