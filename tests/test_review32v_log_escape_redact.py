"""Review 32v: a plain log line's control characters are escaped after its secrets are masked.

Escaping first turned a newline before a key into the letters ``\\n``: ``nsk-...`` no longer
starts a token, so the key patterns' word boundary failed and the key was written to the log."""

from __future__ import annotations

import io
import logging

from swarm.logs import configure_logging

KEY = "sk-abcdefghijklmnopqrstuvwxyz123456"
AWS = "AKIAABCDEFGHIJKLMNOP"


def test_a_key_after_a_newline_or_tab_is_masked_in_a_plain_line() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", json=False, stream=stream)
    try:
        logging.getLogger("review32v").warning("upstream said:\n%s and\tBearer abcdefghijklmnop123\n%s", KEY, AWS)
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue()
    assert KEY not in line and AWS not in line and "abcdefghijklmnop123" not in line, line
    assert line.count("\n") == 1 and "said:\\n" in line, line  # still one line, its newline escaped
