"""Checks that span sections of ``config.yaml``: every model, family and route a key names exists.

``SwarmConfig`` runs these after each section validated on its own; each problem is one line that
names the key, the bad value and what is valid.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.config_schema import ConsensusRoute, LLMSection, ModelSpec, RoutingSection


def cross_reference_problems(
    models: Mapping[str, ModelSpec], llm: LLMSection, routing: RoutingSection
) -> list[str]:
    """Every reference to an unknown model or family, one line each (empty: all resolve)."""
    names = set(models)
    families = {m.family for m in models.values()}
    return [
        *_llm_problems(llm, names, families),
        *_delegation_problems(routing, names, families),
        *_consensus_problems(routing.consensus, names, families),
    ]


def _llm_problems(llm: LLMSection, names: set[str], families: set[str]) -> list[str]:
    """``providers.llm``: the default and the tiers name models; the fallback chain models or families."""
    problems: list[str] = []
    valid_models = ", ".join(sorted(names))
    if llm.default not in names:
        problems.append(f"providers.llm.default: unknown model {llm.default!r}; valid: {valid_models}")
    for tier, tier_models in llm.tiers.items():
        for i, name in enumerate(tier_models):
            if name not in names:
                problems.append(
                    f"providers.llm.tiers.{tier}[{i}]: unknown model {name!r}; valid: {valid_models}"
                )
    for i, name in enumerate(llm.fallback_chain):
        if name not in names and name not in families:
            problems.append(
                f"providers.llm.fallback_chain[{i}]: {name!r} is neither a model nor a family;"
                f" families: {', '.join(sorted(families))}"
            )
    return problems


def _delegation_problems(routing: RoutingSection, names: set[str], families: set[str]) -> list[str]:
    """``routing.delegation``: each primary and reviewer (``model+suffix`` allowed) names a model or family."""
    problems: list[str] = []
    for kind, route in routing.delegation.items():
        for role in ("primary", "reviewer"):
            target = getattr(route, role)
            if target is None:
                continue
            base = target.split("+", 1)[0]
            if base not in names and base not in families:
                problems.append(
                    f"routing.delegation.{kind}.{role}: {target!r} names no model or family;"
                    f" families: {', '.join(sorted(families))}"
                )
    return problems


def _consensus_problems(route: ConsensusRoute | None, names: set[str], families: set[str]) -> list[str]:
    """``routing.consensus`` entries that name no model or family."""
    if route is None:
        return []
    targets = [*((f"models[{i}]", m) for i, m in enumerate(route.models)), ("synthesizer", route.synthesizer)]
    return [f"routing.consensus.{key}: {target!r} names no model or family; families: {', '.join(sorted(families))}"
            for key, target in targets if target not in names and target not in families]
