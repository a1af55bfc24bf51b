"""What one call sends through ``litellm.acompletion``: the messages, the structured-output
params in the model's way, the token limit (a thinking budget on top) and the model's own params.

litellm's own retries are off (``num_retries=0``, ``max_retries=0``) and the timeout explicit, so
the router, not litellm, decides what happens after a failure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config_providers import SAMPLING_PARAMS
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


#: characters a grammar lets a model put around each JSON token (llama.cpp's ``space`` rule
#: allows more; a model that pads past this is cut as before)
_JSON_SPACING = 2
#: the shortest a string's ``maxLength`` is cut to by ``fit_schema``
_MIN_STRING_CHARS = 20


def _longest(schema: dict[str, Any]) -> tuple[float, float]:
    """(characters of structure, characters of strings) of the longest JSON ``schema`` admits;
    ``inf`` strings where a string or an array has no bound, or the schema is of a shape this does
    not read (a boolean schema, tuple ``items``, ``anyOf``...): nothing is scaled then."""
    if not isinstance(schema, dict) or any(k in schema for k in ("anyOf", "oneOf", "allOf", "$ref")):
        return 0.0, float("inf")
    if "enum" in schema or "const" in schema:  # its values as written: structure, never cut
        values = schema.get("enum") or [schema.get("const")]
        return float(max(len(json.dumps(v)) for v in values) + _JSON_SPACING), 0.0
    kind = schema.get("type")
    if kind == "string":
        limit = schema.get("maxLength")
        return 2 + _JSON_SPACING, float("inf") if limit is None else float(limit)
    if kind == "array":
        items, most = schema.get("items") or {}, schema.get("maxItems")
        if most is None or not isinstance(items, dict):
            return 2.0, float("inf")
        fixed, strings = _longest(items)
        return 2 + _JSON_SPACING + most * (fixed + 1), most * strings
    if kind == "object":
        fixed, strings = 2.0 + _JSON_SPACING, 0.0
        for name, sub in (schema.get("properties") or {}).items():
            more, text = _longest(sub)
            fixed, strings = fixed + len(name) + 4 + _JSON_SPACING + more, strings + text
        return fixed, strings
    if kind == "integer":
        return float(max(len(str(schema.get(k, -(10**18)))) for k in ("minimum", "maximum")) + _JSON_SPACING), 0.0
    return 24.0 + _JSON_SPACING, 0.0  # boolean, number, null: at most this


def fit_schema(schema: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """``schema`` with every string's ``maxLength`` cut alike, so that the longest answer it
    admits fits in ``max_chars`` (a grammar-constrained answer then closes before the token
    limit: at least one character a token). Unchanged when it fits already, or when a string or
    an array has no bound (nothing to scale). A tiny local model filled a review's 600-character
    suggestion with "1, 2, 3, ..." at one character a token and was cut at 512 tokens, the JSON
    unclosed, after 14 s."""
    fixed, strings = _longest(schema)
    if strings == float("inf") or fixed + strings <= max_chars or strings == 0:
        return schema
    share = max(0.0, (max_chars - fixed) / strings)

    def cut(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: cut(v) for k, v in node.items()}
            most = node.get("maxLength")
            if node.get("type") == "string" and isinstance(most, int) and "enum" not in node and "const" not in node:
                # never above what it was, nor below its minLength or the floor (one already under it stays)
                floor = max(min(_MIN_STRING_CHARS, most), int(node.get("minLength") or 0))
                out["maxLength"] = min(most, max(floor, int(most * share)))
            return out
        if isinstance(node, list):
            return [cut(v) for v in node]
        return node

    return cut(schema)  # type: ignore[no-any-return]


def structured_params(
    mode: str, messages: list[dict[str, str]], schema: dict[str, Any], max_tokens: int | None = None
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Messages and extra params that ask for JSON matching ``schema`` in the model's way; a
    grammar (``json_object_schema``) gets the schema fitted to ``max_tokens`` (``fit_schema``)."""
    if mode == "json_schema":
        fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        return messages, {"response_format": fmt}
    if mode == "json_object_schema":
        # llama.cpp's server turns this into a grammar: valid JSON even from a tiny model. Its
        # default repeat_penalty (1.1) breaks the grammar in llama-cpp-python 0.3.36 (checked:
        # unterminated strings and prose after the object), so turn the penalty off here.
        fmt = {"type": "json_object", "schema": fit_schema(schema, max_tokens) if max_tokens else schema}
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


@dataclass(frozen=True, slots=True)
class ModelTraits:
    """What litellm's model list says of a model that changes how it is asked: ``adaptive``, it
    thinks as much as it decides to on every call (Claude Sonnet/Opus 5.5: no budget, its thinking
    counts in ``max_tokens``); ``fixed_sampling``, it answers HTTP 400 to a temperature or top_p
    other than the default (litellm refuses to send one)."""

    adaptive: bool = False
    fixed_sampling: bool = False


UNKNOWN_TRAITS = ModelTraits()


def listed_entry(entries: Mapping[str, Any], model: str) -> dict[str, Any] | None:
    """litellm's model-list entry for ``model`` (a litellm model string): by its full name, else by
    the name without its route where that entry is the same provider's (litellm keys Anthropic's
    models bare; a bare ``gemini-2.5-flash-lite`` is Vertex AI's, not the Gemini API's)."""
    route, _, bare = model.partition("/")
    entry = entries.get(model)
    if entry is None and bare:
        entry = entries.get(bare)
        if isinstance(entry, dict) and entry.get("litellm_provider") not in (None, route):
            return None
    return entry if isinstance(entry, dict) else None


def model_traits(litellm: Any, model: str) -> ModelTraits:
    """``model``'s traits (``ModelTraits``) from litellm's model list (its entry as written:
    ``get_model_info`` leaves ``supports_sampling_params`` out); none for a model it does not list
    (a local model, a gateway's own name)."""
    info = listed_entry(litellm.model_cost, model)
    if info is None:
        return UNKNOWN_TRAITS
    return ModelTraits(adaptive=info.get("thinking_always_on") is True,
                       fixed_sampling=info.get("supports_sampling_params") is False)


def answer_cap(params: dict[str, Any]) -> int:
    """The most characters of answer a call keeps (``CHARS_PER_TOKEN_CAP`` per ``max_tokens``)."""
    return int(params.get("max_tokens") or 0) * CHARS_PER_TOKEN_CAP


def build_params(spec: ModelSpec, messages: list[Message], config: LLMConfig, api_key: str | None,
                 traits: ModelTraits = UNKNOWN_TRAITS) -> dict[str, Any]:
    """The keyword arguments of ``litellm.acompletion`` for one call of the model ``spec``
    (``traits``: what litellm's model list says of it, ``model_traits``)."""
    chat = [{"role": m.role, "content": m.content} for m in messages]
    extra: dict[str, Any] = {}
    max_tokens = spec.max_output_tokens
    if config.max_tokens is not None and not traits.adaptive:
        # the caller limits the answer; a model that thinks first gets its budget on top. One that
        # thinks adaptively has no budget (an effort is no bound): its thinking and answer share
        # max_tokens, so the caller's few hundred tokens (the research plan's) went whole to its
        # thinking and no answer came (stop_reason max_tokens): it gets its own cap
        max_tokens = min(config.max_tokens + _thinking_budget(spec.extra_params), max_tokens)
    if config.json_schema is not None:
        # a caller that sized the answer (max_tokens) sized it for its schema (the research plan:
        # ~48 tokens a query); one that did not gets the schema fitted to the model's own cap
        fit_to = max_tokens if config.max_tokens is None else None
        chat, extra = structured_params(spec.structured_output, chat, config.json_schema, fit_to)
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
    if not spec.sampling:  # a Claude 5 model answers 400 to a temperature it was not built for
        for name in SAMPLING_PARAMS:
            params.pop(name, None)
    elif traits.fixed_sampling and "temperature" not in spec.extra_params:
        # the caller's temperature, which such a model refuses (litellm says so before sending): a
        # config written before it (sampling unset) failed every call; one it sets itself is sent
        params.pop("temperature", None)
    return params
