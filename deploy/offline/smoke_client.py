"""The compose stack as a team sees it (deploy/offline/compose-check.sh runs this).

A token minted by one replica, used with the openai SDK against both: models, a chat
answer continuing the caller's trace, a stream with its usage chunk. Exits non-zero on
anything unexpected.
"""

from __future__ import annotations

import sys

import openai

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def main(token: str, ports: list[int]) -> None:
    for port in ports:
        client = openai.OpenAI(base_url=f"http://localhost:{port}/v1", api_key=token, max_retries=0)
        models = [m.id for m in client.models.list().data]
        answer = client.chat.completions.with_raw_response.create(
            model=models[0],
            messages=[{"role": "user", "content": "hello from compose"}],
            extra_headers={"traceparent": TRACEPARENT},
        )
        usage = answer.parse().usage
        assert usage is not None and usage.total_tokens > 0, usage
        stream = client.chat.completions.create(
            model=models[0],
            messages=[{"role": "user", "content": "stream please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].usage is not None, chunks[-1]
        print(f"replica :{port}: models {models}, {usage.total_tokens} tokens, streamed {text!r}")


if __name__ == "__main__":
    main(sys.argv[1], [int(p) for p in sys.argv[2:]])
