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
        # What litellm may take for a link, though it holds no `://`.
        ({"type": "image_url", "image_url": {"url": "http:/127.0.0.1:8/x.png"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "http:127.0.0.1:8/x.png"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "//127.0.0.1:8/x.png"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "http:\\\\127.0.0.1\\x"}}, "image_url.url"),
        (
            {"type": "image_url", "image_url": {"url": "http%3A%2F%2F127.0.0.1%2Fx"}},
            "image_url.url",
        ),
        ({"type": "image_url", "image_url": {"url": "127.0.0.1:8/x.png"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "images.example"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": "data:image/png,http://x/"}}, "image_url.url"),
        ({"type": "image_url", "image_url": {"url": 7}}, "image_url.url"),
        ({"type": "image_url", "image_url": "//127.0.0.1/x.png"}, "image_url"),
        ({"type": "document", "document": {"url": "127.0.0.1/x.pdf"}}, "document.url"),
        ({"type": "file", "file": "files.example/a.pdf"}, "file"),
        ({"type": "input_file", "file_url": "//files.example/a.pdf"}, "file_url"),
        ({"type": "file", "file": {"file_id": "file-abc123"}}, "file.file_id"),  # not Anthropic
        ({"type": "input_audio", "input_audio": {"data": "//a.example/x.wav"}}, "input_audio.data"),
        (
            {"type": "tool_result", "content": [{"type": "image_url", "image_url": LINK}]},
            "content[0].image_url",
        ),
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
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRiQAAABXQVZF", "format": "wav"}},
        {"type": "document", "source": {"type": "base64", "data": "JVBERi0x"}},
        "a bare string part",
    ],
)
def test_inline_media_and_text_pass(part: object) -> None:
    assert linked_media(_user(part)) is None


@pytest.mark.parametrize(
    "part",
    [
        {"type": "text", "text": "see", "citations": [{"url": LINK}]},
        {"type": "search_result", "source": LINK, "title": "t", "content": []},
        {"type": "document", "source": {"type": "text", "data": f"plain text, {LINK}"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iV=="}},
        {"type": "file", "file": {"file_data": PNG, "file_id": None}},
    ],
)
def test_what_litellm_fetches_nothing_for_passes(part: object) -> None:
    """Citations, search results and a plain-text document's text are no media to fetch."""
    assert linked_media(_user(part)) is None


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}},
        {"type": "image", "source": {"type": "file", "file_id": "file-abc123"}},
    ],
)
def test_a_file_id_passes_where_the_provider_takes_ids(part: object) -> None:
    """Anthropic's Files API ids go on as ids (litellm fetches nothing for them)."""
    assert linked_media(_user(part), accepts_file_ids=True) is None
    assert linked_media(_user(part)) is not None


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
