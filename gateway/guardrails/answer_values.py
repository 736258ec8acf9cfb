"""The texts of an object an answer carries whole (a web search's `action`, a code
interpreter's `outputs`, file search `results`, a citation, a stream event's own key):
every string anywhere in it but its structure. Pure.

Structure is a closed set of keys (`STRUCTURE`): ids, `type`, `status`, `role`, indexes
and sequence numbers, the model, `object`, times. Their values are left alone at any
depth; every other string is a text of the answer, rewritten as `fn` says, and every
other key a name, scanned alone and never rewritten (json_texts.check_name: a redact
rule matching one refuses the answer, as it does for an unknown field's key). A `name`
value is a name too (an MCP tool's). Base64 payloads (an image's `result`, audio's
`data`) are skipped by the readers that know where they are, not here: a `data` key
elsewhere may hold text.
"""

from __future__ import annotations

from typing import Any

from gateway.guardrails.json_texts import TextFn, check_name, rewrite_json
from gateway.guardrails.scanner import apply_redactions
from gateway.guardrails.walk_cost import ITEM_COST

# Keys whose values are structure, not text, wherever they are in an answer's object.
STRUCTURE = frozenset(
    {"id", "type", "status", "role", "object", "model", "created_at", "created"}
    | {"index", "output_index", "content_index", "summary_index", "annotation_index"}
    | {"partial_image_index", "sequence_number", "start_index", "end_index"}
    | {"item_id", "call_id", "file_id", "container_id", "approval_request_id"}
    | {"response_id", "logprobs", "obfuscation"}
)
# OpenAI's field names in the objects read here: their values are scanned, their names
# are not (each name scanned costs a review; these hold no caller's text).
_FIELD_NAMES = frozenset(
    {"query", "queries", "url", "sources", "pattern", "title", "text", "filename"}
    | {"attributes", "score", "logs", "outputs", "command", "commands", "env"}
    | {"working_directory", "user", "timeout_ms", "max_output_length", "diff", "path"}
    | {"stdout", "stderr", "outcome", "exit_code", "url_citation", "name", "description"}
    | {"input_schema", "annotations", "arguments", "output", "error", "message", "code"}
)
# Deeper than this the walk hands over to json_texts (no recursion past its own bound).
_MAX_DEPTH = 32


def read_values(value: Any, fn: TextFn) -> Any:
    """`value` with every text in it but its structure rewritten (the same object when
    none changed); see the module's header. A `fn` with a `lines_clean(texts) -> bool`
    method (check.py's reviewer, the stream's) clears them all in one pass when no rule
    matches any: a tool item's sources and results are mostly clean, and each text
    reviewed alone costs a call, a fold and a pass of its own."""
    lines_clean = getattr(fn, "lines_clean", None)
    if lines_clean is not None and isinstance(value, dict | list):
        texts: list[str] = []
        spend = getattr(fn, "spend", None)
        if _gather(value, texts, spend, 0) and (not texts or lines_clean(texts)):
            return value
    return _value(value, None, fn, 0)


def _gather(value: Any, texts: list[str], spend: Any, depth: int) -> bool:
    """Add to `texts` each text `_value` would scan in `value` (a list or a mapping),
    names included; False when it nests past _MAX_DEPTH (`_value` hands that over)."""
    if depth > _MAX_DEPTH:
        return False
    if spend is not None:
        spend(len(value) * ITEM_COST)
    if isinstance(value, dict):
        items = []
        for name, item in value.items():
            if name not in STRUCTURE:
                if name not in _FIELD_NAMES:
                    texts.append(name)
                items.append(item)
    else:
        items = value
    for item in items:
        if isinstance(item, str):
            texts.append(item)
        elif isinstance(item, dict | list) and not _gather(item, texts, spend, depth + 1):
            return False
    return True


def _value(value: Any, key: str | None, fn: TextFn, depth: int) -> Any:
    if isinstance(value, str):
        if key == "name":
            return check_name(value, fn)
        spans = fn(value)
        return apply_redactions(value, spans) if spans else value
    if not isinstance(value, dict | list):
        return value
    if depth > _MAX_DEPTH:
        return rewrite_json(value, fn)
    spend = getattr(fn, "spend", None)
    if spend is not None:
        spend(len(value) * ITEM_COST)
    if isinstance(value, list):
        out = [_value(item, key, fn, depth + 1) for item in value]
        return out if any(a is not b for a, b in zip(out, value, strict=True)) else value
    updates = {}
    for name, item in value.items():
        if name in STRUCTURE:
            continue
        if name not in _FIELD_NAMES:
            check_name(name, fn)
        checked = _value(item, name, fn, depth + 1)
        if checked is not item:
            updates[name] = checked
    return {**value, **updates} if updates else value
