"""Which chat message part gives its image, file, audio or document other than inline.

litellm fetches a media value that is not inline data from the gateway itself before
calling Anthropic, Gemini or Bedrock (an `http(s)://` URL: any public host, in a
blocking call; a `gs://` one: its metadata from Google), and what it takes for a link
is its own guess: `http:/host/x`, `//host/x`, a bare host. So a value is checked against
what is allowed, not against what looks like a link: a `data:<mime>;base64,<data>` URL;
bare base64 where a format names the data (`input_audio.data`, a `source.data`); a
plain-text document's text (`source` of type `text`); and, for Anthropic, a file id of
its Files API (`file_011C...`: letters, digits, `-` and `_`), which litellm sends on as
an id. `linked_media` names the first value that is none of these; the adapter refuses
the request. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# A part's media object (`image_url`, `file`, ...; Anthropic's own blocks keep it in
# `source`, Bedrock's in `document`), and the keys inside it that litellm reads as a
# location or as inline data.
_MEDIA_KEYS: Mapping[str, tuple[str, ...]] = {
    "image_url": ("url",),
    "file": ("file_id", "file_data", "file_url", "url"),
    "input_audio": ("data", "url"),
    "audio_url": ("url",),
    "video_url": ("url",),
    "document_url": ("url",),
    "source": ("url", "data", "file_id"),
    "document": ("url", "file_id", "file_data"),
}
# The media objects litellm also takes as a bare string (`image_url: "data:..."`).
_SHORT_FORMS = frozenset({"image_url", "file", "audio_url", "video_url", "document_url"})
# The file fields a Responses-style part (`{"type": "input_file", "file_data": ...}`)
# carries on itself; litellm reads them there too.
_PART_KEYS = ("file_id", "file_data", "file_url")
# Where bare base64 is the data itself (its format or media type given beside it).
_BASE64_KEYS = frozenset({"data"})
_DATA_URL = re.compile(r"data:[\w.+-]+/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,[A-Za-z0-9+/=\s]*")
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,255}")
# How deep parts nest in parts (a tool result's `content`) before the search stops.
_MAX_DEPTH = 4


def linked_media(messages: object, *, accepts_file_ids: bool = False) -> str | None:
    """The path (`messages[0].content[1].image_url.url`) of the first media field of a chat
    request's messages that is not inline data, else None. A message's `images` (an
    answer's generated images, sent back) count as parts, and so do the parts of a part's
    `content` (a tool result's). `accepts_file_ids`: a file id is allowed (Anthropic)."""
    if not isinstance(messages, list):
        return None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        for field in ("content", "images"):
            found = _in_parts(message.get(field), accepts_file_ids, 0)
            if found is not None:
                return f"messages[{i}].{field}{found}"
    return None


def _in_parts(parts: object, accepts_file_ids: bool, depth: int) -> str | None:
    if not isinstance(parts, list) or depth > _MAX_DEPTH:
        return None
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            continue
        found = _media_field(part, accepts_file_ids)
        if found is not None:
            return f"[{j}].{found}"
        nested = _in_parts(part.get("content"), accepts_file_ids, depth + 1)
        if nested is not None:
            return f"[{j}].content{nested}"
    return None


def _media_field(part: Mapping[str, Any], accepts_file_ids: bool) -> str | None:
    for key in _PART_KEYS:
        if key in part and not _is_inline(key, part[key], accepts_file_ids):
            return key
    for name, keys in _MEDIA_KEYS.items():
        media = part.get(name)
        if isinstance(media, str):
            if name in _SHORT_FORMS and not _is_inline(name, media, accepts_file_ids):
                return name
            continue
        if not isinstance(media, dict):
            continue
        is_text = media.get("type") == "text"  # a plain-text document: `data` is its text
        for key in keys:
            if key not in media or (key == "data" and is_text):
                continue
            if not _is_inline(key, media[key], accepts_file_ids):
                return f"{name}.{key}"
    return None


def _is_inline(key: str, value: object, accepts_file_ids: bool) -> bool:
    """Is `value`, under `key`, data litellm sends as it is (None: no value, as absent)?"""
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    if _DATA_URL.fullmatch(value):
        return True
    if key in _BASE64_KEYS:
        return bool(_BASE64.fullmatch(value))
    return key == "file_id" and accepts_file_ids and bool(_FILE_ID.fullmatch(value))
