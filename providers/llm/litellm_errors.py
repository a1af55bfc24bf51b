"""The boundary where litellm's exceptions are translated, once, into the error tree.

429 -> ``ProviderRateLimited`` (with Retry-After), timeouts -> ``ProviderTimeout``, refused
connections and 5xx -> ``ProviderUnavailable``, anything else (401, 400, ...) ->
``ProviderError``, but for a model name the provider says it does not serve (retired or misspelt)
-> ``ModelNotServed``, said with its fix (``not_served``). Every message is redacted, and left
whole: the router cuts what it traces.
"""

from __future__ import annotations

import re

from core.errors import (
    ModelNotServed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from core.redact import redact
from providers.web.http import parse_retry_after


def _retry_after_of(exc: BaseException) -> float | None:
    for headers in (
        getattr(exc, "litellm_response_headers", None),
        getattr(getattr(exc, "response", None), "headers", None),
        getattr(exc, "headers", None),
    ):
        if headers:
            found = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
            if found is not None:
                return found
    return None


#: litellm reports some connection failures as HTTP 500 (aiohttp's, for Anthropic): their text says so
_NO_CONNECTION = re.compile(
    r"cannot connect to host|connection refused|name or service not known|domain name not found|"
    r"temporary failure in name resolution|nodename nor servname|getaddrinfo failed|server disconnected|"
    r"connection reset|connection aborted|certificate verify failed|certificate_verify_failed|ssl error|"
    r"^(?:\w+: )*(?:\w+Exception - )?connection error\.?$", re.IGNORECASE)
#: "AuthenticationError: AuthenticationError: ..." (litellm's class name, then the same again)
#: what litellm says of an answer it could not parse (a proxy's HTML page under HTTP 200, JSON
#: without the provider's fields), whichever status it then makes up; and the OpenAI SDK's
#: ``json.JSONDecodeError`` ("Expecting value: line 1 column 1 (char 0)") of a body under HTTP 200
#: that is not JSON, which litellm made an "HTTP 500" the server never sent
_UNREADABLE = re.compile(r"Unable to get json response|Error converting to valid response|Invalid response object|"
                         r": line \d+ column \d+ \(char \d+\)", re.IGNORECASE)
_TRACEBACK = "Traceback (most recent call last)"
#: what Anthropic's 529 body says
_OVERLOADED = re.compile(r"\boverloaded(?:_error)?\b|\b529\b", re.IGNORECASE)
#: what is left of a KeyError inside litellm's reading of an answer: "APIConnectionError: 'content'"
_MISSING_FIELD = re.compile(r"^(?:\w+: )*(?:\w+Exception - )?'[\w.-]+'$")
_REPEATED_HEAD = re.compile(r"^(\w+): \1: ")
#: " Handle with `InternalServerError`." and the like: advice to litellm's own callers
_HANDLE_WITH = re.compile(r"\s*Handle with `\w+`\.?|\.? File an issue if litellm error - \S+")
#: aiohttp's ``ssl:<ssl.SSLContext object at 0x...>`` (or ``ssl:default``) in "Cannot connect to host":
#: noise, the address differing per run
_SSL_CONTEXT = re.compile(r"\s*\bssl:(?:<[^>]*>|default)")
#: what litellm says when its own clock ran out (it gives those a 408 too); a server's 408 says otherwise
_OWN_TIMEOUT = re.compile(r"Request timed out|Timeout error occurred|APITimeoutError|timed out polling", re.IGNORECASE)
#: litellm's advice to its own callers on a parameter the model refuses (ours cannot set drop_params)
_DROP_PARAMS = re.compile(r"\s*To drop unsupported params,? set `?(?:litellm\.)?drop_params ?= ?True`?\.?[^.]*\.?",
                          re.IGNORECASE)
#: " at 0x7fd3..." in any other repr
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


#: what each provider answers, under its documented status (``_NOT_SERVED_STATUS``), for a model
#: name it does not serve: DeepSeek's HTTP 400 "Model Not Exist"; Anthropic's 404 not_found_error
#: "model: claude-x"; Gemini's 404 "models/gemini-x is not found for API version v1beta, ...";
#: OpenAI's and vLLM's 404 "The model `x` does not exist" (OpenAI's code: model_not_found)
_NOT_SERVED = re.compile(r"\bmodel not exist\b|\bmodel_not_found\b|\bthe model `[^`]*` does not exist|"
                         r"not_found_error\W+message\W+model: |\bmodels/[\w.:-]+ is not found", re.IGNORECASE)
_NOT_SERVED_STATUS = (400, 404)
#: the model name in such an answer, where litellm's exception does not carry it
_NAMED = re.compile(r"model `([^`]+)`|\bmodel: ([\w.:-]+)|\bmodels/([\w.:-]+) is not found")
#: who serves a litellm route (its prefix: ``deepseek/deepseek-chat``), as a person names them
SERVED_BY = {"deepseek": "DeepSeek", "anthropic": "Anthropic", "gemini": "Gemini", "vertex_ai": "Vertex AI",
             "openai": "the server at its api_base", "mistral": "Mistral", "groq": "Groq"}


def not_served(model: str, route: str, served: str | None, env: tuple[str, ...] = ()) -> tuple[str, str]:
    """(what, fix) for a model name the provider does not serve: ``model`` is the name in config's
    ``models`` table, ``route`` litellm's provider prefix (``deepseek``), ``served`` the name sent,
    ``env`` the variables config's ``litellm_model`` is read from (``ModelSpec.litellm_model_env``):
    the fix names them, as what a user changes."""
    who = SERVED_BY.get(route, "the server")
    name = f"the model {served!r}" if served else "the model it was asked for"
    key = f"models.{model}.litellm_model in config.yaml"
    fix = f"set {' or '.join(env)} (read by {key}) or {key} itself" if env else f"set {key}"
    return redact(f"{who} does not serve {name} (retired or misspelt)"), redact(fix)


def _not_served_error(exc: BaseException, text: str, provider: str, model: str,
                      env: tuple[str, ...] = ()) -> ModelNotServed:
    route_model = str(getattr(exc, "model", None) or "")
    route = str(getattr(exc, "llm_provider", None) or route_model.partition("/")[0])
    served = route_model.removeprefix(f"{route}/") if route_model else None
    if not served and (named := _NAMED.search(text)):
        served = next(group for group in named.groups() if group)
    what, fix = not_served(model, route, served, env)
    return ModelNotServed(provider, f"{what}: {fix}", model=model, text=f"{model}: {what}: {fix}")


def translate_error(exc: BaseException, provider: str, model: str, timeout_s: float,
                    key_env: str | None = None, model_env: tuple[str, ...] = ()) -> ProviderError:
    """Map one litellm/openai/httpx exception to the error tree, with a secret-free message;
    ``key_env`` (the variable the key came from) is named when the provider refuses the key,
    ``model_env`` (those the model's name came from) when it does not serve the name."""
    import httpx
    import openai

    status = getattr(exc, "status_code", None)
    raw = str(exc)
    # litellm appends the Python traceback of what failed inside it (its own file paths): never shown
    text = redact(raw.split(_TRACEBACK)[0]).replace("litellm.", "").strip() or type(exc).__name__
    # not cut here: the router caps a trace step's detail (``capped_detail``), keeping its end too
    text = _ADDRESS.sub("", _SSL_CONTEXT.sub("", _HANDLE_WITH.sub("", _REPEATED_HEAD.sub(r"\1: ", text))))
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | TimeoutError):
        if status == 408 and not _OWN_TIMEOUT.search(text):
            # the server said it gave up waiting (litellm maps its 408 to a timeout): not our clock
            return ProviderTimeout(provider, f"HTTP 408 (the server timed the request out): {text.replace('Timeout Error: ', '', 1)}", model=model)
        return ProviderTimeout(provider, f"no answer within {timeout_s:g} s", model=model)
    if type(exc).__name__ == "UnsupportedParamsError":  # refused by litellm before sending: no HTTP status
        refused = _DROP_PARAMS.sub("", text.removeprefix("UnsupportedParamsError: ")).strip()
        return ProviderError(provider, f"not sent: {refused} Leave that parameter out of models.{model} in"
                             " config.yaml (`sampling: false` leaves out temperature and top_p)", model=model)
    if status == 429 or isinstance(exc, openai.RateLimitError):
        retry_after = _retry_after_of(exc)
        hint = f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""
        return ProviderRateLimited(provider, f"rate limited{hint}: {text}", model=model, retry_after=retry_after)
    if _UNREADABLE.search(text) or (_TRACEBACK in raw and isinstance(exc, openai.APIConnectionError)
                                     and _MISSING_FIELD.search(text)):
        # the server answered, with a body litellm could not read: its status is litellm's own
        # (500 for Anthropic, 422 for Gemini), "cannot connect" and "HTTP 422" were wrong
        return ProviderUnavailable(provider, f"unreadable answer: {text}", model=model)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError) or _NO_CONNECTION.search(text):
        return ProviderUnavailable(provider, f"cannot connect: {text}", model=model)
    if isinstance(status, int) and status >= 500:
        # Anthropic's 529 (overloaded) comes through litellm as a 500: said as what was sent
        said = 529 if status == 500 and _OVERLOADED.search(text) else status
        return ProviderUnavailable(provider, f"HTTP {said}: {text}", model=model)
    if isinstance(status, int) and 200 <= status < 300:  # a success status with a body that is no answer
        return ProviderUnavailable(provider, f"unreadable answer (HTTP {status}): {text}", model=model)
    if status in _NOT_SERVED_STATUS and _NOT_SERVED.search(text):  # no retry or wait mends it
        return _not_served_error(exc, text, provider, model, model_env)
    if status in (401, 403) and key_env:
        return ProviderError(provider, f"HTTP {status}: the key in ${key_env} was refused: {text}", model=model)
    prefix = f"HTTP {status}: " if isinstance(status, int) else ""
    return ProviderError(provider, f"{prefix}{text}", model=model)
