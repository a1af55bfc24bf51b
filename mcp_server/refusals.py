"""How the MCP door answers a request it cannot serve, in one place.

Two shapes, as MCP has them: a request that names nothing this server has, or carries bad
parameters (an unknown tool, prompt, resource or completion ref, a cursor this server never
issued, a prompt's bad argument, a URI's bad variable) is a JSON-RPC error (``refused_request``:
``INVALID_PARAMS`` or the protocol's "resource not found", the error as data); a tool call that
reached its tool and failed (bad arguments, a failed job, a crash) is a result with ``isError``
(``tool_failure``), which the model reads and can correct.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError

from core.errors import InputError, SwarmError
from core.redact import redact
from core.rules import MAX_NAME_CHARS, shown
from mcp_server import resources, schemas
from mcp_server.results import ToolFailed, call_failed, public_error

log = logging.getLogger("swarm.mcp")

#: the most of a refused URI (or prompt name) an error's data repeats
MAX_URI_SHOWN = 300
#: MCP's "resource not found" up to protocol 2025-11-25; 2026-07-28 retired it for INVALID_PARAMS
RESOURCE_NOT_FOUND = -32002
#: the most unknown arguments one refusal names (the rest are counted)
MAX_UNKNOWN_SHOWN = 8
#: the list requests MCP paginates: this server answers each in one page, with no nextCursor
LISTS = ("tools/list", "resources/list", "resources/templates/list", "prompts/list")


def refused_request(error: InputError, *, code: int | None = None, **where: str) -> Any:
    """A request refused for bad input (a resource read, a prompt, an unknown tool): ``code``
    (default ``INVALID_PARAMS``), the error's redacted text as the message, and as data what was
    asked (``where``: the URI, the prompt, the tool) and the error as a tool's structured content
    has it (``{"type": "InputError", "message": ..., "field": ...}``)."""
    from mcp.shared.exceptions import MCPError
    from mcp.types import INVALID_PARAMS

    said = error.to_dict()
    where = {k: redact(v if len(v) <= MAX_URI_SHOWN else v[:MAX_URI_SHOWN] + "...") for k, v in where.items()}
    return MCPError(INVALID_PARAMS if code is None else code, said["message"], data={**where, "error": said})


def not_found_code(context: Any) -> int:
    """The code of "resource not found" in the protocol the request came in: ``RESOURCE_NOT_FOUND``
    for a client of the handshake era (2025-11-25 and before: Claude Desktop, most clients),
    ``INVALID_PARAMS`` for one of 2026-07-28 (SEP-2164), or a read outside any request."""
    from mcp.types import INVALID_PARAMS

    try:
        version = context.request_context.protocol_version
    except (AttributeError, ValueError):  # no request behind this read (an in-process call)
        return INVALID_PARAMS
    return RESOURCE_NOT_FOUND if version in HANDSHAKE_PROTOCOL_VERSIONS else INVALID_PARAMS


def no_cursor(params: Any) -> None:
    """Refuse a list request's cursor (``INVALID_PARAMS``, naming ``cursor``): this server sends every
    item at once and no ``nextCursor``, so no cursor is one of its own. An empty one reads as none."""
    cursor = getattr(params, "cursor", None)
    if cursor:
        refused = InputError(f"{shown(cursor)} is not a cursor of this server: it lists everything at once"
                             " and sends no nextCursor; list again without one", field="cursor")
        raise refused_request(refused)


def one_page(lowlevel: Any) -> None:
    """Have each of ``lowlevel``'s list requests (``LISTS``) refuse a cursor (``no_cursor``) before
    its handler runs: MCP's pagination answers an invalid cursor with ``INVALID_PARAMS``, where the
    SDK's handlers ignored it and listed page one again (a client paging would loop)."""
    for method in LISTS:
        entry = lowlevel.get_request_handler(method)
        lowlevel.add_request_handler(method, entry.params_type, _refusing_cursors(entry.handler))


def _refusing_cursors(handler: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Awaitable[Any]]:
    async def listed(ctx: Any, params: Any) -> Any:
        no_cursor(params)
        return await handler(ctx, params)

    return listed


def unknown_tool(name: str, tools: list[Any]) -> Any:
    """A tools/call naming no tool of this server: a protocol error in MCP (``INVALID_PARAMS``, the
    request names nothing), not a failed call; the message lists the tools, the name cut to 60."""
    names = ", ".join(t.name for t in tools)
    no_tool = InputError(f"unknown tool {shown(name)}; this server's tools: {names}", field="name")
    return refused_request(no_tool, tool=name[:MAX_NAME_CHARS])


def check_arguments(name: str, arguments: dict[str, Any] | None, known: list[str]) -> None:
    """``InputError`` for an argument the tool does not have (the SDK drops it: a misspelt
    only_mask ran as a cut-out), with the arguments it takes; checked at the door, not by a
    stricter model per tool: nothing at start-up."""
    unknown = [key for key in arguments or {} if key not in known]
    if not unknown:
        return
    takes = f"{name} takes {', '.join(known)}"
    more = len(unknown) - MAX_UNKNOWN_SHOWN
    refused = InputError(f"invalid arguments for {name}: "
                         + "; ".join(f"{shown(key, quoted=False)}: unknown argument; {takes}"
                                     for key in unknown[:MAX_UNKNOWN_SHOWN])
                         + (f"; and {more} more" if more > 0 else ""))
    refused.field = unknown[0][:MAX_NAME_CHARS]  # as data too; the message names every one
    raise refused


def argument_names(tool: Any) -> list[str]:
    """The arguments ``tool`` takes, by their names on the wire (none for no tool)."""
    fields = tool.fn_metadata.arg_model.model_fields if tool is not None else {}
    return [field.alias or field_name for field_name, field in fields.items()]


def refused_read(exc: Exception, uri: str, context: Any, resource_manager: Any) -> Any:
    """What a resources/read that raised ``exc`` (the SDK's ``UnexpectedResourceError`` or
    ``ResourceNotFoundError``) answers, or ``None`` where it stays the SDK's (a crash). A resource
    that does not exist (``resources.NotFound``, a URI nothing in ``resource_manager`` matches) is MCP's
    "resource not found", in the code of the client's protocol (``not_found_code``); other bad
    input (a page past the end) is ``INVALID_PARAMS``; either names its ``field`` as data."""
    from mcp.shared.exceptions import MCPError

    if isinstance(exc, UnexpectedResourceError):  # the SDK's wrapper of what a resource raised
        if not isinstance(exc.__cause__, InputError):
            return None
        missing = isinstance(exc.__cause__, resources.NotFound)
        return refused_request(exc.__cause__, code=not_found_code(context) if missing else None, uri=uri)
    if not isinstance(exc, ResourceNotFoundError):
        return None
    if not str(exc).startswith("Unknown resource"):  # the SDK's words: no resource or template matches
        # one a resource raised (a source's text gone): the SDK's answer, in the protocol's code
        return MCPError(not_found_code(context), redact(str(exc)), data={"uri": redact(uri[:MAX_URI_SHOWN])})
    known = [str(r.uri) for r in resource_manager.list_resources()]
    known += [t.uri_template for t in resource_manager.list_templates()]
    unknown = InputError(f"unknown resource {uri[:200]!r}; this server's: {', '.join(known)}", field="uri")
    return refused_request(unknown, code=not_found_code(context), uri=uri)


def refused_prompt(prompt_manager: Any, name: str, arguments: dict[str, Any] | None, exc: ValueError) -> Any:
    """What a prompts/get that raised ``exc`` answers (``INVALID_PARAMS``, the bad argument named),
    or ``None`` where it stays the SDK's: the SDK answers any failure with 'Internal server error'."""
    cause: BaseException = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    prompt = prompt_manager.get_prompt(name)
    if prompt is None:
        names = ", ".join(p.name for p in prompt_manager.list_prompts())
        unknown = InputError(f"unknown prompt {name[:100]!r}; this server's prompts: {names}", field="name")
        return refused_request(unknown, prompt=name[:100])
    takes = [a.name for a in prompt.arguments or []]
    missing = [a.name for a in prompt.arguments or [] if a.required and a.name not in (arguments or {})]
    if missing:  # the SDK's ValueError says "Missing required arguments: {'task'}"
        refused = InputError(f"invalid arguments for prompt {name}: "
                             + "; ".join(f"{argument}: required, not given" for argument in missing))
        refused.field = missing[0]  # as data too; the message names every one
    elif isinstance(cause, ValidationError):
        refused = InputError(schemas.argument_errors(f"prompt {name}", cause, takes))
        refused.field = ".".join(str(part) for part in cause.errors()[0]["loc"]) if cause.errors() else None
    elif isinstance(cause, ValueError) and cause is not exc:  # a prompt's own check of an argument
        refused = InputError(f"invalid arguments for prompt {name}: {cause}")
        # its text starts with the argument ("kind: unknown kind ..."): named as data too, as a
        # missing or mistyped one is (data.error.field was absent for these)
        head = str(cause).split(":", 1)[0]
        refused.field = head if head in takes else None
    else:
        return None
    return refused_request(refused, prompt=name)


def unknown_ref(ref: Any, prompt_manager: Any, resource_manager: Any) -> Any:
    """A completion/complete whose ``ref`` names no prompt (``ref/prompt``) or resource template
    (``ref/resource``) of this server: ``INVALID_PARAMS`` naming ``ref.name`` or ``ref.uri`` and
    what there is, as MCP's completion has an invalid prompt name answered; ``None`` for a known ref."""
    uri = getattr(ref, "uri", None)
    if uri is not None:
        known = [str(r.uri) for r in resource_manager.list_resources()]
        known += [t.uri_template for t in resource_manager.list_templates()]
        if uri in known:
            return None
        said = f"unknown resource template {shown(str(uri))}; this server's: {', '.join(known)}"
        return refused_request(InputError(said, field="ref.uri"), ref=str(uri))
    name = str(getattr(ref, "name", ""))
    if prompt_manager.get_prompt(name) is not None:
        return None
    names = ", ".join(p.name for p in prompt_manager.list_prompts())
    said = f"unknown prompt {shown(name)}; this server's prompts: {names}"
    return refused_request(InputError(said, field="ref.name"), ref=name)


def tool_failure(tool: str, exc: BaseException, known: list[str]) -> ToolFailed:
    """What a tools/call that raised ``exc`` answers: a failed job's own error as it is; an error
    found at the door (bad arguments, a ``SwarmError`` a tool raised before or without a job) in the
    same shape; a crash as ``InternalError``, nothing of it told (the log has it)."""
    cause = exc
    while isinstance(cause, ToolError) and not isinstance(cause, ToolFailed) and cause.__cause__ is not None:
        cause = cause.__cause__  # what the tool raised, under the SDK's "Error executing tool" wrapper(s)
    if isinstance(cause, ToolFailed):
        return cause
    if isinstance(cause, ValidationError) and cause.title.endswith("Arguments"):
        first = schemas.where(cause.errors()[0]["loc"]) if cause.errors() else None
        cause = InputError(schemas.argument_errors(tool, cause, known))
        cause.field = first or None  # the first bad argument, as the dispatcher names a job's
    if isinstance(cause, SwarmError):
        log.info("tool %s refused: %s", tool, type(cause).__name__)
        return call_failed(public_error(cause))
    if isinstance(cause, ToolError | ResourceError) and not isinstance(exc, UnexpectedToolError):  # said on purpose
        log.info("tool %s refused: %s", tool, cause)
        return call_failed({"type": type(cause).__name__, "message": str(cause)})
    log.error("tool %s failed", tool, exc_info=cause)  # redacted: install_log_redaction
    return call_failed(public_error(cause))
