"""The action registry: ``(project, action)`` -> the function that runs it, next to the graphs.

The table holds import strings, so an action's module (and what it imports: image models,
search backends) is imported only when a job asks for it. Adding an action is one line here.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import typing
from typing import Any

from pydantic import BaseModel

from core.errors import InputError
from providers.registry import import_string

#: project -> action -> "module:function". The function takes (input_model, JobContext).
ACTIONS: dict[str, dict[str, str]] = {
    "swarm": {
        "delegate": "graphs.delegation.action:delegate",
        "research": "graphs.research.action:research",
        "consensus": "graphs.consensus.action:consensus",
    },
    "image_tools": {
        "upscale": "graphs.image.action:upscale",
        "remove_background": "graphs.image.action:remove_background",
        "pipeline": "graphs.image.action:pipeline",
    },
}


def action_module(project: str, action: str) -> str:
    """The module that holds an action (to check it is installed without importing it)."""
    return ACTIONS[project][action].partition(":")[0]


def resolve_action(project: str, action: str) -> tuple[Any, type[BaseModel]]:
    """The action function and its input model; ``InputError`` listing the valid names."""
    actions = ACTIONS.get(project)
    if actions is None:
        raise InputError(f"unknown project {project!r}; valid: {', '.join(sorted(ACTIONS))}", field="project")
    target = actions.get(action)
    if target is None:
        raise InputError(
            f"unknown action {action!r} for project {project!r}; valid: {', '.join(sorted(actions))}",
            field="action",
        )
    try:
        fn = import_string(target)
    except ModuleNotFoundError as exc:
        raise InputError(
            f"action {project}/{action} is not available in this installation ({exc.name} is missing)",
            field="action",
        ) from None
    return fn, _input_model(fn)


@functools.lru_cache(maxsize=64)
def _input_model(fn: Any) -> type[BaseModel]:
    """The type of ``fn``'s first parameter; cached: resolving hints costs ~0.1 ms per job."""
    first = next(iter(inspect.signature(fn).parameters))
    return typing.get_type_hints(fn)[first]  # type: ignore[no-any-return]


def made_so_far(project: str, action: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """The action module's ``partial_output(state)`` (unmarked) when it holds anything made (a
    draft, a stored image, sources: any value besides where it stopped); ``None`` when nothing was."""
    module = importlib.import_module(action_module(project, action))
    made = getattr(module, "partial_output", None)
    output: dict[str, Any] = made(state) if made is not None else {}
    return output if any(v for k, v in output.items() if k != "stopped_at") else None


def partial_output(project: str, action: str, state: dict[str, Any]) -> dict[str, Any]:
    """What a stopped job had made, from its last checkpoint's ``state``: the action module's
    ``partial_output(state)`` (nothing where it has none), marked ``partial: True``."""
    module = importlib.import_module(action_module(project, action))
    made = getattr(module, "partial_output", None)
    return {**(made(state) if made is not None else {}), "partial": True}

