"""A message's text parts read as one text: an upstream joins them before the model reads
them, so a match may run across parts ("AKIAIOSFO" + "DNN7EXAMPLE") that neither part
holds alone.

`rewrite_joined_parts(parts, fn)` calls `fn` once on the parts' texts joined (with
nothing between them: a secret split mid-word is the attack; a separator would only
make matches), and writes each span `fn` names back into the parts it covers: the
marker in the first, the covered characters dropped from the others, so each part
keeps its place and type. Each part alone is scanned by texts.py as before: a match a
part holds at its own edges is found either way. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.guardrails.json_texts import TextFn
from gateway.guardrails.scanner import Redaction, apply_redactions

# Parts whose `text` an upstream joins into the message's text (a part without a type
# is read as text too).
_TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})


def _joined_text(part: Any) -> str | None:
    """A part's text when an upstream joins it with the message's other texts."""
    if not isinstance(part, Mapping):
        return None
    text = part.get("text")
    kind = part.get("type")
    if not isinstance(text, str) or not text:
        return None
    return text if kind is None or (isinstance(kind, str) and kind in _TEXT_PART_TYPES) else None


def split_spans(lengths: Sequence[int], spans: Sequence[Redaction]) -> list[list[Redaction]]:
    """Spans of the joined text (ordered, disjoint) as spans of each piece, given the
    pieces' lengths: a span's marker goes where it begins, its characters in the pieces
    after are replaced by nothing."""
    out: list[list[Redaction]] = [[] for _ in lengths]
    offset = 0
    for piece, length in enumerate(lengths):
        end_of_piece = offset + length
        for start, end, marker in spans:
            if end <= offset or start >= end_of_piece:
                continue
            local = (max(start, offset) - offset, min(end, end_of_piece) - offset)
            out[piece].append((*local, marker if start >= offset else ""))
        offset = end_of_piece
    return out


def rewrite_joined_parts(parts: list[Any], fn: TextFn) -> list[Any]:
    """`parts` with the matches their joined text holds redacted (the same list when none,
    or when fewer than two parts hold text: most messages)."""
    places = [(i, text) for i, part in enumerate(parts) if (text := _joined_text(part))]
    if len(places) < 2:
        return parts
    spans = fn("".join(text for _, text in places))
    if not spans:
        return parts
    out = list(parts)
    pieces = split_spans([len(text) for _, text in places], spans)
    for (i, text), mine in zip(places, pieces, strict=True):
        if not mine:
            continue
        part = {**parts[i], "text": apply_redactions(text, mine)}
        if part.get("logprobs"):
            part["logprobs"] = []  # the tokens spell the text a rule rewrote
        out[i] = part
    return out
