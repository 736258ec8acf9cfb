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
    rule fired).
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


def stream_events() -> list[bytes]:
    words = [
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


def run_stream(events: list[bytes], scanner: Scanner | None) -> None:
    steps = [] if scanner is None else [OutputScanner(scanner, "chat", [])]
    chain = Chain(
        [*steps, UsageObserver("chat", client_wants_usage=False, body={}, model="gpt-4o")]
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


if __name__ == "__main__":
    main()
