"""A call's messages fitted to its model's context window, its earlier turns left out first.

A thread's earlier turns go into a delegation's prompt as chat messages, kept within
``threads.max_chars`` characters: ~24,000 characters is ~6,000 tokens, more than the bundled
local model's 4,096-token window, and its server refused the whole call ("maximum context length
is 4096 tokens. However, you requested 4749 tokens"), failing the job. For a model whose window is
known (``ModelSpec.context_window``) the oldest conversation messages are left out until their
tokens, plus the chat template's and the answer's cap, fit: never a system message, never the last
one (the new question), and a question with its answer, so no answer is read without what it
answers. A prompt of one message beside its system prompt (a reviewer's transcript) has nothing to
leave out: that message is shortened instead, its oldest part cut and a marker said in its place;
one made of tagged blocks (a revision's ``<task>`` and ``<answer>``, a synthesis's ``<answer
model="x">``, one a model) has its blocks' own text cut instead, the longest first, so that no block
is left out, none loses a tag and none is cut below an equal share: one within it (a revision's
task beside a draft past the window) stays whole. A conversation's last message is cut so too,
once every earlier turn is left out, where it is a prompt the swarm made of tagged blocks (it
opens with one: a revision's ``<task>`` beside a thread's turns); a question as asked, never. A
window the server still says is exceeded is fitted again once from the tokens it counted.

Tokens are counted (``token_counts``) where the model's tokenizer can be reached: a local llama.cpp
server's own tokenize endpoint (exact, cached per text), or litellm's ``token_counter`` for a
hosted model it knows (another tokenizer, often: taken with a margin); else, or when the server
does not answer in time, estimated at ``CHARS_PER_TOKEN``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from providers.llm.token_counts import (
    TokenCounts,
    estimate,
)

log = logging.getLogger("swarm.llm")

#: tokens a chat template adds around each message (``<|im_start|>user\n ... <|im_end|>\n``)
MESSAGE_OVERHEAD_TOKENS = 8
#: tokens the template adds once (a BOS, the answer's ``<|im_start|>assistant\n``), kept free too
TEMPLATE_TOKENS = 16
#: what stands in a message for the part of it that was cut to fit
CUT_MARKER = "\n[... {n} earlier characters left out to fit the model's context window ...]\n"
#: the share of a shortened message kept from its start (its opening: a tag, the question asked);
#: the rest is its end, the newest part
HEAD_SHARE = 0.2
#: a message is shortened only to this many characters or more (less would be no message at all)
MIN_KEPT_CHARS = 200
#: a shortened message's tokens are taken as this share of the budget: its text is not uniform
SHORTEN_SHARE = 0.9
#: the least a cut block keeps of its own text (its opening and its end) beside its marker; less
#: room than that for each and the message is cut in its middle instead
MIN_BLOCK_CHARS = 60
#: a tag's opening (``<answer model="x">``) or end (``</answer>``): its name, then any attributes
_TAG = re.compile(r"<(/?)([A-Za-z][\w.:-]*)(?:\s[^<>]*)?>")
#: llama.cpp's (llama-cpp-python's) and OpenAI's words for a prompt past the window
_WINDOW = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_LLAMA_COUNTS = re.compile(r"(\d+) in the messages, (\d+) in the completion", re.IGNORECASE)
_OPENAI_COUNTS = re.compile(r"your messages resulted in (\d+) tokens", re.IGNORECASE)
Count = Callable[[str], int]


def estimate_tokens(chat: list[dict[str, Any]], count: Count = estimate) -> int:
    """The tokens ``chat`` is taken to need: each message's ``count``, plus its template's."""
    return sum(count(str(m.get("content") or "")) + MESSAGE_OVERHEAD_TOKENS for m in chat)


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


def fit_messages(chat: list[dict[str, Any]], budget: float,
                 count: Count = estimate) -> tuple[list[dict[str, Any]], int]:
    """``chat`` with its oldest conversation messages left out until ``estimate_tokens`` is within
    ``budget`` (or none is left to leave out), and how many were left out. Unchanged when it fits."""
    need = estimate_tokens(chat, count)
    if need <= budget:
        return chat, 0
    out: set[int] = set()
    for group in _droppable(chat):
        if need <= budget:
            break
        need -= estimate_tokens([chat[i] for i in group], count)
        out.update(group)
    return [m for i, m in enumerate(chat) if i not in out], len(out)


def shorten_text(text: str, keep: int) -> tuple[str, int]:
    """``text`` cut to about ``keep`` characters: its start (``HEAD_SHARE``) and its end, with
    ``CUT_MARKER`` saying how many characters were left out between them; and that number.
    Unchanged (0) when it is that short."""
    if len(text) <= keep:
        return text, 0
    marker = CUT_MARKER.format(n=len(text))  # as long as its final number, or longer
    room = max(0, keep - len(marker))
    head = int(room * HEAD_SHARE)
    tail = room - head
    cut = len(text) - head - tail
    return f"{text[:head]}{CUT_MARKER.format(n=cut)}{text[len(text) - tail:]}", cut


Span = tuple[int, int, int, int]  # a block's start, its text's start and end, its end


def _tag_spans(text: str) -> tuple[list[tuple[str, Span]], list[int]]:
    """Each block of a tag that is closed somewhere in ``text`` (``<b>...</b>``), by name; and where
    the tags of a name closed wrongly stand (an end with no opening, an opening never closed).
    A name never closed (``<br>``, ``List<T>``) is text."""
    spans: list[tuple[str, Span]] = []
    opened: dict[str, list[re.Match[str]]] = {}
    stray: dict[str, list[int]] = {}
    for tag in _TAG.finditer(text):
        name = tag.group(2)
        if not tag.group(1):
            opened.setdefault(name, []).append(tag)
        elif opened.get(name):
            began = opened[name].pop()
            spans.append((name, (began.start(), began.end(), tag.start(), tag.end())))
        else:
            stray.setdefault(name, []).append(tag.start())
    for name, left in opened.items():
        if left and (name in stray or any(n == name for n, _ in spans)):
            stray.setdefault(name, []).extend(t.start() for t in left)
    bad = [at for name in stray for at in [*stray[name], *(sp[0] for n, sp in spans if n == name)]]
    return [(n, sp) for n, sp in spans if n not in stray], bad


Block = tuple[str, Span]  # a block's tag name and its span


def _nested_in_own_name(spans: list[Block], top: list[Block]) -> bool:
    """Whether a block of ``top`` holds another block of its own name (which tag ends it is then
    not known to a reader of the cut text)."""
    return any(n == name and sp != block and block[1] <= sp[0] < block[2]
               for name, block in top for n, sp in spans)


def tagged_blocks(text: str) -> list[Block] | None:
    """The name and span of each of ``text``'s top-level tagged blocks, in order: distinct
    (``<task>...</task>`` then ``<answer>...</answer>``) or repeated (``<answer model="x">``, one a
    model). ``None`` where there is none, or where a block holds one of its own name, a tag crosses
    another or one closed wrongly stands outside them (its blocks are then not known)."""
    spans, bad = _tag_spans(text)
    top: list[Block] = []
    reach = 0
    for name, span in sorted(spans, key=lambda ns: (ns[1][0], -ns[1][3])):
        if span[0] >= reach:
            top.append((name, span))
            reach = span[3]
        elif span[3] > reach:  # begins inside a block and ends past it
            return None
    if not top or _nested_in_own_name(spans, top):
        return None
    if any(not any(b[1] <= at < b[2] for _, b in top) for at in bad):
        return None  # a tag closed wrongly outside them
    return top


def _shares(lengths: list[int], room: int) -> list[int] | None:
    """Each block's characters within ``room``: whole where it is within an equal share of what is
    left, the longer ones that share each; ``None`` where a share leaves too little of a block."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for done, i in enumerate(order):
        share = room // (len(order) - done)
        if lengths[i] > share:  # this one and every longer one: that share each
            if share < len(CUT_MARKER.format(n=max(lengths))) + MIN_BLOCK_CHARS:
                return None
            return [share if j in order[done:] else n for j, n in enumerate(lengths)]
        room -= lengths[i]
    return list(lengths)


def _counted(names: list[str], among: list[str]) -> str:
    """The blocks ``names`` (of the blocks ``among``), in their order: "the task and the answer"
    (blocks of a name of their own), "3 answers", "1 answer" (of a name that repeats)."""
    every = Counter(among)
    said = [f"the {name}" if every[name] == 1 else f"{n} {name}{'' if n == 1 else 's'}"
            for name, n in Counter(names).items()]
    return " and ".join([", ".join(said[:-1]), said[-1]] if len(said) > 1 else said)


def shorten_blocks(text: str, keep: int) -> tuple[str, int, str] | None:
    """``text`` cut to about ``keep`` characters inside its ``tagged_blocks``, the longest first:
    each block longer than its share of the room its other text leaves keeps its opening and its
    end with ``CUT_MARKER`` between (``shorten_text``); every tag and the text around the blocks
    kept whole, and a block within its share too (a revision's task beside its long draft). With
    the characters cut and what was cut ("the answer", "3 answers"); ``None``: no such blocks, or
    too little room for them."""
    blocks = tagged_blocks(text)
    if blocks is None:
        return None
    lengths = [b[2] - b[1] for _, b in blocks]
    shares = _shares(lengths, keep - (len(text) - sum(lengths)))
    if shares is None:
        return None
    pieces: list[str] = []
    names: list[str] = []  # of the blocks cut
    at, cut = 0, 0
    for (name, (_, begin, end, _)), share in zip(blocks, shares, strict=True):
        short, less = shorten_text(text[begin:end], share)
        pieces += [text[at:begin], short]
        at, cut, names = end, cut + less, names + [name] * bool(less)
    return "".join([*pieces, text[at:]]), cut, _counted(names, [name for name, _ in blocks])


#: the blocks the swarm's own prompts open with (``graphs/delegation/prompts.py``: revise and review)
PROMPT_OPENINGS = frozenset({"task", "conversation"})


def opens_with_blocks(text: str) -> bool:
    """Whether ``text`` is a prompt made of tagged blocks (``tagged_blocks``) that opens with one of
    ``PROMPT_OPENINGS``: a prompt the swarm made, not a question as someone asked it (one that
    opens with pasted ``<code>`` or XML is never cut)."""
    blocks = tagged_blocks(text)
    return blocks is not None and blocks[0][0] in PROMPT_OPENINGS and not text[:blocks[0][1][0]].strip()


def shorten_single(chat: list[dict[str, Any]], budget: float, counts: TokenCounts,
                   blocks_only: bool = False) -> tuple[list[dict[str, Any]], int, str | None]:
    """A prompt of one message beside its system messages (nothing to leave out: a reviewer's
    transcript, a one-shot prompt) past ``budget``: that message shortened to fit, inside its tagged
    blocks (``shorten_blocks``: what was cut, "3 answers") or else in its middle (``shorten_text``:
    ``None``; not when ``blocks_only``), and how many of its characters were cut. Unchanged (0) when
    it fits, when there is more than one such message, or when too little of it could stay."""
    others = [m for m in chat if m.get("role") != "system"]
    need = estimate_tokens(chat, counts)
    if len(others) != 1 or need <= budget:
        return chat, 0, None
    message = others[0]
    text = str(message.get("content") or "")
    tokens = max(1, counts(text))
    room = (budget - (need - tokens)) * SHORTEN_SHARE  # the message's tokens that fit
    keep = int(room * len(text) / tokens)
    if keep < MIN_KEPT_CHARS or keep >= len(text):
        return chat, 0, None
    in_blocks = shorten_blocks(text, keep)
    if in_blocks is None and blocks_only:
        return chat, 0, None
    short, cut, what = in_blocks or (*shorten_text(text, keep), None)
    counts.counted[short] = math.ceil(tokens * len(short) / len(text) / counts.factor)
    return [{**m, "content": short} if m is message else m for m in chat], cut, what


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
    they are), with the ``max_tokens`` the answer may take beside them, by ``counts`` (default:
    every text estimated).

    Attributes:
        params: what to send; ``params["messages"]`` fitted.
        left_out: how many conversation messages were left out.
        cut_chars: how many characters of a prompt's one message, or of a conversation's last
            message made of tagged blocks, were cut (``shorten_single``).
        cut_of: of what they were cut ("the answer", "3 answers": its tagged blocks); ``None``: its middle.
    """

    def __init__(self, name: str, params: dict[str, Any], window: int | None,
                 counts: TokenCounts | None = None) -> None:
        self.name = name
        self.window = window
        self.left_out = 0
        self.cut_chars = 0
        self.cut_of: str | None = None
        self.refitted = False
        self.params = params
        self.counts = counts or TokenCounts()
        #: a prompt of one message (beside system ones): it may be shortened; a conversation's
        #: question never is (its earlier turns are what is left out), its last message made of
        #: tagged blocks only once they all are, and inside its blocks
        self.one_message = sum(m.get("role") != "system" for m in params["messages"]) == 1
        self._given = params["messages"]
        if window is not None:
            self._fit(window - self._answer_tokens() - TEMPLATE_TOKENS, 1.0)

    def _answer_tokens(self) -> int:
        return int(self.params.get("max_tokens") or 0)

    def _fit(self, budget: float, scale: float) -> bool:
        """Leave out messages (or shorten a prompt's one message) until their tokens, times
        ``scale`` (real tokens per counted), are within ``budget``; whether anything changed. A
        conversation whose earlier turns are all left out and still past it has its last message
        cut inside its tagged blocks, where it is made of them (``opens_with_blocks``)."""
        if self.one_message:
            return self._cut(self._given, budget / scale, blocks_only=False)
        chat, dropped = fit_messages(self.params["messages"], budget / scale, self.counts)
        if dropped:
            self.params = {**self.params, "messages": chat}
            self.left_out += dropped
        last = self._given[-1]
        if not opens_with_blocks(str(last.get("content") or "")):
            return bool(dropped)
        # beside its system messages alone, once no earlier turn is left (else it is not cut)
        chat = [*self.params["messages"][:-1], last]
        return self._cut(chat, budget / scale, blocks_only=True) or bool(dropped)

    def _cut(self, chat: list[dict[str, Any]], budget: float, blocks_only: bool) -> bool:
        """Shorten ``chat``'s one message that is not a system one to ``budget`` (``shorten_single``),
        from its text as given, so its marker counts what the model does not see; whether it was
        cut more than before."""
        chat, cut, what = shorten_single(chat, budget, self.counts, blocks_only)
        if cut <= self.cut_chars:
            return False
        self.params, self.cut_chars, self.cut_of = {**self.params, "messages": chat}, cut, what
        return True

    def refit(self, error_text: str) -> bool:
        """After the server refused the prompt as past its window: leave more out (or cut more),
        scaled by the tokens it counted, once. Whether there is something new to send that the
        server may take (not when what is left, the new question above all, is past the window
        by its count)."""
        counts = window_exceeded(error_text)
        if self.window is None or self.refitted or counts is None or counts.prompt_tokens <= 0:
            return False
        self.refitted = True
        self.window = counts.window
        answer = counts.completion_tokens if counts.completion_tokens is not None else self._answer_tokens()
        scale = counts.prompt_tokens / max(1, estimate_tokens(self.params["messages"], self.counts))
        changed = self._fit(counts.window - answer, scale)
        return changed and estimate_tokens(self.params["messages"], self.counts) * scale < counts.window

    @property
    def note(self) -> str | None:
        """What the trace step says of it (``None``: nothing left out)."""
        done = []
        if self.left_out:
            done.append(f"left out {self.left_out} earlier {'turn' if self.left_out == 1 else 'turns'}")
        if self.cut_of:
            done.append(f"left out {self.cut_chars:,} characters of {self.cut_of}")
        elif self.cut_chars:
            done.append(f"left out {self.cut_chars} earlier characters of the prompt's message")
        if not done:
            return None
        said = f"{' and '.join(done)} to fit {self.name}'s {self.window}-token context"
        return f"{said} (tokens estimated: {self.counts.failed})" if self.counts.failed else said
