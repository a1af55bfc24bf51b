"""litellm itself: imported once, on first use, offline and quiet, and called with its own
logging off (see ``litellm_logging_off``), as the router traces every attempt.

Nothing here runs at import: the MCP server starts without litellm, and a process pays for it
on its first call (a worker, in its warm-up: ``warm_litellm``). Callers reach these functions
through the module (``litellm_loader.load_litellm()``), so a test's stand-in is the one used.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("swarm.llm")

_litellm: Any = None
_warmed = False  # warm_litellm has run in this process
#: litellm's own "this is one of my sub-calls" flag: while it is set, litellm's wrapper skips its
#: success and failure logging for the call (``None`` where this litellm has no such flag).
_litellm_internal_call: ContextVar[bool] | None = None


def load_litellm() -> Any:
    """Import litellm once, offline and quiet (no price-table download, no debug banners)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        # litellm's own log handler writes records below WARNING to *stdout*, from the import on
        # (at DEBUG unless LITELLM_LOG says otherwise): `swarm --json` and the stdio MCP server
        # own stdout. Our records of litellm's calls are the trace and our own loggers.
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)
        import litellm

        litellm.suppress_debug_info = True
        litellm.turn_off_message_logging = True
        litellm.telemetry = False
        # litellm hooks callbacks through CustomLogger methods whose parameters must be named
        # exactly (kwargs, response_obj, start_time, end_time) or events drop silently; we use
        # none: every attempt is traced by the router instead.
        _load_internal_call_flag()
        _litellm = litellm
    return _litellm


def warm_litellm() -> None:
    """Import litellm and what its first call and first failure would import: the OpenAI SDK's
    resources (~450 modules, ~0.7 s on a process's first call to an OpenAI-compatible server) and
    ``fastapi.exceptions`` (litellm maps every error through a guardrail check that imports it:
    ~0.6 s on a process's first failover). For a worker's warm-up, never the MCP server's start."""
    global _warmed
    load_litellm()
    if _warmed:
        return
    for module in ("openai.resources", "fastapi.exceptions"):
        with suppress(ImportError):
            importlib.import_module(module)
    _warmed = True


def _load_internal_call_flag() -> None:
    global _litellm_internal_call
    try:
        from litellm._internal_context import is_internal_call
    except ImportError:
        log.warning(
            "this litellm has no litellm._internal_context.is_internal_call: its failure logging"
            " stays on, and each failed call costs ~10 ms more (failover is slower)"
        )
        return
    _litellm_internal_call = is_internal_call


@contextmanager
def litellm_logging_off() -> Iterator[None]:
    """Run one litellm call as litellm runs its own sub-calls: without its logging.

    Why: before a failed call's exception reaches us, litellm's wrapper builds its standard
    logging payload and regex-redacts the whole formatted traceback (4-10 KB, ~1 us a
    character) synchronously, on the event loop: 5-11 ms a failure on a 2-core Xeon, most of
    what failing over to the next model cost. We register no litellm callbacks and never read
    that payload (the router traces every attempt, and our errors are redacted by ``redact``),
    so it is pure cost. The flag is reset when the call ends: other litellm users in the
    process keep their logging.
    """
    flag = _litellm_internal_call
    if flag is None:
        yield
        return
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)
