"""A call's messages fitted to its model's context window, its earlier turns left out first.

A thread's earlier turns go into a delegation's prompt as chat messages, kept within
``threads.max_chars`` characters: ~24,000 characters is ~6,000 tokens, more than the bundled
local model's 4,096-token window, and its server refused the whole call ("maximum context length
is 4096 tokens. However, you requested 4749 tokens"), failing the job. For a model whose window is
known (``ModelSpec.context_window``) the oldest conversation messages are left out until the
estimate, plus the answer's cap, fits: never a system message, never the last one (the new
question), and a question with its answer, so no answer is read without what it answers. A window
the server still says is exceeded is fitted again once from the tokens it counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

#: characters a token is taken to hold: fewer than the bundled model's tokenizer makes of prose
#: (3.4), code (3.9) or YAML (2.9), so an estimate that fits is seldom refused; text that is
#: denser still (digits are a token each) is refused by the server and fitted again from its count
CHARS_PER_TOKEN = 3
#: tokens a chat template adds around each message (``<|im_start|>user\n ... <|im_end|>\n``)
MESSAGE_OVERHEAD_TOKENS = 8
#: llama.cpp's (llama-cpp-python's) and OpenAI's words for a prompt past the window
_WINDOW = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_LLAMA_COUNTS = re.compile(r"(\d+) in the messages, (\d+) in the completion", re.IGNORECASE)
_OPENAI_COUNTS = re.compile(r"your messages resulted in (\d+) tokens", re.IGNORECASE)


def estimate_tokens(chat: list[dict[str, Any]]) -> int:
    """The tokens ``chat`` is taken to need, by ``CHARS_PER_TOKEN`` (an over-estimate for text)."""
    return sum(math.ceil(len(str(m.get("content") or "")) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS for m in chat)


def _droppable(chat: list[dict[str, Any]]) -> list[list[int]]:
    """The conversation messages that may be left out, oldest first, in groups left out together:
    a question with the answer after it; never a system message, never the last message."""
    groups: list[list[int]] = []
    i, last = 0, len(chat) - 1
    while i < last:
        role = chat[i].get("role")
        if role == "system":
            i += 1
            continue
        if role == "user" and i + 1 < last and chat[i + 1].get("role") == "assistant":
            groups.append([i, i + 1])
            i += 2
            continue
        groups.append([i])
        i += 1
    return groups


def fit_messages(chat: list[dict[str, Any]], budget: float) -> tuple[list[dict[str, Any]], int]:
    """``chat`` with its oldest conversation messages left out until ``estimate_tokens`` is within
    ``budget`` (or none is left to leave out), and how many were left out. Unchanged when it fits."""
    need = estimate_tokens(chat)
    if need <= budget:
        return chat, 0
    out: set[int] = set()
    for group in _droppable(chat):
        if need <= budget:
            break
        need -= estimate_tokens([chat[i] for i in group])
        out.update(group)
    return [m for i, m in enumerate(chat) if i not in out], len(out)


@dataclass(frozen=True)
class WindowExceeded:
    """What a server's "context length exceeded" error counted: its window, the prompt's tokens
    and the answer's cap (``None``: not said)."""

    window: int
    prompt_tokens: int
    completion_tokens: int | None


def window_exceeded(text: str) -> WindowExceeded | None:
    """The counts in a context-window error's ``text``; ``None`` where it gives no window or no
    prompt count (nothing to fit again from)."""
    window = _WINDOW.search(text)
    llama = _LLAMA_COUNTS.search(text)
    prompt = llama.group(1) if llama else (m.group(1) if (m := _OPENAI_COUNTS.search(text)) else None)
    if window is None or prompt is None:
        return None
    return WindowExceeded(int(window.group(1)), int(prompt), int(llama.group(2)) if llama else None)


class ContextFit:
    """One call's params, their messages fitted to ``window`` tokens (``None``: unknown, sent as
    they are), with the ``max_tokens`` the answer may take beside them.

    Attributes:
        params: what to send; ``params["messages"]`` fitted.
        left_out: how many conversation messages were left out.
    """

    def __init__(self, name: str, params: dict[str, Any], window: int | None) -> None:
        self.name = name
        self.window = window
        self.left_out = 0
        self.refitted = False
        self.params = params
        if window is not None:
            self._fit(window - self._answer_tokens(), 1.0)

    def _answer_tokens(self) -> int:
        return int(self.params.get("max_tokens") or 0)

    def _fit(self, budget: float, scale: float) -> int:
        """Leave out messages until the estimate, times ``scale`` (real tokens per estimated), is
        within ``budget``; the number left out this time."""
        chat, dropped = fit_messages(self.params["messages"], budget / scale)
        if dropped:
            self.params = {**self.params, "messages": chat}
            self.left_out += dropped
        return dropped

    @property
    def can_leave_out(self) -> bool:
        """Whether ``refit`` may still leave something out: a known window, not fitted again yet,
        and conversation messages left."""
        return self.window is not None and not self.refitted and bool(_droppable(self.params["messages"]))

    def refit(self, error_text: str) -> bool:
        """After the server refused the prompt as past its window: leave more out, scaled by the
        tokens it counted, once. Whether there is something new to send that the server may take
        (not when what is left, the new question above all, is past the window by its count)."""
        counts = window_exceeded(error_text)
        if not self.can_leave_out or counts is None or counts.prompt_tokens <= 0:
            return False
        self.refitted = True
        self.window = counts.window
        answer = counts.completion_tokens if counts.completion_tokens is not None else self._answer_tokens()
        scale = counts.prompt_tokens / max(1, estimate_tokens(self.params["messages"]))
        return self._fit(counts.window - answer, scale) > 0 and estimate_tokens(self.params["messages"]) * scale < counts.window

    @property
    def note(self) -> str | None:
        """What the trace step says of it (``None``: nothing left out)."""
        if not self.left_out:
            return None
        turns = "turn" if self.left_out == 1 else "turns"
        return f"left out {self.left_out} earlier {turns} to fit {self.name}'s {self.window}-token context"
