"""Responses deltas beyond the text, arguments and code events: a shell call's command
(`response.shell_call_command.delta`, by output index, no item id), its output
(`response.shell_call_output_content.delta`, stdout and stderr as named texts), and any
other `*.delta` with a string (a vendor's, a later API's) are growing texts too, held
back and scanned across events. Before, each event was reviewed alone, and a key or a
blocked word split across two of them reached the client (probe p16)."""

import json
from typing import Any

import pytest

from gateway.guardrails.kinds import DetectorKind, GuardAction
from gateway.guardrails.scanner import Rule, RuleSource, Scanner
from tests.support.output_stream import scan_stream

KEY = "AKIAIOSFODNN7EXAMPLE"
BLOCK = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.BLOCK))])
REDACT = Scanner([RuleSource(Rule("secrets", DetectorKind.SECRETS, GuardAction.REDACT))])
SCANNERS = pytest.mark.parametrize("scanner", [BLOCK, REDACT], ids=["block", "redact"])


def sse(data: dict[str, Any]) -> bytes:
    return b"event: " + data["type"].encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


def command(text: str, output_index: int = 0, number: int = 1) -> bytes:
    return sse(
        {"type": "response.shell_call_command.delta", "output_index": output_index}
        | {"command_index": 0, "delta": text, "sequence_number": number}
    )


def output(delta: dict[str, str | None], number: int = 1) -> bytes:
    return sse(
        {"type": "response.shell_call_output_content.delta", "item_id": "sh_1"}
        | {"output_index": 0, "command_index": 0, "delta": delta, "sequence_number": number}
    )


def vendor(text: str) -> bytes:
    return sse({"type": "response.vendor_thing.delta", "item_id": "v_1", "delta": text})


COMPLETED = sse({"type": "response.completed", "response": {"id": "resp_1", "output": []}})


def client_texts(out: bytes) -> dict[tuple[str, int], str]:
    """What the client read in the deltas, by text (member, or "delta"; output index)."""
    texts: dict[tuple[str, int], str] = {}
    for line in out.split(b"\n"):
        if line.startswith(b"data: {"):
            data = json.loads(line[6:])
            if data.get("type", "").endswith(".delta"):
                value = data["delta"]
                named = value.items() if type(value) is dict else [("delta", value)]
                for member, piece in named:
                    place = (member, data.get("output_index", 0))
                    texts[place] = texts.get(place, "") + (piece or "")
    return texts


def client_text(out: bytes) -> str:
    return "".join(client_texts(out).values())


def caught(out: bytes, ended: bool) -> bool:
    seen = client_text(out)
    return KEY[:10] not in seen and KEY[10:] not in seen and (ended or "[REDACTED" in seen)


@SCANNERS
def test_a_key_split_across_shell_command_deltas_is_caught(scanner):
    out, ended = scan_stream(
        scanner,
        [command("echo " + KEY[:10], number=1), command(KEY[10:], number=2), COMPLETED],
        "responses",
    )
    assert caught(out, ended), out


@SCANNERS
def test_a_key_split_across_shell_output_deltas_is_caught(scanner):
    events = [output({"stdout": "aws_key=" + KEY[:10]}), output({"stdout": KEY[10:] + "\n"})]
    out, ended = scan_stream(scanner, [*events, COMPLETED], "responses")
    assert caught(out, ended), out


@SCANNERS
def test_an_unknown_delta_event_s_text_is_scanned_across_events(scanner):
    out, ended = scan_stream(
        scanner, [vendor("k " + KEY[:10]), vendor(KEY[10:]), COMPLETED], "responses"
    )
    assert caught(out, ended), out


def test_stdout_and_stderr_are_texts_of_their_own():
    """Half a key on stdout and the other half on stderr spell no key to a reader."""
    events = [output({"stdout": KEY[:10], "stderr": None}), output({"stderr": KEY[10:]})]
    out, ended = scan_stream(BLOCK, [*events, COMPLETED], "responses")
    assert not ended and client_texts(out) == {("stdout", 0): KEY[:10], ("stderr", 0): KEY[10:]}


def test_commands_of_two_output_items_are_two_texts():
    events = [command("ls ", 0), command("pwd ", 1), command("-la", 0), COMPLETED]
    out, ended = scan_stream(BLOCK, events, "responses")
    assert not ended and client_texts(out) == {("delta", 0): "ls -la", ("delta", 1): "pwd "}


def test_clean_shell_output_reaches_the_client_whole():
    events = [output({"stdout": "total 0\n"}), output({"stdout": "done\n", "stderr": ""})]
    out, ended = scan_stream(REDACT, [*events, COMPLETED], "responses")
    assert not ended and client_texts(out) == {("stdout", 0): "total 0\ndone\n", ("stderr", 0): ""}


def test_audio_deltas_are_not_held_as_text():
    audio = sse({"type": "response.audio.delta", "item_id": "a_1", "delta": "QUtJQUlPU0ZPRE5O"})
    out, ended = scan_stream(REDACT, [audio, COMPLETED], "responses")
    assert not ended and out.startswith(audio)


def structured(delta: Any, number: int = 1) -> bytes:
    return sse(
        {"type": "response.vendor_output.delta", "item_id": "v_2", "output_index": 0}
        | {"delta": delta, "sequence_number": number}
    )


@SCANNERS
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"stdout": "k=" + KEY[:10], "truncated": False}, {"stdout": KEY[10:], "truncated": False}),
        (["k=" + KEY[:10]], [KEY[10:]]),
        ({"out": {"text": "k=" + KEY[:10], "n": 1}}, {"out": {"text": KEY[10:], "n": 2}}),
    ],
    ids=["beside-a-flag", "list", "nested"],
)
def test_a_key_split_across_structured_deltas_is_caught(scanner, first, second):
    """Probe p20: a flag beside `stdout`, a list or a nested object made the delta one
    reviewed whole per event, and the split key went through."""
    out, ended = scan_stream(
        scanner, [structured(first, 1), structured(second, 2), COMPLETED], "responses"
    )
    assert KEY[10:] not in out.decode() and KEY[:10] not in out.decode(), out
    assert ended or b"[REDACTED" in out


def test_a_clean_structured_delta_keeps_its_shape_and_flags():
    events = [structured({"stdout": "ok ", "truncated": False}), structured({"stdout": "done"})]
    out, ended = scan_stream(REDACT, [*events, COMPLETED], "responses")
    deltas = [
        json.loads(line[6:])["delta"]
        for line in out.split(b"\n")
        if line.startswith(b"data: ") and b".delta" in line
    ]
    assert not ended
    assert "".join(d["stdout"] for d in deltas) == "ok done"
    assert all(d.get("truncated", False) is False for d in deltas)


def test_a_key_in_a_structured_delta_s_key_is_reviewed():
    out, ended = scan_stream(BLOCK, [structured({KEY: "x"}), COMPLETED], "responses")
    assert ended and KEY.encode() not in out
