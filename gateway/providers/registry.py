"""Build the running providers from the policy; heavy kinds load by name on first use.

A provider type maps to a module path, so litellm (≈3 s and ≈200 MB to import)
is imported only when the policy names an anthropic, gemini or bedrock provider, and
then on a thread before that policy is in force (`load_translation`).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Mapping
from typing import cast

from gateway.policy.compiled import ProviderConfig
from gateway.providers.base import Provider

TRANSLATED_TYPES = frozenset({"anthropic", "gemini", "bedrock"})


async def load_translation(configs: Mapping[str, ProviderConfig]) -> None:
    """Import litellm on a thread before a policy naming a translated provider is put in
    force (at start, or when such a version arrives): never inside a request, where its
    seconds stalled every request of the process and counted against the first call's
    attempt timeout (probe p24: a healthy upstream booked as a 504)."""
    if any(config.type in TRANSLATED_TYPES for config in configs.values()):
        from gateway.providers.litellm_http import litellm_module

        await asyncio.to_thread(litellm_module)


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
                config.name,
                config.type,
                config.api_base,
                config.api_key,
                extra,
                config.upstreams,
                secrets=config.secrets,
            ),
        )
    from gateway.providers.openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(config)


class ProviderSet:
    """The providers of the running policy version, keyed by their policy name."""

    def __init__(self, configs: Mapping[str, ProviderConfig]) -> None:
        self._configs = dict(configs)
        self._providers = {name: build_provider(c) for name, c in configs.items()}
        self._removed: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            # A request that began under the previous policy may still fail over to it.
            return self._removed[name]
        return provider

    async def prepare(self, configs: Mapping[str, ProviderConfig]) -> None:
        await load_translation(configs)

    def reconcile(self, configs: Mapping[str, ProviderConfig]) -> list[Provider]:
        """Switch to a new policy's providers: unchanged ones are kept, changed ones rebuilt.

        Returns the replaced and removed providers; the caller closes them once
        requests already using them are done. May raise what `build_provider` raises,
        leaving the set unchanged.
        """
        providers = {
            name: self._providers[name]
            if self._configs.get(name) == config
            else build_provider(config)
            for name, config in configs.items()
        }
        retired = [p for name, p in self._providers.items() if providers.get(name) is not p]
        self._removed = {n: p for n, p in self._providers.items() if n not in providers}
        self._configs, self._providers = dict(configs), providers
        return retired

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
