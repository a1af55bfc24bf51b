"""The ``swarm/consensus`` action: ask several models at once (optionally with stances), then a
synthesizer writes agreements, disagreements and a recommendation naming which model said what."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import InputError
from core.rules import MAX_NAME_CHARS, Tier, check_text_limit, not_blank
from graphs.consensus.state import Participant
from graphs.context import JobContext
from graphs.cuts import cut_warning

Stance = Literal["for", "against", "neutral"]
MAX_MODELS = 8


class ConsensusInput(BaseModel):
    """Input of ``consensus``: the question, the models (default: routing.consensus) and their stances."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a wrong type is refused, not coerced (true -> 1)

    question: str = Field(min_length=1)
    models: list[Annotated[str, Field(max_length=MAX_NAME_CHARS)]] | None = Field(default=None, min_length=1, max_length=MAX_MODELS)
    stances: list[Stance] | None = Field(default=None, min_length=1, max_length=MAX_MODELS)
    tier: Tier | None = None

    _not_blank = field_validator("question")(not_blank)


def participants(inp: ConsensusInput, ctx: JobContext) -> tuple[list[Participant], str]:
    """The models to ask (each with its stance and the model names that count as it) and the synthesizer."""
    config = ctx.config
    route = config.routing.consensus
    models = inp.models or (route.models if route else None)
    if not models:
        raise InputError("give models, or set routing.consensus.models in config", field="models")
    families = {spec.family for spec in config.models.values()}
    for i, name in enumerate(models):
        if name not in config.models and name not in families:
            raise InputError(f"{name!r} names no model or family; models: {', '.join(config.models)};"
                             f" families: {', '.join(sorted(families))}", field=f"models[{i}]")
    if len(set(models)) != len(models):
        raise InputError("lists a model twice; ask each model once", field="models")
    if inp.stances is not None and len(inp.stances) != len(models):
        raise InputError(f"has {len(inp.stances)} entries for {len(models)} models; give one stance per model",
                         field="stances")
    chosen = [
        Participant(model=name, stance=inp.stances[i] if inp.stances else None,
                    accepts=[n for n, spec in config.models.items() if name in (n, spec.family)])
        for i, name in enumerate(models)
    ]
    return chosen, route.synthesizer if route else models[0]


def partial_output(state: dict[str, Any]) -> dict[str, Any]:
    """The answers a stopped panel had so far (no synthesis yet)."""
    from graphs.consensus.nodes import panel

    positions, failed = panel(state.get("answers", []))
    return {"positions": [{k: v for k, v in a.items() if k != "index"} for a in positions],
            "failed": [{k: v for k, v in a.items() if k != "index"} for a in failed]}


async def consensus(inp: ConsensusInput, ctx: JobContext) -> dict[str, Any]:
    """Every model at once, each through the router; then one synthesis naming who said what."""
    check_text_limit(inp.question, ctx.config.limits, "max_task_chars", "question")
    chosen, synthesizer = participants(inp, ctx)

    from graphs.consensus.graph import build_graph
    from graphs.consensus.nodes import panel
    from graphs.run import run_graph

    providers = ctx.providers
    graph = providers.memo(("graph:consensus", id(ctx.checkpointer)), lambda: build_graph(providers.llm, ctx.checkpointer))
    await ctx.progress("ask", f"asking {len(chosen)} models at once: {', '.join(p['model'] for p in chosen)}", None)
    state = await run_graph(
        graph,
        {"question": inp.question, "tier": inp.tier, "participants": chosen, "synthesizer": synthesizer,
         "answers": [], "trace": []},
        ctx,
    )
    positions, failed = panel(state.get("answers", []))
    synthesis = state.get("synthesis") or {}
    status = synthesis.get("status", "unavailable")
    await ctx.progress("done", f"{len(positions)} position{'s' if len(positions) != 1 else ''}"
                       f"{', synthesized' if status == 'done' else ', no synthesis'}", 1.0)
    error = None if status == "done" else synthesis.get("error") or "no synthesizer answered"
    return {
        "synthesis": synthesis.get("text", ""),
        "synthesizer": synthesis.get("model"),
        "synthesis_status": status,
        # as a delegation's missing review: the answers stand, and why the synthesis is missing is
        # said where the caller reads it (the CLI prints warnings)
        "synthesis_error": error,
        "warnings": _warnings(positions, failed, error) + _synthesis_cut(synthesis),
        "positions": [{k: v for k, v in a.items() if k != "index"} for a in positions],
        "failed": [{k: v for k, v in a.items() if k != "index"} for a in failed],
        "trace": state.get("trace", []),
    }


def _synthesis_cut(synthesis: dict[str, Any]) -> list[str]:
    """A synthesis the model did not end itself, said as a position's is (``graphs.cuts``)."""
    said = cut_warning("the synthesis", synthesis.get("cut_reason")) if synthesis.get("status") == "done" else None
    return [said] if said else []


def _warnings(positions: list[dict[str, Any]], failed: list[dict[str, Any]], error: str | None) -> list[str]:
    """What the caller should know before reading the synthesis: that there is none, that it
    weighs one answer only (the others failed or were one model standing in for them all), or
    that a position did not end by itself (its token limit cut it, or it began repeating itself)."""
    stand = "the one position stands" if len(positions) == 1 else f"the {len(positions)} positions stand"
    warnings = [f"no synthesis; {stand}: {error}"] if error else []
    if len(positions) == 1 and failed and not error:
        warnings.append(f"only one of {len(positions) + len(failed)} models answered ({positions[0]['model']}):"
                        " the synthesis restates one view, not a consensus")
    cut: dict[str, list[str]] = {}  # why -> the models whose positions it ended early
    for position in positions:
        if position.get("cut"):  # (a position checkpointed before cut_reason was its token limit's)
            cut.setdefault(position.get("cut_reason") or "length", []).append(str(position["model"]))
    said = (cut_warning(f"the position of {', '.join(models)}", reason) for reason, models in cut.items())
    warnings += [w for w in said if w]
    return warnings
