"""The policy block many tests start from: the built-in mock provider serving `chat`."""

from __future__ import annotations

MOCK_CHAT = """
providers:
  demo: {type: mock}
models:
  chat:
    deployments: [{provider: demo, model: mock-chat}]
    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}
"""
