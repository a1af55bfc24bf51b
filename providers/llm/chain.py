"""Which models one LLM call tries, in order: the router's chain (``LLMRouter.resolve_chain``).

Names of the ``models`` table, duplicates dropped, first occurrence wins:

1. ``LLMConfig.prefer`` (a ``+search`` style suffix is stripped): a model name is itself; a
   family is its models that are in the requested tier, or, when none is, the family's first
   model in ``models`` table order;
2. the tier's models in order (``LLMConfig.tier``, or ``[providers.llm.default]`` when unset);
3. each entry of ``providers.llm.fallback_chain``: a model name as is, a family -> the family's
   first model in ``models`` table order.

``LLMConfig.avoid``: that family's models go last, in their order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from core.errors import InputError
from providers.base import LLMConfig

if TYPE_CHECKING:
    from core.config import LLMSection, ModelSpec


def family_first(specs: Mapping[str, ModelSpec], family: str) -> str | None:
    """The first model of ``family`` in ``models`` table order, or ``None``."""
    return next((n for n, spec in specs.items() if spec.family == family), None)


def prefer_models(specs: Mapping[str, ModelSpec], prefer: str, tier_models: list[str]) -> list[str]:
    """The models ``prefer`` names (see the module docstring); ``InputError`` for a name that is
    neither a model nor a family, listing both."""
    name = prefer.split("+", 1)[0].strip()
    if name in specs:
        return [name]
    in_tier = [n for n in tier_models if specs[n].family == name]
    if in_tier:
        return in_tier
    first = family_first(specs, name)
    if first is None:
        families = sorted({spec.family for spec in specs.values()})
        raise InputError(
            f"{prefer!r} is neither a model nor a family; models: {', '.join(specs)};"
            f" families: {', '.join(families)}",
            field="prefer",
        )
    return [first]


def resolve_chain(section: LLMSection, specs: Mapping[str, ModelSpec], llm_config: LLMConfig) -> list[str]:
    """The model names one call with ``llm_config`` will try, in order."""
    tier_models = list(section.tiers.get(llm_config.tier, [])) if llm_config.tier else [section.default]
    chain: list[str] = []
    if llm_config.prefer:
        chain += prefer_models(specs, llm_config.prefer, tier_models)
    chain += tier_models
    for entry in section.fallback_chain:
        name = entry if entry in specs else family_first(specs, entry)
        if name:
            chain.append(name)
    chain = list(dict.fromkeys(chain))
    if llm_config.avoid:  # its models go last, in their order: used only when no other family answers
        chain.sort(key=lambda n: specs[n].family == llm_config.avoid if n in specs else False)
    return chain
