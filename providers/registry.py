"""Names in config -> backend classes, imported only when config chooses them.

A backend class offers ``from_config(name, settings, **deps)``: ``settings`` is its own config
section (``providers.storage.backends.<name>``, ``providers.image.upscale``, one entry of
``models``), ``deps`` what it needs injected by keyword (an ``httpx.AsyncClient``, the state or
models directory, the local server manager), never the whole app config. The registry looks a
class up by table, never by an if/elif ladder, so adding a backend is one line here.
"""

from __future__ import annotations

import importlib
from typing import Any

from core.errors import ConfigError

BACKENDS: dict[str, dict[str, str]] = {
    "llm": {
        "litellm": "providers.llm.litellm_backend:LiteLLMModel",
    },
    "search": {
        "searxng": "providers.search.searxng:SearxngSearch",
        "tavily": "providers.search.tavily:TavilySearch",
        "local": "providers.search.local_index:LocalIndexSearch",
    },
    "storage": {
        "local": "providers.storage.local:LocalStorage",
        "s3": "providers.storage.s3:S3Storage",
    },
    "image": {
        "upscale": "providers.image.upscale:RealESRGANUpscaler",
        "remove_background": "providers.image.rembg_backend:RembgRemover",
    },
}


def import_string(target: str) -> Any:
    """Import ``"package.module:Attr"`` and return the attribute."""
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def backend_class(kind: str, name: str) -> Any:
    """The class registered for ``name`` of capability ``kind``.

    Raises:
        ConfigError: the name is not registered; the message lists the valid names.
    """
    table = BACKENDS.get(kind)
    if table is None:
        raise ConfigError(f"unknown provider kind {kind!r}; valid: {', '.join(sorted(BACKENDS))}")
    target = table.get(name)
    if target is None:
        raise ConfigError(
            f"unknown {kind} backend {name!r}; valid: {', '.join(sorted(table))}",
            key=f"providers.{kind}",
        )
    return import_string(target)
