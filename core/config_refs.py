"""Checks that span sections of ``config.yaml``: every model, family and route a key names exists.

``SwarmConfig`` runs these after each section validated on its own; each problem is one line that
names the key, the bad value and what is valid. ``lenient_cross_reference_problems`` runs the same
checks on the raw file when some section failed, reading every part it can on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.config_schema import ConsensusRoute, LLMSection, ModelSpec, RoutingSection
from core.rules import ROUTE_SUFFIXES


def cross_reference_problems(
    models: Mapping[str, ModelSpec], llm: LLMSection, routing: RoutingSection
) -> list[str]:
    """Every reference to an unknown model or family, one line each (empty: all resolve)."""
    if not models:
        return [_NO_MODELS]
    names = set(models)
    families = {m.family for m in models.values()}
    routes = {kind: {"primary": r.primary, "reviewer": r.reviewer} for kind, r in routing.delegation.items()}
    return [
        *_llm_problems(llm.default, {str(t): v for t, v in llm.tiers.items()}, llm.fallback_chain, names, families),
        *_delegation_problems(routes, names, families),
        *_consensus_problems(routing.consensus, names, families),
    ]


def lenient_cross_reference_problems(data: Any) -> list[str]:
    """The cross-reference problems of the raw (interpolated) file, each part read on its own:
    a model with a bad field still counts under its name (and its family, when that is a
    string), a malformed tier or route leaves the others checked. None where the models
    themselves cannot be read (every reference would look unknown)."""
    models = _get(data, "models")
    if not isinstance(models, Mapping):
        return []
    if not models:
        return [_NO_MODELS]
    names = {str(name) for name in models}
    families = {spec["family"] for spec in models.values() if isinstance(spec, Mapping) and isinstance(spec.get("family"), str)}
    llm = _get(_get(data, "providers"), "llm")
    tiers = _get(llm, "tiers")
    routing = _get(data, "routing")
    delegation = _get(routing, "delegation")
    routes = {str(k): r for k, r in delegation.items() if isinstance(r, Mapping)} if isinstance(delegation, Mapping) else {}
    consensus = _get(routing, "consensus")
    return [
        *_llm_problems(
            _get(llm, "default"),
            {str(t): v for t, v in tiers.items()} if isinstance(tiers, Mapping) else {},
            _get(llm, "fallback_chain"),
            names, families,
        ),
        *_delegation_problems(routes, names, families),
        *_consensus_problems(consensus if isinstance(consensus, Mapping) else None, names, families),
    ]


#: an empty ``models`` table: every name anything references was listed as unknown, "valid: " and nothing
_NO_MODELS = "models: no model is defined; add the models that providers.llm and routing name (see README, Config reference)"


def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, Mapping) else None


def _strings(value: Any) -> list[tuple[int, str]]:
    """``(index, name)`` of each string in a list (anything else: none; its own check names it)."""
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]


def _llm_problems(
    default: Any, tiers: Mapping[str, Any], fallback_chain: Any, names: set[str], families: set[str]
) -> list[str]:
    """``providers.llm``: the default and the tiers name models; the fallback chain models or families."""
    problems: list[str] = []
    valid_models = ", ".join(sorted(names))
    if isinstance(default, str) and default not in names:
        problems.append(f"providers.llm.default: unknown model {default!r}; valid: {valid_models}")
    for tier, tier_models in tiers.items():
        for i, name in _strings(tier_models):
            if name not in names:
                problems.append(
                    f"providers.llm.tiers.{tier}[{i}]: unknown model {name!r}; valid: {valid_models}"
                )
    for i, name in _strings(fallback_chain):
        if name not in names and name not in families:
            problems.append(
                f"providers.llm.fallback_chain[{i}]: {name!r} is neither a model nor a family;"
                f" families: {', '.join(sorted(families))}"
            )
    return problems


def _delegation_problems(routes: Mapping[str, Mapping[str, Any]], names: set[str], families: set[str]) -> list[str]:
    """``routing.delegation``: each primary and reviewer names a model or family, optionally with
    one of ``ROUTE_SUFFIXES`` (``deepseek+search``)."""
    problems: list[str] = []
    for kind, route in routes.items():
        for role in ("primary", "reviewer"):
            target = route.get(role)
            if not isinstance(target, str):
                continue
            base, plus, suffix = target.partition("+")
            if base not in names and base not in families:
                problems.append(
                    f"routing.delegation.{kind}.{role}: {target!r} names no model or family;"
                    f" families: {', '.join(sorted(families))}"
                )
            if plus and suffix not in ROUTE_SUFFIXES:
                problems.append(
                    f"routing.delegation.{kind}.{role}: unknown suffix {'+' + suffix!r} in {target!r};"
                    f" valid: {', '.join('+' + s for s in ROUTE_SUFFIXES)}"
                )
    return problems


def _consensus_problems(
    route: ConsensusRoute | Mapping[str, Any] | None, names: set[str], families: set[str]
) -> list[str]:
    """``routing.consensus`` entries that name no model or family."""
    if route is None:
        return []
    raw = route.model_dump() if isinstance(route, ConsensusRoute) else route
    synthesizer = raw.get("synthesizer")
    targets = [*((f"models[{i}]", m) for i, m in _strings(raw.get("models"))),
               *([("synthesizer", synthesizer)] if isinstance(synthesizer, str) else [])]
    return [f"routing.consensus.{key}: {target!r} names no model or family; families: {', '.join(sorted(families))}"
            for key, target in targets if target not in names and target not in families]
