"""Guardrail costs and quality, in-process (no servers): run from the repo root.

    PYTHONPATH=. python bench/guardrails_bench.py

(a) the baseline profile (secrets block, email redact, credit_card redact) on a 4 KB
    chat prompt, µs per request, against the same request with no guardrails;
(b) the output scanner's CPU on a 20-event chat stream, with and without it: words
    that end in a space (nothing held), and bench/mock_upstream.py's stream (words that
    begin with one, as OpenAI's tokens do: each event's last word is held, so every
    event is rewritten; the end-to-end bench streams these);
(c) precision and recall per detector on tests/guardrails/corpus.jsonl (every rule
    redacts; a planted value counts as found when the rule of its detector fired and
    the value no longer appears; a negative line counts as a false positive when any
    rule fired);
(d) the output scanner's CPU on a Responses stream whose tool item and whole texts are
    reviewed whole (`*.added`, `*.done`, `response.completed`) beside 18 text deltas.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
from mock_upstream import build_stream

from gateway.guardrails.check import check_request
from gateway.guardrails.decision import review
from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from gateway.guardrails.stream_scanner import OutputScanner
from gateway.stream.steps import Chain
from gateway.stream.usage_observer import UsageObserver

CORPUS = Path(__file__).parent.parent / "tests" / "guardrails" / "corpus.jsonl"
DETECTORS = ("secrets", "email", "phone", "credit_card", "iban", "us_ssn", "ip_address")


def per_call_us(fn, n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


def baseline() -> Scanner:
    return Scanner(
        [
            RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK)),
            RuleSource(Rule("email", DetectorKind.EMAIL, GuardAction.REDACT)),
            RuleSource(Rule("credit_card", DetectorKind.CREDIT_CARD, GuardAction.REDACT)),
        ]
    )


def prompt_4kb() -> dict:
    prose = (
        "Summarise the quarterly report: revenue grew 12% to 4.2M, churn fell to 3.1%, "
        "and the team shipped v2.14.3 with the new billing flow (ticket OPS-4471). "
    )
    text = (prose * 40)[:4096]
    return {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
    }


def stream_words() -> list[str]:
    return [
        "The",
        "quarterly",
        "numbers",
        "look",
        "healthy",
        "and",
        "the",
        "billing",
        "flow",
        "shipped",
        "on",
        "time",
    ]


def stream_events() -> list[bytes]:
    words = stream_words()
    events = []
    for i in range(18):
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {"content": words[i % len(words)] + " "},
                    "finish_reason": None,
                }
            ],
        }
        events.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
    events.append(b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    events.append(b"data: [DONE]\n\n")
    return events


def responses_events() -> list[bytes]:
    """A Responses stream as OpenAI sends one: the response created, a web search call
    (added, searching, done with its sources), a message (item and part added, 18 text
    deltas, the text, part and item done), the response completed."""
    search = {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {
            "type": "search",
            "query": "quarterly billing numbers",
            "sources": [
                {"type": "url", "url": f"https://example.com/reports/{n}"} for n in range(5)
            ],
        },
    }
    text = " ".join(w for w, _ in zip(stream_words() * 2, range(18), strict=False))
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    message = {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant"}
    message |= {"content": [part]}
    response = {"id": "resp_1", "object": "response", "created_at": 1, "model": "m"}
    at = {"item_id": "msg_1", "output_index": 1, "content_index": 0}
    events: list[dict] = [
        {"type": "response.created", "response": {**response, "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": search},
        {"type": "response.web_search_call.searching", "item_id": "ws_1", "output_index": 0},
        {"type": "response.output_item.done", "output_index": 0, "item": search},
        {"type": "response.output_item.added", "output_index": 1, "item": message},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
    ]
    events += [
        {"type": "response.output_text.delta", **at, "delta": word + " ", "logprobs": []}
        for word, _ in zip(stream_words() * 2, range(18), strict=False)
    ]
    events += [
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
        {"type": "response.output_item.done", "output_index": 1, "item": message},
        {"type": "response.completed", "response": {**response, "output": [search, message]}},
    ]
    out = []
    for number, event in enumerate(events):
        data = orjson.dumps({**event, "sequence_number": number})
        out.append(b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n")
    return out


def run_stream(events: list[bytes], scanner: Scanner | None, endpoint: str = "chat") -> None:
    steps = [] if scanner is None else [OutputScanner(scanner, endpoint, [])]
    chain = Chain(
        [*steps, UsageObserver(endpoint, client_wants_usage=False, body={}, model="gpt-4o")]
    )
    for event in events:
        chain.feed(event)
    chain.finish()


def quality() -> dict[str, tuple[int, int, int]]:
    scanner = Scanner([RuleSource(Rule(d, DetectorKind(d), GuardAction.REDACT)) for d in DETECTORS])
    found = {d: [0, 0, 0] for d in DETECTORS}  # planted, caught, false positives
    negatives = 0
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        result = review(scanner, row["text"])
        fired = {r.name for r in result.fired}
        if row["planted"]:
            d = row["detector"]
            found[d][0] += 1
            if d in fired and row["value"] not in result.text:
                found[d][1] += 1
            for other in fired - {
                d
            }:  # a planted card that also fires `phone` is a false positive of phone
                found[other][2] += 1
        else:
            negatives += 1
            for name in fired:
                found[name][2] += 1
    return {d: (v[0], v[1], v[2]) for d, v in found.items()} | {"_negatives": (negatives, 0, 0)}


def main() -> None:
    body = prompt_4kb()
    empty = Scanner([])
    scanner = baseline()
    bare = per_call_us(lambda: check_request(empty, "chat", body), 20000)
    guarded = per_call_us(lambda: check_request(scanner, "chat", body), 5000)
    events = stream_events()
    plain = per_call_us(lambda: run_stream(events, None), 3000)
    scanned = per_call_us(lambda: run_stream(events, scanner), 3000)
    print(
        f"(a) 4 KB chat prompt, baseline profile: {guarded:.1f} µs (no guardrails: {bare:.2f} µs)"
    )
    print(
        f"(b) 20-event stream through the steps: {scanned:.1f} µs with the output scanner, "
        f"{plain:.1f} µs without (+{scanned - plain:.1f} µs)"
    )
    mock = build_stream(include_usage=False)
    plain = per_call_us(lambda: run_stream(mock, None), 3000)
    scanned = per_call_us(lambda: run_stream(mock, scanner), 3000)
    print(
        f"    the mock upstream's stream (last word held): {scanned:.1f} µs with the output "
        f"scanner, {plain:.1f} µs without (+{scanned - plain:.1f} µs)"
    )
    stats = quality()
    negatives = stats.pop("_negatives")[0]
    print(f"(c) corpus {CORPUS.name}: {negatives} negative lines")
    print("| detector | planted | recall | false positives (lines) |")
    print("|---|---:|---:|---:|")
    for d, (planted, caught, fps) in stats.items():
        recall = f"{caught / planted:.1%}" if planted else "n/a"
        print(f"| {d} | {planted} | {recall} | {fps} |")
    responses = responses_events()
    plain = per_call_us(lambda: run_stream(responses, None, "responses"), 2000)
    scanned = per_call_us(lambda: run_stream(responses, scanner, "responses"), 2000)
    print(
        f"(d) {len(responses)}-event Responses stream (a web search with 5 sources, 18 text "
        f"deltas, items and parts added and done): {scanned:.1f} µs with the output scanner, "
        f"{plain:.1f} µs without (+{scanned - plain:.1f} µs)"
    )


if __name__ == "__main__":
    main()
