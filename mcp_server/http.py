"""Streamable HTTP transport: Host/Origin checks on every bind address, bearer tokens, body cap, /health.

The SDK turns DNS-rebinding protection on only when bound to localhost; here it is always
on: loopback names plus ``mcp.http.allowed_hosts`` / ``allowed_origins`` from config (a bad
Host is 421, a bad Origin 403). Bearer tokens come from the env var named by
``mcp.http.auth_tokens_env`` (``name=token,name2=token2`` or one bare token); with tokens
set, a request without a valid one is 401 and each client sees only its own jobs. Bodies
over ``mcp.http.max_request_bytes`` are 413. ``mcp_server.server.build_http_app`` puts these
around the MCP server.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import Any

from mcp.server import MCPServer
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import JSONResponse

from core.errors import ConfigError

log = logging.getLogger("swarm.mcp.http")

LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*",
                    "http://127.0.0.1", "http://localhost", "http://[::1]"]


class StaticTokenVerifier:
    """Bearer tokens from config: each token names one client (its jobs are its own)."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = tokens  # client name -> token

    def __repr__(self) -> str:
        return f"StaticTokenVerifier(clients={sorted(self._tokens)})"

    async def verify_token(self, token: str) -> AccessToken | None:
        match = None
        for name, expected in self._tokens.items():  # compare with every token: no early exit to time
            if hmac.compare_digest(token.encode(), expected.encode()):
                match = name
        if match is None:
            return None
        return AccessToken(token=token, client_id=match, scopes=[])


#: the one client of an HTTP server without tokens (``client_key``)
ANONYMOUS_CLIENT = "local"


def client_key(request: Any) -> str:
    """Who sent an HTTP request, for what one client shares (the rate of its log entries): the
    client its bearer token names (``token:<name>``), else ``local`` (without tokens every caller is
    the same one, as for the jobs each may see)."""
    scope = getattr(request, "scope", None) or {}
    token = getattr(scope.get("user"), "access_token", None)  # set only when auth is configured
    client_id = getattr(token, "client_id", None)
    return f"token:{client_id}" if client_id else ANONYMOUS_CLIENT


def parse_tokens(raw: str, env_name: str) -> dict[str, str]:
    """``name=token,name2=token2`` or one bare token (named by its hash) -> {name: token}."""
    tokens: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        name, sep, token = item.partition("=")
        if not sep:
            name, token = "client-" + hashlib.sha256(item.encode()).hexdigest()[:8], item
        if len(token) < 16:
            raise ConfigError(
                f"${env_name}: the token of {name.strip()!r} is shorter than 16 characters; use a long random one",
                key="mcp.http.auth_tokens_env",
            )
        tokens[name.strip()] = token.strip()
    return tokens


def security_settings(config: Any) -> TransportSecuritySettings:
    http = config.mcp.http
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=LOOPBACK_HOSTS + list(http.allowed_hosts),
        allowed_origins=LOOPBACK_ORIGINS + list(http.allowed_origins),
    )


def auth_kwargs(config: Any, *, host: str, port: int, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``MCPServer`` arguments that require a bearer token, or none when no token is set.

    Tokens come from the env var named by ``mcp.http.auth_tokens_env``; serving beyond
    loopback without any is allowed, with a warning.

    Raises:
        ConfigError: a token is malformed or too short.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    http = config.mcp.http
    tokens = parse_tokens(environ.get(http.auth_tokens_env, ""), http.auth_tokens_env) if http.auth_tokens_env else {}
    if tokens:
        return {
            "token_verifier": StaticTokenVerifier(tokens),
            "auth": AuthSettings(issuer_url=AnyHttpUrl(f"http://{host}:{port}"), resource_server_url=None, required_scopes=[]),
        }
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without auth: set $%s to require bearer tokens", host, http.auth_tokens_env)
    return {}


def http_app(server: MCPServer, config: Any, *, host: str, auth: bool) -> Any:
    """``server`` at ``/mcp`` behind the Host/Origin checks and the body cap, plus ``/health``."""

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "server": server.name, "version": server.version, "auth": auth})

    return server.streamable_http_app(
        transport_security=security_settings(config),
        max_request_body_size=config.mcp.http.max_request_bytes,
        host=host,
    )


def serve(app: Any, *, host: str, port: int) -> None:
    """Run the HTTP app under uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level=os.environ.get("SWARM_LOG_LEVEL", "info").lower())
