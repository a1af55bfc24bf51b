"""Counting a request's tokens before it is sent: by the model's own tokenizer where it can be
reached (a llama.cpp server's tokenize endpoint; litellm's counter for a hosted model it knows),
else estimated at ``CHARS_PER_TOKEN`` characters a token. ``context_fit`` fits a request by them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections import OrderedDict
from typing import Any

import httpx

log = logging.getLogger("swarm.llm")

#: characters a token is taken to hold where nothing counts them: fewer than the bundled model's
#: tokenizer makes of prose (3.4), code (3.9) or YAML (2.9), so an estimate that fits is seldom
#: refused; text that is denser still (digits are a token each) is refused by the server and fitted
#: again from its count
CHARS_PER_TOKEN = 3
#: litellm counts a hosted model's text with the tokenizer it has (tiktoken's cl100k for DeepSeek,
#: Gemini and Claude alike), not always the model's own: its counts are taken as this many times more
APPROXIMATE_COUNT_FACTOR = 1.2
#: the longest a call waits for its server to count its messages before estimating them (a busy
#: llama-cpp-python server counts only between two answers)
COUNT_TIMEOUT_S = 2.0
#: where a llama.cpp server counts a text's tokens, and the field it reads it from: llama-cpp-python's
#: server (the bundled one), then llama.cpp's own llama-server; each answers ``{"tokens": [...]}``
TOKENIZE_ENDPOINTS = (("/extras/tokenize", "input"), ("/tokenize", "content"))
#: the most texts whose server count is kept (per server; an LRU)
_CACHE_SIZE = 4096
_server_counts: OrderedDict[tuple[str, bytes], int] = OrderedDict()


def estimate(text: str) -> int:
    """``text``'s tokens by ``CHARS_PER_TOKEN`` (an over-estimate for prose)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class TokenCounts:
    """Each text's tokens: as counted (by the model's tokenizer), times ``factor``; a text not
    counted by ``estimate``. ``failed``: why counting failed (said in the trace), else ``None``."""

    def __init__(self, counted: dict[str, int] | None = None, factor: float = 1.0, failed: str | None = None) -> None:
        self.counted = dict(counted or {})
        self.factor = factor
        self.failed = failed

    def __call__(self, text: str) -> int:
        found = self.counted.get(text)
        return estimate(text) if found is None else math.ceil(found * self.factor)



def _cache_key(tokenizer: str, text: str) -> tuple[str, bytes]:
    return tokenizer, hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest()


async def _count_one(client: httpx.AsyncClient, url: str, field: str, text: str) -> int | None:
    """The tokens the server at ``url`` counts in ``text``; ``None``: it has no such endpoint."""
    reply = await client.post(url, json={field: text})
    if reply.status_code in (404, 405):
        return None
    reply.raise_for_status()
    data = reply.json()
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list):
        raise ValueError("the tokenize endpoint answered no token list")
    return len(tokens)


async def _count_on(client: httpx.AsyncClient, root: str, texts: list[str]) -> dict[str, int]:
    """``texts`` counted by the server at ``root``, on the first ``TOKENIZE_ENDPOINTS`` it has
    (none: nothing counted)."""
    for path, field in TOKENIZE_ENDPOINTS:
        first = await _count_one(client, root + path, field, texts[0])
        if first is None:
            continue
        rest = await asyncio.gather(*(_count_one(client, root + path, field, t) for t in texts[1:]))
        return {t: n for t, n in zip(texts, [first, *rest], strict=True) if n is not None}
    return {}


async def server_counts(api_base: str, tokenizer: str, texts: list[str], timeout: float) -> TokenCounts:
    """``texts`` counted by the llama.cpp server at ``api_base`` (its tokenizer, exactly), each text
    once (cached by ``tokenizer``, what names the weights it serves); the ones it does not count
    within ``timeout`` seconds (busy, or no tokenize endpoint) are estimated, said in ``failed``."""
    root = api_base.rstrip("/").removesuffix("/v1")
    counted: dict[str, int] = {}
    for text in set(texts):
        if (n := _server_counts.get(key := _cache_key(tokenizer, text))) is not None:
            counted[text] = n
            _server_counts.move_to_end(key)
    todo = [t for t in dict.fromkeys(texts) if t not in counted]
    if not todo:
        return TokenCounts(counted)
    try:
        async with asyncio.timeout(max(0.0, timeout)), httpx.AsyncClient(trust_env=False) as client:
            fresh = await _count_on(client, root, todo)
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        why = f"the server did not count them within {timeout:.3g} s" if isinstance(exc, TimeoutError) \
            else f"the server could not count them ({type(exc).__name__})"
        log.info("counting tokens on %s failed: %s; estimated at %d characters a token", root, why, CHARS_PER_TOKEN)
        return TokenCounts(counted, failed=why)
    for text, n in fresh.items():
        _server_counts[_cache_key(tokenizer, text)] = n
    while len(_server_counts) > _CACHE_SIZE:
        _server_counts.popitem(last=False)
    return TokenCounts({**counted, **fresh})


def litellm_counts(litellm: Any, model: str, texts: list[str]) -> TokenCounts:
    """``texts`` counted by litellm's ``token_counter`` for a hosted ``model`` it knows (a tokenizer
    near the model's, taken with ``APPROXIMATE_COUNT_FACTOR``); a model it does not know (an
    ``openai/`` name on a server of ours) gets its texts estimated."""
    try:
        litellm.get_model_info(model)
    except Exception:  # litellm says "not mapped" with exceptions of its own, varying by version
        return TokenCounts()
    try:
        counted = {t: int(litellm.token_counter(model=model, text=t)) for t in set(texts)}
    except Exception as exc:  # a tokenizer that could not load (offline): the estimate, said
        return TokenCounts(failed=f"litellm could not count them ({type(exc).__name__})")
    return TokenCounts(counted, APPROXIMATE_COUNT_FACTOR)
