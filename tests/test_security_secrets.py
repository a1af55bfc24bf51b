"""Secrets: planted keys never leave through any output path.

Paths covered: the redaction layer itself (every secret shape, env and config values), every
log record (any library, tracebacks too), the dispatcher's errors and crash path, litellm
errors whose body echoes the key (a 401 like OpenAI's), the RunPod handler (result and handler
exception), an MCP tool result, and the CLI's stdout/stderr. ``${VAR}`` in request data stays
literal: only operator config is interpolated.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI

ROOT = Path(__file__).resolve().parents[1]
LOCAL_ALIAS = "smollm2-135m-instruct"
DEEPSEEK_KEY = "sk-planted-deepseek-0123456789abcdef"

SHAPES = {
    "openai": "sk-proj-0123456789abcdefghijKLMN",
    "anthropic": "sk-ant-api03-abcdefghijklmnop_QRSTUV",
    "tavily": "tvly-dev-0123456789abcdefXYZ",
    "google": "AIzaSyA0123456789abcdefghijklmnopqrstu",
    "google-oauth": "ya29.a0AfH6SMBplantedplantedplanted",
    "aws-id": "AKIAIOSFODNN7EXAMPLE",
    "runpod": "rpa_0123456789ABCDEFGHIJKLMNOP",
    "github": "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
    "hf": "hf_0123456789abcdefghijklmnopqrstuvwx",
}
CONTEXTS = {
    "bearer": ("Authorization: Bearer {}", "opaque-token-0123456789"),
    "basic": ("Authorization: Basic {}", "dXNlcjpwbGFudGVkLXBhc3N3b3Jk"),
    "presigned": ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA/x&X-Amz-Signature={}&X-Amz-Date=1", "f00dbeef" * 8),
    "presigned-v2": ("https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIAX&Signature={}&Expires=1", "c2lnbmF0dXJlLXBsYW50ZWQ"),
    "gcs-signed": ("https://storage.googleapis.com/b/k?X-Goog-Signature={}", "abad1dea" * 8),
    "api_key-query": ("https://api.example.com/v1?api_key={}&q=1", "plantedquerykey123"),
    "key-query": ("https://generativelanguage.googleapis.com/v1?key={}", "plantedgooglekey123"),
    "json-api_key": ('{{"api_key": "{}"}}', "planted-json-key-123"),
    "aws-secret": ("aws_secret_access_key = {}", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    "dsn-password": ("postgresql://swarm:{}@db.internal:5432/swarm", "pg-planted-pass"),
    "client_secret": ("client_secret={}", "planted-client-secret"),
    "azure-function-code": ("https://f.azurewebsites.net/api/x?api-version=1&code={}", "AzFuncPlanted0123"),
    "private_token-query": ("https://gitlab.example/api?private_token={}", "glplanted0123"),
    "api-key-header": ("api-key: {}", "azureopenaiplanted0123"),
    "x-auth-token-header": ("X-Auth-Token: {}", "plantedauthtoken"),
    "cookie-header": ("Cookie: {}", "session=plantedcookie0123"),
    "digest": ('Authorization: Digest username="u", response="{}"', "6629fae49393a05397450978507c4ef1"),
    "sigv4": ("Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, Signature={}", "fe5f80f77d5fa3beca038a248ff027"),
    "dsn-empty-user": ("redis://:{}@cache.internal:6379/0", "redis-planted-pass"),
}


@pytest.fixture
def log_redaction() -> Iterator[None]:
    import core.redact as redact_module

    factory = logging.getLogRecordFactory()
    redact_module.install_log_redaction()
    yield
    logging.setLogRecordFactory(factory)
    redact_module._installed_factory = None
    for handler in logging.getLogger().handlers:
        for f in [f for f in handler.filters if isinstance(f, redact_module.RedactingFilter)]:
            handler.removeFilter(f)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_every_known_key_shape_is_masked(name: str) -> None:
    from core.redact import redact

    out = redact(f"upstream said: bad key {SHAPES[name]} (check it)")
    assert SHAPES[name] not in out and "[REDACTED]" in out and out.startswith("upstream said: bad key")


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_secrets_in_headers_urls_and_config_text_are_masked(name: str) -> None:
    from core.redact import redact

    template, secret = CONTEXTS[name]
    assert secret not in redact(template.format(secret))


def test_ordinary_text_is_left_alone() -> None:
    from core.redact import redact

    text = "A basic answer: see https://example.org/docs?page=2 and the token budget of 512; keyboard."
    assert redact(text) == text


def test_values_of_env_vars_named_like_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.redact import redact

    monkeypatch.setenv("ACME_API_KEY", "acme-value-one")
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "zz-value-two")
    monkeypatch.setenv("WEBHOOK_SECRET", "qq-value-three")
    monkeypatch.setenv("SWARM_MCP_TOKENS", "alice=tok-alice-001,bob=tok-bob-0002")
    monkeypatch.setenv("NOT_SENSITIVE_NAME", "visible-value")
    out = redact("acme-value-one zz-value-two qq-value-three tok-alice-001 tok-bob-0002 visible-value")
    assert out.split() == ["[REDACTED]"] * 5 + ["visible-value"]


def test_an_env_var_config_names_as_a_key_is_masked_whatever_its_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``api_key_env: WEIRD_CREDENTIAL``: the name ends in no secret suffix, the value is a key all the same
    (a 401 body echoing it reached the trace, the error, the log and the MCP result)."""
    import yaml

    from core.config import load_config
    from core.redact import redact

    monkeypatch.setenv("WEIRD_CREDENTIAL", "credVALUE42abc")
    monkeypatch.setenv("RUNNER_CRED", "runner-value-77")
    assert redact("credVALUE42abc") == "credVALUE42abc"  # nothing says it is a secret yet
    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    next(iter(raw["models"].values()))["api_key_env"] = "WEIRD_CREDENTIAL"
    raw.setdefault("runner", {}).setdefault("runpod", {})["api_key_env"] = "RUNNER_CRED"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)
    assert redact("Incorrect API key provided: credVALUE42abc; runner-value-77") == \
        "Incorrect API key provided: [REDACTED]; [REDACTED]"
    monkeypatch.setenv("WEIRD_CREDENTIAL", "rotated-value-99")  # a new value is a secret too
    assert redact("rotated-value-99") == "[REDACTED]"


def test_a_secret_echoed_escaped_or_url_quoted_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys with symbols (AWS secrets, base64 tokens, passwords) come back JSON-escaped or URL-quoted."""
    import urllib.parse

    from core.redact import redact, redact_data

    key = "Zq9!x#Yw$7&kP=4/Lm+\"q\\z'end"
    monkeypatch.setenv("SYMBOL_API_KEY", key)
    forms = [key, json.dumps(key)[1:-1], urllib.parse.quote(key, safe=""), urllib.parse.quote(key), urllib.parse.quote_plus(key)]
    for form in forms:
        out = redact(f"upstream: bad key {form} (401)")
        assert form not in out and out == "upstream: bad key [REDACTED] (401)", form
    body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}"}})
    assert "[REDACTED]" in redact(body) and json.dumps(key)[1:-1] not in redact(body)
    assert redact_data({"e": [f"?k={urllib.parse.quote_plus(key)}"]}) == {"e": ["?k=[REDACTED]"]}

def test_a_secret_set_changed_or_removed_in_env_between_calls_is_seen_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redaction caches its patterns: any change to the environment must still show at the next call."""
    from core.redact import redact, redact_data

    assert redact("first-secret-value") == "first-secret-value"
    monkeypatch.setenv("LATE_API_KEY", "first-secret-value")
    assert redact_data({"a": ["first-secret-value"]}) == {"a": ["[REDACTED]"]}
    monkeypatch.setenv("LATE_API_KEY", "second-secret-value")  # same names, another value
    assert redact("first-secret-value second-secret-value") == "first-secret-value [REDACTED]"
    os.environ["OTHER_TOKEN"] = "third-secret-value"  # straight into os.environ, not via monkeypatch
    try:
        assert redact("third-secret-value") == "[REDACTED]"
    finally:
        del os.environ["OTHER_TOKEN"]
    assert redact("third-secret-value") == "third-secret-value"
    monkeypatch.delenv("LATE_API_KEY")
    assert redact("second-secret-value") == "second-secret-value"


def test_no_secret_shape_or_value_is_shorter_than_the_length_redaction_skips() -> None:
    """Strings under MIN_SECRET_CHARS are returned unscanned: no pattern may match fewer characters."""
    try:
        from re import _parser as sre_parse  # type: ignore[attr-defined]
    except ImportError:  # Python < 3.11
        import sre_parse  # type: ignore[no-redef]

    from core.redact import MIN_SECRET_CHARS, redact, register_secret
    from core.redact_patterns import _PATTERNS

    def opcodes(parsed: Any) -> set[str]:  # every opcode in a parsed pattern, nested ones too
        found = set()
        for op, arg in parsed:
            found.add(str(op) + (":behind" if str(op).startswith("ASSERT") and arg[0] < 0 else ""))
            for item in arg if isinstance(arg, (list, tuple)) else ():
                if isinstance(item, sre_parse.SubPattern):
                    found |= opcodes(item)
                elif isinstance(item, (list, tuple)):
                    found |= set().union(*(opcodes(i) for i in item if isinstance(i, sre_parse.SubPattern)))
        return found

    for pattern in _PATTERNS:
        parsed = sre_parse.parse(pattern.pattern)
        assert parsed.getwidth()[0] >= MIN_SECRET_CHARS, pattern.pattern
        # redact_data tests all strings joined by "\x00" at once: sound without anchors or a positive
        # look-behind; a negative look-behind of word characters sees "\x00" where a string starts
        assert not {op for op in opcodes(parsed) if op == "AT" or op == "ASSERT:behind"}, pattern.pattern
    register_secret("x" * (MIN_SECRET_CHARS - 1))  # too short to register: it would mask ordinary words
    assert redact("x" * (MIN_SECRET_CHARS - 1)) == "x" * (MIN_SECRET_CHARS - 1)
    assert redact("?sig=x") == "?sig=[REDACTED]"  # the shortest shape, exactly MIN_SECRET_CHARS long


def test_a_key_prefix_inside_a_word_is_no_key() -> None:
    """'task-management-system' holds 'sk-management-system': it was masked, and a job whose
    input said so was refused as holding a secret when resumed."""
    from core.redact import redact

    for text in ("Design a task-management-system for a small team", "ask-questions-about-everything-here",
                 "the shf_abcdefghijklmnopqrstuvwxyz0123456789 build", "MYAKIAABCDEFGHIJKLMNOP"):
        assert redact(text) == text
    for key in ("sk-abcdefghijklmnop1234", "hf_abcdefghijklmnopqrstuvwxyz0123456789", "AKIAABCDEFGHIJKLMNOP"):
        assert redact(f"key {key} end") == "key [REDACTED] end" and redact(f'"{key}"') == '"[REDACTED]"'
        assert redact(f"x={key}") == "x=[REDACTED]"


def test_literal_secrets_in_operator_config_are_masked_once_registered() -> None:
    from core.redact import redact
    from core.redact_config import register_config_secrets

    config = {"providers": {"search": {"backends": {"tavily": {"api_key": "literal-in-yaml-777", "timeout_s": 15}}}},
              "checkpointer": {"dsn": "postgresql://u:literal-dsn-pass@h/db"}, "models": [{"name": "x"}]}
    assert register_config_secrets(config) == 2
    assert "literal-in-yaml-777" not in redact("tavily refused literal-in-yaml-777")
    assert "literal-dsn-pass" not in redact("connect to postgresql://u:literal-dsn-pass@h/db failed")


def test_a_dsn_password_is_masked_percent_decoded_too() -> None:
    """A DSN writes ``@`` in its password as ``%40``; the driver's error, and the password the
    operator pastes, hold it decoded, which went out whole when only the written form was known."""
    from core.redact import redact, register_dsn

    register_dsn("postgresql://u:p%40ssw0rd9@h/db")
    assert redact("x p@ssw0rd9 y") == "x [REDACTED] y"
    assert redact("x p%40ssw0rd9 y") == "x [REDACTED] y"


def test_each_word_of_an_unquoted_dsn_password_with_a_space_is_masked() -> None:
    """libpq quotes the word after the space (``missing "=" after "HorseBatteryStaple"``); only the
    first word was known, so the rest of the password reached the log on every pool retry."""
    from core.redact import redact, register_dsn

    register_dsn("host=127.0.0.1 port=5999 user=swarm password=Tr0ub4dor HorseBatteryStaple dbname=swarm")
    said = redact('error connecting in \'pool-1\': missing "=" after "HorseBatteryStaple" in connection info string')
    assert "HorseBatteryStaple" not in said and "[REDACTED]" in said
    assert redact("user=swarm dbname=swarm") == "user=swarm dbname=swarm"  # the other values are no secret


def test_every_log_record_is_redacted_whoever_logs_it(log_redaction: None, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = SHAPES["tavily"]
    logging.getLogger("LiteLLM").error("request failed with key %s", secret)
    logging.getLogger("httpx").warning(f"GET https://x?api_key={secret}")
    try:
        raise ValueError(f"upstream rejected {SHAPES['openai']}")
    except ValueError:
        logging.getLogger("some.library").exception("boom")
    text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    assert "request failed with key [REDACTED]" in text
    assert secret not in text and SHAPES["openai"] not in text
    assert "ValueError" in caplog.text  # the traceback is kept, only the secret goes


def test_redaction_survives_a_broken_format_string(log_redaction: None, caplog: pytest.LogCaptureFixture) -> None:
    logging.getLogger("x").error("%d items for %s", "not-a-number", SHAPES["openai"])
    assert SHAPES["openai"] not in caplog.text


# --- end to end: dispatcher, litellm 401 echo, handler, MCP, CLI --------------------------------


@pytest.fixture
def echoing_upstreams(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """DeepSeek and the local model both answer 401 with the refused key in the body."""
    with FakeOpenAI() as server:
        monkeypatch.setenv("DEEPSEEK_API_KEY", DEEPSEEK_KEY)
        monkeypatch.setenv("DEEPSEEK_API_BASE", server.url + "/v1")
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(server.port))
        server.script("deepseek-flash", Behaviour.fail(401))
        server.script(LOCAL_ALIAS, Behaviour.fail(401))
        yield server


def _assert_clean(text: str) -> None:
    assert DEEPSEEK_KEY not in text
    assert DEEPSEEK_KEY[:20] not in text  # not even a prefix of it


async def test_litellm_error_echoing_the_key_never_reaches_result_or_log(
    echoing_upstreams: FakeOpenAI, log_redaction: None, caplog: pytest.LogCaptureFixture
) -> None:
    from swarm.runtime import Runtime

    caplog.set_level(logging.DEBUG)
    runtime = Runtime()
    try:
        result = await runtime.run({"project": "swarm", "action": "delegate", "input": {"task": "hi", "kind": "critical"}})
    finally:
        await runtime.aclose()
    assert result["status"] == "FAILED" and result["error"]["type"] == "AllProvidersFailed"
    sent = echoing_upstreams.requests_for("deepseek-flash")
    assert sent and DEEPSEEK_KEY in sent[0].headers.get("authorization", "")  # the key really was used
    _assert_clean(json.dumps(result))
    _assert_clean(caplog.text)


async def test_handler_result_and_handler_exception_carry_no_secret(
    echoing_upstreams: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, log_redaction: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import handler

    monkeypatch.setattr(handler, "_runtime", None)
    job = {"id": "rp-job-1", "input": {"project": "swarm", "action": "delegate", "input": {"task": "hi", "kind": "critical"}}}
    try:
        result = await handler.handler(job)
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()
    assert result["status"] == "FAILED"
    _assert_clean(json.dumps(result))

    class Exploding:
        async def run(self, body: Any, progress: Any = None) -> Any:
            raise RuntimeError(f"connection to https://u:{DEEPSEEK_KEY}@db failed with {DEEPSEEK_KEY}")

    monkeypatch.setattr(handler, "_runtime", Exploding())
    crashed = await handler.handler({"id": "rp-job-2", "input": job["input"]})
    assert crashed["status"] == "FAILED" and json.loads(crashed["error"])["type"] == "InternalError"
    assert "Traceback" not in json.dumps(crashed)
    _assert_clean(json.dumps(crashed))
    _assert_clean(caplog.text)


async def test_dispatcher_crash_and_errors_carry_no_secret(make_context: Any, caplog: pytest.LogCaptureFixture,
                                                           log_redaction: None) -> None:
    from core.errors import ProviderUnavailable
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    def crash(messages: Any, config: Any) -> str:
        raise KeyError(f"lookup of {SHAPES['anthropic']}")

    def provider_error(messages: Any, config: Any) -> str:
        raise ProviderUnavailable("claude", f"401: invalid x-api-key {SHAPES['anthropic']}")

    job = {"project": "swarm", "action": "delegate", "input": {"task": "hi", "kind": "critical"}}
    for fn in (crash, provider_error):
        result = await dispatch(job, make_context(FunctionLLM(fn)))
        assert result["status"] == "FAILED"
        assert SHAPES["anthropic"] not in json.dumps(result)
    assert SHAPES["anthropic"] not in caplog.text


async def test_mcp_tool_result_carries_no_secret(echoing_upstreams: FakeOpenAI, tmp_path: Path) -> None:
    from mcp import Client
    from mcp_helpers import write_config

    from mcp_server.server import build_server

    config = write_config(tmp_path, wait_budget_s=30)
    async with Client(build_server(str(config))) as client:
        result = await client.call_tool("delegate", {"task": "hi", "kind": "critical"})
    text = json.dumps([c.model_dump() for c in result.content]) + json.dumps(result.structured_content)
    assert "AllProvidersFailed" in text or "every backend failed" in text
    _assert_clean(text)


@pytest.mark.slow  # a CLI subprocess importing litellm
def test_cli_output_carries_no_secret(echoing_upstreams: FakeOpenAI) -> None:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "SWARM_LOG_LEVEL": "DEBUG"}
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from swarm.cli import main; sys.exit(main())",
         "delegate", "hi", "--kind", "critical", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode != 0 or '"FAILED"' in out.stdout
    assert "every backend failed" in out.stdout + out.stderr
    _assert_clean(out.stdout)
    _assert_clean(out.stderr)


async def test_env_references_in_request_data_stay_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarm.runtime import Runtime

    with FakeOpenAI() as server:
        monkeypatch.setenv("DEEPSEEK_API_KEY", DEEPSEEK_KEY)
        monkeypatch.setenv("DEEPSEEK_API_BASE", server.url + "/v1")
        server.script("deepseek-flash", Behaviour.echo())
        runtime = Runtime()
        try:
            result = await runtime.run({"project": "swarm", "action": "delegate",
                                        "input": {"task": "Repeat: ${DEEPSEEK_API_KEY} ${HOME:-x}", "kind": "critical"}})
        finally:
            await runtime.aclose()
        bodies = json.dumps([r.body for r in server.requests])
    assert result["status"] == "COMPLETED", result["error"]
    assert "${DEEPSEEK_API_KEY} ${HOME:-x}" in result["output"]["text"]
    assert "${DEEPSEEK_API_KEY}" in bodies and DEEPSEEK_KEY not in bodies and os.environ["HOME"] not in bodies


def test_loading_a_config_registers_its_literal_secrets(tmp_path: Path) -> None:
    import yaml

    from core.config import load_config
    from core.redact import redact

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["providers"]["search"]["backends"]["tavily"]["api_key"] = "literal-tavily-in-file-4242"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)
    assert "literal-tavily-in-file-4242" not in redact("tavily said: bad key literal-tavily-in-file-4242")


def test_the_quick_scan_never_misses_a_shape_the_patterns_catch() -> None:
    """``_may_hold_secret`` skips the patterns on text holding none of ``_TRIGGERS``: fuzz it with
    text built from the patterns' own words (random case, cut short) and check it never says
    "nothing" where a pattern matches; every pattern must have matched often enough to count."""
    import random

    from core.redact_patterns import _ANY_PATTERN, _PATTERNS, _may_hold_secret

    words = ["sk-ant-", "sk-", "tvly-", "AIza", "AKIA", "ASIA", "rpa_", "ya29.", "ghp_", "gho_", "ghs_", "hf_", " hf_", " ghp_", " AKIA", " ASIA",
             "Bearer ", "bearer\t", "?", "&", "=", ":", "://", "@", "/", "x-amz-", "x-goog-", "signature", "credential",
             "security-token", "sig", "api_key", "apikey", "x-api-key", "aws_secret_access_key", "access_token",
             "refresh_token", "client_secret", "password", "passwd", "authorization", "basic ", "token ", "token",
             "key", "id", "awsaccesskeyid", "https", "user", " ", "\n", '"', "'", "ABCDEFGHIJKLMNOP0123",
             "abcdefghijklmnopqrstuvwxyz0123456789", "Q1w2E3r4", "-_", ".", "?sig=", "&x-amz-signature=",
             "?x-goog-signature=", "&x-goog-credential=", "?awsaccesskeyid=", "&token=", "Authorization: Basic ",
             'authorization"=token ', "https://bob:", "ftp://a:", "@host", "digest ", "Authorization: Digest ",
             "aws4-hmac-sha256 ", "code", "auth", "secret", "private_token", "api-key", "x-auth-token", "cookie",
             "secretaccesskey", "redis://:", "&code=", "?auth=", "&secret="]
    rng = random.Random(17)
    hits = dict.fromkeys(range(len(_PATTERNS)), 0)
    for _ in range(40_000):
        parts = []
        for word in rng.choices(words, k=rng.randint(1, 8)):
            if rng.random() < 0.3:
                word = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)
            if rng.random() < 0.1 and len(word) > 1:
                cut = rng.randrange(len(word))
                word = word[:cut] + word[cut + 1:]
            parts.append(word)
        text = "".join(parts)
        if _ANY_PATTERN.search(text) is None:
            continue
        assert _may_hold_secret(text, (None, _ANY_PATTERN)), text
        for i, pattern in enumerate(_PATTERNS):
            hits[i] += pattern.search(text) is not None
    assert min(hits.values()) >= 20, {_PATTERNS[i].pattern[:40]: n for i, n in hits.items()}


def test_redact_data_masks_a_secret_wherever_it_sits_among_clean_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.redact import redact_data

    monkeypatch.setenv("NESTED_API_KEY", "nested-secret-42")
    clean = {"trace": [{"step": "draft", "detail": "ok"}] * 5, "text": "plain words", "n": 3, "t": ("a", "b")}
    assert redact_data(clean) == {**clean, "t": ["a", "b"]}  # copied, tuples as lists, as before
    data = {**clean, "trace": [*clean["trace"], {"detail": "upstream said nested-secret-42 and Bearer abcdefgh123"}]}
    assert redact_data(data)["trace"][-1]["detail"] == "upstream said [REDACTED] and Bearer [REDACTED]"
    assert redact_data(["caf\u00e9 ", "x", "sk-proj-0123456789abcdefghij"]) == ["caf\u00e9 ", "x", "[REDACTED]"]


def test_redact_data_reaches_every_kind_of_value_and_returns_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.redact import redact_data

    class Text(str):
        pass

    class Record(dict):  # type: ignore[type-arg]
        pass

    monkeypatch.setenv("KINDS_API_KEY", "kinds-secret-4242")
    data = {"n": 1, "f": 0.5, "b": True, "none": None, "sub": Text("has kinds-secret-4242"),
            "rec": Record(x=("kinds-secret-4242", 2)), "deep": [{"t": ("ok", ["kinds-secret-4242"])}]}
    out = redact_data(data)
    assert out == {"n": 1, "f": 0.5, "b": True, "none": None, "sub": "has [REDACTED]",
                   "rec": {"x": ["[REDACTED]", 2]}, "deep": [{"t": ["ok", ["[REDACTED]"]]}]}
    clean = {"trace": [{"step": "a", "ms": 1.5}], "rec": Record(k="v")}
    copied = redact_data(clean)
    copied["trace"][0]["step"] = "changed"
    copied["rec"]["k"] = "changed"
    assert clean == {"trace": [{"step": "a", "ms": 1.5}], "rec": {"k": "v"}}  # the input is untouched


def test_an_image_s_base64_is_never_read_as_text_to_redact() -> None:
    """Random base64 holds a Google-key shape now and then (~5% of 4 MB images): masked, the
    image came back corrupt. Text beside it is still redacted."""
    from core.redact import redact_data

    image = "iVBORw0KGgo" + "AIza" + "Q" * 35 + "=="
    text = "leaked AIza" + "Z" * 35
    out = redact_data({"output": {"image_b64": image, "note": text, "results": [{"image_b64": image}]}})
    assert out["output"]["image_b64"] == image and out["output"]["results"][0]["image_b64"] == image
    assert "AIza" not in out["output"]["note"]


def test_secret_names_match_in_camel_case_and_behind_separators_but_not_inside_words() -> None:
    from core.redact_config import SECRET_KEY_NAME

    for name in ("accessToken", "clientSecret", "githubtoken", "x-api-key", "X-Auth", "api_key", "Authorization"):
        assert SECRET_KEY_NAME.search(name), name
    for name in ("author", "tokenizer", "secretary_name", "authority"):
        assert not SECRET_KEY_NAME.search(name), name


def test_a_formatter_that_reads_the_args_still_gets_them_with_the_secret_masked(
    log_redaction: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn's access formatter unpacks a record's args (client, method, path, version, status):
    with every record's args merged away, each HTTP request logged a TypeError and its traceback
    instead of its line (a reviewer counted 113 of 113)."""
    from uvicorn.logging import AccessFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False))
    access = logging.getLogger("uvicorn.access.test")
    access.addHandler(handler)
    access.propagate = False
    access.setLevel(logging.INFO)
    try:
        for path in ("/mcp", f"/mcp?api_key={SHAPES['openai']}"):
            access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", path, "1.1", 401)
    finally:
        access.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err, err
    assert '127.0.0.1:5000 - "POST /mcp HTTP/1.1" 401' in err
    assert SHAPES["openai"] not in err and '"POST /mcp?api_key=[REDACTED] HTTP/1.1" 401' in err, err


async def test_a_secret_in_a_question_is_masked_where_the_report_quotes_it_bare(corpus, tmp_path) -> None:
    """Keyless research of a question holding "Authorization: Bearer <token>" said "None of the
    sources found mentions <token>" in its report and warnings, stored in the job and the thread:
    the pattern masks "Bearer <token>", not the token alone."""
    from test_research_graph import Script, _context

    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    token = "PLANTEDBEARERtok3n0123456789abcdef"
    search = SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])
    ctx, _ = _context(tmp_path, FunctionLLM(Script(plan="no plan")), search)

    async def make(job_id: str) -> Any:
        ctx.job_id = job_id
        return ctx

    question = f"Why is my request with Authorization: Bearer {token} refused by the checkpointer?"
    result = await dispatch({"project": "swarm", "action": "research",
                             "input": {"question": question, "mode": "extractive"}}, make)
    assert result["status"] == "COMPLETED", result["error"]
    assert token not in json.dumps(result) and "PLANTEDBEARER" not in json.dumps(result)


def test_an_error_body_is_redacted_before_it_is_cut() -> None:
    """RunPod's 400 echoed the job body; cut at 300 characters first, a forwarded key lost its
    tail, no known shape matched what was left, and its first characters reached the error."""
    import httpx

    from swarm.executors.runpod import RunPodExecutor

    key = "AIzaSyD" + "k3Jf9QmZx7LpW2vR8tYbN4cH6gE1uA0sXq"  # a Gemini key's shape, 39 characters
    echo = '{"error": "bad input: ' + "a" * 263 + f'\\"GEMINI_API_KEY\\": \\"{key}\\""}}'
    runner = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "rpa_" + "K" * 40)
    error = runner._http_error(httpx.Response(400, text=echo, request=httpx.Request("POST", "http://x/run")), "/run")
    assert "AIzaSy" not in str(error) and key[:7] not in str(error), str(error)
