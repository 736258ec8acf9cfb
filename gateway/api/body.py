"""Read and check a JSON request body: size, content type, syntax, field types.

Each refusal names the offending field in `param`, as OpenAI does.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.errors import BodyTooLarge, InvalidRequest, UnsupportedContentType
from gateway.providers.base import Endpoint

JSON_TYPES = ("application/json",)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type")
    if content_type:
        media = content_type.partition(";")[0].strip().lower()
        if media not in JSON_TYPES and not media.endswith("+json"):
            raise UnsupportedContentType(
                f"Unsupported content type '{media}': send 'Content-Type: application/json'."
            )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"The request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. (The body must be valid JSON.)"
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def _require(body: dict[str, Any], name: str, kinds: tuple[type, ...], what: str) -> None:
    if name not in body or body[name] is None:
        raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
    value = body[name]
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise InvalidRequest(f"Invalid type for '{name}': expected {what}.", param=name)


def check_body(endpoint: Endpoint, body: dict[str, Any]) -> tuple[str, bool]:
    """Check the fields the gateway relies on; return (model, is_stream)."""
    _require(body, "model", (str,), "a string")
    model: str = body["model"]
    if not model:
        raise InvalidRequest("'model' must not be empty.", param="model")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("Invalid type for 'stream': expected a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest(
                "Invalid type for 'stream_options': expected an object.", param="stream_options"
            )
        if not isinstance(options.get("include_usage", False), bool):
            raise InvalidRequest(
                "Invalid type for 'stream_options.include_usage': expected a boolean.",
                param="stream_options.include_usage",
            )
    if endpoint == "chat":
        _require(body, "messages", (list,), "an array of messages")
        if not body["messages"]:
            raise InvalidRequest("'messages' must contain at least one message.", param="messages")
        for i, message in enumerate(body["messages"]):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequest(
                    f"Invalid message at messages[{i}]: expected an object with a 'role'.",
                    param=f"messages[{i}]",
                )
    elif endpoint == "completions":
        # OpenAI accepts no prompt (or null): the model writes from a document start.
        prompt = body.get("prompt")
        if prompt is not None and (not isinstance(prompt, str | list)):
            raise InvalidRequest(
                "Invalid type for 'prompt': expected a string or an array.", param="prompt"
            )
    elif endpoint == "embeddings":
        _require(body, "input", (str, list), "a string or an array")
        if stream:
            raise InvalidRequest("Embeddings cannot be streamed.", param="stream")
    elif endpoint == "responses":
        _check_responses_state(body)
    return model, stream


def _check_responses_state(body: dict[str, Any]) -> None:
    """The stateful Responses fields the gateway can route (see routing/affinity.py)."""
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise InvalidRequest(
            "Invalid type for 'previous_response_id': expected a string.",
            param="previous_response_id",
        )
    if body.get("background") is True:
        # Background responses are polled at GET /v1/responses/{id}, which is not served.
        raise InvalidRequest(
            "Background responses are not supported through this gateway; "
            "send the request without 'background' (streaming works).",
            param="background",
        )
