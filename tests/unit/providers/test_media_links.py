"""Which message part names its media by link (litellm would fetch it from the gateway)."""

from __future__ import annotations

import pytest

from gateway.providers.media_links import linked_media

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
LINK = "https://images.example/cat.png"


def _user(*parts: object) -> list[object]:
    return [{"role": "user", "content": [{"type": "text", "text": "see"}, *parts]}]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "image_url", "image_url": {"url": LINK}}, "image_url.url"),
        ({"type": "image_url", "image_url": LINK}, "image_url"),
        ({"type": "image_url", "image_url": {"url": "http://10.0.0.5/x"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "gs://bucket/object"}}, "image_url.url"),
        ({"type": "file", "file": {"file_id": "https://files.example/a.pdf"}}, "file.file_id"),
        ({"type": "file", "file": {"file_data": "https://files.example/a.pdf"}}, "file.file_data"),
        (
            {"type": "input_audio", "input_audio": {"data": LINK, "format": "wav"}},
            "input_audio.data",
        ),
        ({"type": "video_url", "video_url": {"url": LINK}}, "video_url.url"),
        ({"type": "document", "source": {"type": "url", "url": LINK}}, "source.url"),
    ],
)
def test_a_linked_media_field_is_named(part: object, param: str) -> None:
    assert linked_media(_user(part)) == f"messages[0].content[1].{param}"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "text", "text": f"what is at {LINK}?"},
        {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}},
        {"type": "image_url", "image_url": PNG},
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
        {"type": "document", "source": {"type": "base64", "data": "JVBERi0x"}},
        "a bare string part",
    ],
)
def test_inline_media_and_text_pass(part: object) -> None:
    assert linked_media(_user(part)) is None


def test_a_later_message_and_an_answers_images_are_searched() -> None:
    """The first link is named wherever it is: a tool result, an answer's `images` sent back."""
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "here", "images": [
            {"type": "image_url", "image_url": {"url": "gs://bucket/generated"}}
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": [
            {"type": "image_url", "image_url": {"url": LINK}}
        ]},
    ]  # fmt: skip
    assert linked_media(messages) == "messages[1].images[0].image_url.url"
    assert linked_media(messages[2:]) == "messages[0].content[0].image_url.url"


@pytest.mark.parametrize("messages", [None, "hi", [None, "x", {"content": None}], []])
def test_what_is_not_a_message_list_names_nothing(messages: object) -> None:
    assert linked_media(messages) is None
