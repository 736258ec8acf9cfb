"""Which chat message part names its image, file, audio or document by link, not inline.

litellm fetches such a link from the gateway itself before calling Anthropic, Gemini or
Bedrock (an `http(s)://` URL: any public host, in a blocking call; a `gs://` one: its
metadata from Google), so a caller's field would make the gateway fetch what it names;
`linked_media` finds the first such field and the adapter refuses the request.
Pure: no I/O. Inline data (a `data:` URL, bare base64) and provider file ids are kept:
a value holding `://` is a link.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A part's media object (`image_url`, `file`, ...; Anthropic's own blocks keep it in
# `source`), and the keys inside it that litellm reads as a location or as inline data.
_MEDIA_KEYS: Mapping[str, tuple[str, ...]] = {
    "image_url": ("url",),
    "file": ("file_id", "file_data", "file_url", "url"),
    "input_audio": ("data", "url"),
    "audio_url": ("url",),
    "video_url": ("url",),
    "document_url": ("url",),
    "source": ("url", "data", "file_id"),
}


def linked_media(messages: object) -> str | None:
    """The path (`messages[0].content[1].image_url.url`) of the first media field of a chat
    request's messages that is a link, else None. A message's `images` (an answer's
    generated images, sent back) count as parts."""
    if not isinstance(messages, list):
        return None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        for field in ("content", "images"):
            parts = message.get(field)
            if not isinstance(parts, list):
                continue
            for j, part in enumerate(parts):
                found = _linked_field(part) if isinstance(part, dict) else None
                if found is not None:
                    return f"messages[{i}].{field}[{j}].{found}"
    return None


def _linked_field(part: Mapping[str, Any]) -> str | None:
    for name, keys in _MEDIA_KEYS.items():
        media = part.get(name)
        if _is_link(media):  # `image_url: "https://..."`, the short form
            return name
        if not isinstance(media, dict):
            continue
        for key in keys:
            if _is_link(media.get(key)):
                return f"{name}.{key}"
    return None


def _is_link(value: object) -> bool:
    return isinstance(value, str) and "://" in value
