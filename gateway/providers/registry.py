"""Build the running providers from the policy; heavy kinds load by name on first use.

A provider type maps to a module path, so litellm (≈3 s and ≈200 MB to import)
is imported only when the policy names an anthropic, gemini or bedrock provider.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import cast

from gateway.policy.compiled import ProviderConfig
from gateway.providers.base import Provider

TRANSLATED_TYPES = frozenset({"anthropic", "gemini", "bedrock"})


def build_provider(config: ProviderConfig) -> Provider:
    if config.type == "mock":
        from gateway.providers.mock import MockProvider

        return MockProvider(config.name)
    if config.type in TRANSLATED_TYPES:
        module = importlib.import_module("gateway.providers.litellm_adapter")
        extra = {
            key: value
            for key, value in (
                ("aws_region_name", config.region),
                ("aws_access_key_id", config.aws_access_key_id),
                ("aws_secret_access_key", config.aws_secret_access_key),
            )
            if value
        }
        return cast(
            Provider,
            module.LitellmProvider(
                config.name, config.type, config.api_base, config.api_key, extra
            ),
        )
    from gateway.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(config)


class ProviderSet:
    """The providers of one policy version, keyed by their policy name."""

    def __init__(self, configs: Mapping[str, ProviderConfig]) -> None:
        self._configs = dict(configs)
        self._providers = {name: build_provider(c) for name, c in configs.items()}

    def get(self, name: str) -> Provider:
        return self._providers[name]

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
