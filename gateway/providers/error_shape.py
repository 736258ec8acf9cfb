"""An upstream's error in OpenAI's four fields, whatever shape its server wrote it in.
Pure; no I/O.

OpenAI-compatible servers write errors their own way: OpenAI's `{"error": {...}}`,
TGI's `{"error": "...", "error_type": "..."}`, vLLM's string `error` or (before 0.6)
the error object at the top, FastAPI's `detail`. A relayed 4xx (openai_compat.py) and
a relayed mid-stream error event (redaction.py) both leave the gateway as OpenAI's
`{"message", "type", "param", "code"}` (each then cleaned of our keys and the upstream's
URL, by redaction.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def error_fields_of(parsed: Any) -> dict[str, Any]:
    """The `message`, `type`, `param` and `code` an upstream's parsed error body gives,
    in any of the shapes OpenAI-compatible servers use; {} when it gives none."""
    if not isinstance(parsed, dict):
        return {}
    error = parsed.get("error")
    if isinstance(error, dict):  # OpenAI: {"error": {...}}
        return error
    if isinstance(error, str):  # TGI: {"error": "...", "error_type": "..."}; vLLM's string
        return {"message": error, "type": parsed.get("error_type")}
    if isinstance(parsed.get("message"), str):  # vLLM before 0.6: the error object itself
        return parsed
    detail = parsed.get("detail")  # FastAPI
    if isinstance(detail, str):
        return {"message": detail}
    if isinstance(detail, list):  # 422 validation errors: [{"loc": [...], "msg": "..."}]
        problems = [
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        ]
        return {"message": "; ".join(problems)} if problems else {}
    return {}


def openai_error(fields: dict[str, Any], default_message: str, default_type: str) -> dict[str, Any]:
    """`fields` (error_fields_of's) as OpenAI's error object: each of the four a string or
    null, as OpenAI's are (a number, a list: null), the message and type never empty."""

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value if isinstance(value, str) else None

    message, type_ = text("message"), text("type")
    return {
        "message": message if message and message.strip() else default_message,
        "type": type_ or default_type,
        "param": text("param"),
        "code": text("code"),
    }


# OpenAI's 429 for one request larger than the account's per-minute limit: "Request too
# large for gpt-4o in organization org-… on tokens per min (TPM): Limit 30000, Requested
# 45000. The input or output tokens must be reduced in order to run successfully."
_REQUEST_TOO_LARGE = re.compile(r"\s*request too large\b", re.IGNORECASE)


def is_request_too_large(fields: Mapping[str, Any]) -> bool:
    """Does a 429's error say the request itself is too large for the deployment (not
    that the deployment is busy)? Its `message`, as OpenAI and Azure write it."""
    message = fields.get("message")
    return isinstance(message, str) and _REQUEST_TOO_LARGE.match(message) is not None
