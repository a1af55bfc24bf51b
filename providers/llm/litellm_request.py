"""What one call sends through ``litellm.acompletion``: the messages, the structured-output
params in the model's way, the token limit (a thinking budget on top) and the model's own params.

litellm's own retries are off (``num_retries=0``, ``max_retries=0``) and the timeout explicit, so
the router, not litellm, decides what happens after a failure.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from providers.base import LLMConfig, Message

if TYPE_CHECKING:
    from core.config import ModelSpec

#: an answer longer than ``max_tokens`` x this many characters is cut there: no tokenizer makes
#: tokens that long on average (English runs ~4), so only a server that ignores ``max_tokens``
#: sends more (a 5 MB answer went whole into the research check, the trace and the result)
CHARS_PER_TOKEN_CAP = 16


def schema_instruction(schema: dict[str, Any]) -> str:
    return (
        "Answer with one JSON object and nothing else (no prose, no code fences). "
        f"It must match this JSON Schema:\n{json.dumps(schema, separators=(',', ':'))}"
    )


def with_schema_prompt(messages: list[dict[str, str]], schema: dict[str, Any]) -> list[dict[str, str]]:
    """Add the schema instruction to the system message (or prepend one)."""
    instruction = schema_instruction(schema)
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": f"{messages[0]['content']}\n\n{instruction}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def structured_params(
    mode: str, messages: list[dict[str, str]], schema: dict[str, Any]
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Messages and extra params that ask for JSON matching ``schema`` in the model's way."""
    if mode == "json_schema":
        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        return messages, {"response_format": fmt}
    if mode == "json_object_schema":
        # llama.cpp's server turns this into a grammar: valid JSON even from a tiny model. Its
        # default repeat_penalty (1.1) breaks the grammar in llama-cpp-python 0.3.36 (checked:
        # unterminated strings and prose after the object), so turn the penalty off here.
        fmt = {"type": "json_object", "schema": schema}
        return messages, {"response_format": fmt, "extra_body": {"repeat_penalty": 1.0}}
    if mode == "json_object":
        return with_schema_prompt(messages, schema), {"response_format": {"type": "json_object"}}
    return with_schema_prompt(messages, schema), {}


#: the thinking budget litellm gives each ``reasoning_effort`` (its DEFAULT_REASONING_EFFORT_*_THINKING_BUDGET)
_EFFORT_BUDGETS = {"none": 0, "disable": 0, "minimal": 1024, "low": 1024, "medium": 2048, "high": 4096,
                   "xhigh": 8192, "max": 16384}


def _thinking_budget(extra_params: dict[str, Any]) -> int:
    """The thinking tokens a model's ``extra_params`` give it: Anthropic's (and Gemini's through
    litellm) ``thinking.budget_tokens``, else what litellm turns ``reasoning_effort`` into (an
    effort it does not know counts as the largest, so the answer is never starved)."""
    thinking = extra_params.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if isinstance(budget, int) and budget > 0:
        return budget
    effort = extra_params.get("reasoning_effort")
    if isinstance(effort, dict):  # the Responses API's {"effort": "high", ...}
        effort = effort.get("effort")
    if effort is None or effort is False or effort == "":  # unset, or YAML's `off`
        return 0
    return _EFFORT_BUDGETS.get(str(effort).lower(), max(_EFFORT_BUDGETS.values()))


def answer_cap(params: dict[str, Any]) -> int:
    """The most characters of answer a call keeps (``CHARS_PER_TOKEN_CAP`` per ``max_tokens``)."""
    return int(params.get("max_tokens") or 0) * CHARS_PER_TOKEN_CAP


def build_params(spec: ModelSpec, messages: list[Message], config: LLMConfig, api_key: str | None) -> dict[str, Any]:
    """The keyword arguments of ``litellm.acompletion`` for one call of the model ``spec``."""
    chat = [{"role": m.role, "content": m.content} for m in messages]
    extra: dict[str, Any] = {}
    if config.json_schema is not None:
        chat, extra = structured_params(spec.structured_output, chat, config.json_schema)
    max_tokens = spec.max_output_tokens
    if config.max_tokens is not None:
        # the caller limits the answer; a model that thinks first gets its budget on top
        max_tokens = min(config.max_tokens + _thinking_budget(spec.extra_params), max_tokens)
    params: dict[str, Any] = {
        "model": spec.litellm_model,
        "messages": chat,
        "temperature": config.temperature,
        "max_tokens": max_tokens,
        "timeout": spec.timeout_s,
        "num_retries": 0,
        "max_retries": 0,
        **extra,
    }
    if spec.api_base:
        params["api_base"] = spec.api_base
    if api_key is not None:
        params["api_key"] = api_key
    # free text gets its own decoding settings (penalties against loops); the JSON calls keep
    # theirs, as a penalty breaks llama.cpp's grammar (see structured_params)
    overrides = [spec.extra_params] + ([spec.free_text_params] if config.json_schema is None else [])
    for override in overrides:
        extra_body = {**params.get("extra_body", {}), **override.get("extra_body", {})}
        params.update(override)
        if extra_body:
            params["extra_body"] = extra_body
    return params
