"""LLM providers: one ``LiteLLMModel`` per configured model, an ``LLMRouter`` over them.

``build_llm_router(config.providers.llm, config.models, circuits=CircuitBoard())`` is the entry
point; the names below are imported on first access so ``import providers.llm`` stays cheap
(litellm itself is imported only on the first call of a model).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CircuitBoard": "providers.circuit",
    "LiteLLMModel": "providers.llm.litellm_backend",
    "LLMRouter": "providers.llm.router",
    "build_llm_router": "providers.llm.router",
    "LocalServerManager": "providers.llm.local_server",
    "default_local_servers": "providers.llm.local_server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'providers.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
