"""Where the texts are: every text a request carries, and every text an answer
carries, per endpoint, rewritten through one function.

`rewrite_request(endpoint, body, fn)` and `rewrite_answer(endpoint, payload, fn)`
call `fn` on each text and return the body with the spans `fn` names replaced; parts
`fn` left alone are shared, not copied (a clean request copies nothing). Pure.

This module is the map; the readers live by concern: message_texts.py (a chat message,
its parts and tool calls, and the readers every endpoint shares), request_texts.py (a
request's fields per endpoint), response_items.py (Responses input and output items by
type), answer_texts.py (whole answers, Responses events that repeat whole texts,
upstream errors).

Request texts: chat messages (string content and text parts, each alone and joined as
an upstream joins them: joined_parts.py; file parts' `filename`,
`name`, tool-call arguments and custom tool-call input, legacy function calls, the
names of the tools called), `prediction`, `stop`, tool and function definitions whole
(names, descriptions, parameter schemas, custom tools' grammars: json_texts.py),
`tool_choice`, `response_format`'s JSON schema, `web_search_options`; completions
`prompt`, `suffix` and `stop`; embeddings `input`; Responses `instructions`, `input`
(messages and their text parts, and the texts of each item type response_items.py lists:
tool calls and their outputs, reasoning, MCP calls, code interpreter code and logs,
shell commands and output, patches, ...), `text.format`'s schema, `prompt.variables`,
function and custom tools whole, the other tools' descriptions and user locations; and,
on every endpoint, every string of a top-level field it does not know
(request_fields.py). A value where a text (or a message, part, call, ...) belongs that
is not of that shape, an object where a string was due, is scanned whole, every string
and key in it (json_texts.rewrite_json), never passed on unread; so is a Responses input
item of a type this gateway does not know, but for its ids. Not scanned: identifiers
(`metadata`, `user`, ids, model names), files' data (base64 of any format: decoding
files is not a text scan), URLs of images and files, MCP servers' settings.

Answer texts: chat message content, refusal, reasoning (`reasoning_content`,
`reasoning`), the audio transcript, URL citations, tool-call arguments and custom
tool-call input, and every string of the keys the gateway does not know in a choice,
its message and its content parts (`thinking`, `reasoning_details`, ...), and in the
answer itself (Perplexity's `citations`, `search_results`: all but ids, the model, counts;
request_fields.ANSWER_KEYS); completions text; Responses output text, refusals, citations
and the texts of each output item type response_items.py lists (as for the request), the
objects a tool's item holds (a web search's `action` and `sources`, code interpreter
`outputs`, file search `results`) and every other key of an item, every string in them but
the structure (ids, `type`, `status`, indexes: answer_values.py) and base64 (an image's
`result`, encrypted reasoning), and an item of a type the gateway does not know whole;
Responses stream events the same way, every key but the structure, a partial image's and
`response.audio.delta`'s base64 (rewrite_response_event). A citation is read whole too.
A chat message's `audio` is read but for its base64 `data`.
A choice (or a text part) whose text a rule rewrote loses its `logprobs`: the tokens spell
the text.
An upstream's error is an answer's text too (`rewrite_error`): it may quote the prompt.

Arguments are JSON text: `fn` sees them as their reader does, every escape decoded, and
a redaction is written into the text as it came (json_escapes.py), so the arguments stay
valid JSON with the same value, redacted (a bare value it touches, such as a number,
becomes the marker as a string: json_layout.py), and clean arguments are never changed.
An answer whose request asked for JSON (`asks_for_json`) has its message text read the
same way: its client parses it too.
"""

from gateway.guardrails.answer_texts import (
    asks_for_json,
    rewrite_answer,
    rewrite_chunk_fields,
    rewrite_error,
    rewrite_response_event,
)
from gateway.guardrails.message_texts import TextFn, rewrite_annotations
from gateway.guardrails.request_texts import rewrite_request

__all__ = [
    "TextFn",
    "asks_for_json",
    "rewrite_annotations",
    "rewrite_answer",
    "rewrite_chunk_fields",
    "rewrite_error",
    "rewrite_request",
    "rewrite_response_event",
]
