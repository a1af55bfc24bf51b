"""Logs: JSON lines that carry the job id (OpenTelemetry spans live in ``swarm.telemetry``).

``configure_logging(config_or_level)`` installs one handler on the root logger that writes one
JSON object per line to stderr (stdout belongs to the MCP stdio transport): ``ts``, ``level``,
``logger``, ``message``, ``job_id`` (from a context variable that ``dispatch`` binds), every
string passed through ``core.redact.redact``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

from core.rules import LOG_LEVELS, log_level_name
from swarm.table import terminal_safe

if TYPE_CHECKING:
    from core.config import SwarmConfig


#: The id of the job the current task works for; ``None`` outside a job.
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("swarm_job_id", default=None)
#: Who else may hear a record made in the current task (and the tasks it starts): an MCP client's
#: log (``mcp_server.client_log`` sets it for a client's requests); ``None``: the operator only.
log_audience: contextvars.ContextVar[Any] = contextvars.ContextVar("swarm_log_audience", default=None)


@contextlib.contextmanager
def own_work() -> Iterator[None]:
    """Within this block, and in the tasks it starts, records are the server's own: no job's and no
    client's. For what a job only happens to start first and then serves every job (the checkpoint
    store, its pool's tasks, the daily pruning): their records went to the client of that job."""
    tokens = (log_audience.set(None), job_id_var.set(None))
    try:
        yield
    finally:
        job_id_var.reset(tokens[1])
        log_audience.reset(tokens[0])

_HANDLER_MARK = "_swarm_json_handler"


def bind_job(job_id: str | None) -> contextvars.Token[str | None]:
    """Tag every log line of the current task (and tasks it starts) with ``job_id``."""
    return job_id_var.set(job_id)


def unbind_job(token: contextvars.Token[str | None] | None) -> None:
    """Undo ``bind_job`` (a token from another context is ignored: the task is ending anyway)."""
    if token is None:
        return
    try:
        job_id_var.reset(token)
    except ValueError:
        job_id_var.set(None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, job_id (+ exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        from core.redact import redact

        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "job_id": getattr(record, "job_id", None) or job_id_var.get(),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class _PlainRedactingFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        """The line, its message's control characters escaped: a newline or ESC in a value it
        quotes (a worker id from a URL, an upstream's error) began a forged line of its own or
        drove the terminal; the JSON lines escape them as JSON does. A traceback keeps its lines."""
        from core.redact import redact

        shown = copy.copy(record)
        # masked first: escaped, a newline before a key ("\\nsk-...") hid the key's start from its pattern
        shown.message = terminal_safe(redact(record.message))
        return super().formatMessage(shown)

    def format(self, record: logging.LogRecord) -> str:
        from core.redact import redact

        job_id = getattr(record, "job_id", None) or job_id_var.get()
        record.job = f" [{job_id}]" if job_id else ""
        return redact(super().format(record))


#: loggers whose DEBUG lines hold request signatures, credentials' ids and signed URLs
_SIGNING_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
#: loggers that say each HTTP request at INFO (the RunPod polls, the model calls)
_REQUEST_LOGGERS = ("httpx", "httpcore")


def configure_logging(config_or_level: SwarmConfig | str | int | None = None, json: bool = True,
                      stream: IO[str] | None = None) -> logging.Handler:
    """Install the swarm log handler on the root logger (idempotent: replaces its own earlier one).

    Args:
        config_or_level: a ``SwarmConfig`` (uses ``observability.log_level``), a level name or
            number; ``None`` means INFO.
        json: JSON lines (default) or plain text; both are redacted and carry the job id.
        stream: where to write; default stderr.

    Returns:
        The installed handler.
    """
    level: str | int
    if config_or_level is None:
        level = "INFO"
    elif isinstance(config_or_level, str | int):
        level = config_or_level
    else:
        level = config_or_level.observability.log_level
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if json else _PlainRedactingFormatter("%(asctime)s %(levelname)s %(name)s%(job)s: %(message)s")
    )
    setattr(handler, _HANDLER_MARK, True)
    if isinstance(level, str):
        level = log_level_name(level)
        if level not in LOG_LEVELS:
            from core.errors import ConfigError

            raise ConfigError(f"log level {level.lower()!r} is not one of {', '.join(LOG_LEVELS)} (any case)",
                              key="SWARM_LOG_LEVEL / observability.log_level")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # at DEBUG these print what signs a request (botocore's canonical request and signature, every
    # header): nothing of theirs below WARNING reaches a log, whatever the level
    for chatty in _SIGNING_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    # httpx says every request at INFO: a RunPod job followed from the MCP server wrote two lines a
    # second into Desktop's log; they are kept for DEBUG
    for chatty in _REQUEST_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.DEBUG if root.level <= logging.DEBUG else logging.WARNING)
    return handler
