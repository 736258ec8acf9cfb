"""Traffic that carries secrets leaves none in the telemetry: a provider key from the
policy's environment, the caller's bearer token, a prompt holding a key-like string and
the completion text appear in no log line, no metric and no exported span."""

from __future__ import annotations

import json
import logging

import httpx2 as httpx
import pytest

from gateway.logs import JsonFormatter
from tests.support.telemetry import traced_gateway
from tests.support.upstream import Behaviour, MockUpstream

PROVIDER_KEY = "sk-obs-provider-7f3a9c1e5b2d4f6a8c0e"
PROMPT_KEY = "sk-live-PROMPTSECRET0123456789abcdef"
PROMPT = f"please store my key {PROMPT_KEY} and the words purple-walrus-prompt"
COMPLETION = "the completion says orange-narwhal-answer"
POLICY = """
providers:
  a: {{type: openai-compatible, api_base: "{a}", api_key: "${{OBS_TEST_API_KEY}}"}}
  b: {{type: openai-compatible, api_base: "{b}", api_key: "${{OBS_TEST_API_KEY}}"}}
models:
  m:
    deployments:
      - {{provider: a, model: model-a}}
      - {{provider: b, model: model-b, priority: 2}}
    routing: {{retries: 2, attempt_timeout_s: 5, timeout_s: 10}}
teams:
  demo: {{models: ["*"]}}
"""


class Lines(logging.Handler):
    """Every process log record, formatted as the gateway writes it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def process_log():
    handler = Lines()
    root = logging.getLogger()
    gateway_logger = logging.getLogger("gateway")
    old_level = gateway_logger.level
    root.addHandler(handler)
    gateway_logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        gateway_logger.setLevel(old_level)


async def test_no_secret_or_conversation_text_in_logs_metrics_or_spans(
    tmp_path, monkeypatch, process_log
):
    """Whole, streamed and failed-over requests with secrets in them: every sink is clean."""
    monkeypatch.setenv("OBS_TEST_API_KEY", PROVIDER_KEY)
    access = tmp_path / "access.log"
    async with MockUpstream("a", api_key=PROVIDER_KEY) as a, MockUpstream("b") as b:
        # The first upstream fails, echoing our key and the prompt back in its error body.
        a.script([Behaviour("status", status=500, body=f"bad key {PROVIDER_KEY}: {PROMPT}")])
        a.behave(Behaviour("ok", content=COMPLETION))
        b.behave(Behaviour("ok", content=COMPLETION))
        policy = POLICY.format(a=a.base_url, b=b.base_url)
        async with traced_gateway(tmp_path, policy, access_log=str(access)) as (gw, spans):
            token = await gw.token()
            client = await gw.openai()
            messages = [{"role": "user", "content": PROMPT}]
            for stream in (False, False, True):
                reply = await client.chat.completions.create(
                    model="m", messages=messages, stream=stream
                )
                if stream:
                    text = "".join(
                        [c.choices[0].delta.content or "" async for c in reply if c.choices]
                    )
                else:
                    text = reply.choices[0].message.content
                assert text == COMPLETION
            async with httpx.AsyncClient(base_url=gw.origin) as http:
                bad = await http.post(
                    "/v1/chat/completions",
                    json={"model": "no-such-model", "messages": messages},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert bad.status_code == 404
                metrics = (await http.get("/metrics")).text
            finished = spans.get_finished_spans()
    assert a.requests[0].headers["authorization"] == f"Bearer {PROVIDER_KEY}"  # it was used
    access_lines = access.read_text().splitlines()
    assert len(access_lines) == 4
    assert all(json.loads(line)["trace_id"] for line in access_lines)
    assert len(finished) == 4 + 4  # four server spans, four attempts (one failed)
    exported = [span.to_json() for span in finished]
    sinks = {
        "access log": "\n".join(access_lines),
        "process log": "\n".join(process_log.lines),
        "metrics": metrics,
        "spans": "\n".join(exported),
    }
    assert any("upstream attempt failed" in line for line in process_log.lines)
    for sink, text in sinks.items():
        for secret in (PROVIDER_KEY, token, PROMPT_KEY, "purple-walrus-prompt", "orange-narwhal"):
            assert secret not in text, f"{secret[:12]}… found in the {sink}"
