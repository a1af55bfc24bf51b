"""Config checks a reviewer found missing: backend settings, secret headers, one run naming every
bad key, route suffixes, duplicate keys, unsupported ``${...}`` forms, MCP tool names, unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigStore, load_config, redacted_dump
from core.errors import ConfigError
from core.redact import redact


def _edit(config_file: Path, *pairs: tuple[str, str]) -> None:
    text = config_file.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    config_file.write_text(text)


def _problems(config_file: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(config_file, env=env if env is not None else {})
    message = str(err.value)
    assert str(config_file) in message
    return message


# --- 1. backend settings ------------------------------------------------------------------------

def test_bad_search_and_storage_backend_settings_are_each_named_in_one_run(config_file: Path) -> None:
    _edit(config_file,
          ('format: "json"\n        timeout_s: 10', 'formt: "json"\n        timeout_s: "ten"'),
          ("        timeout_s: 15\n", "        timeout_s: -10\n"),
          ("presign_expiry_s: 3600", 'presign_expiry_s: "1h"\n        presign_expiry: 60'),
          ('default: "${SWARM_STORAGE:-local}"', 'default: "s4"'),
          ('default: "searxng"', 'default: "serxng"'),
          ('fallback_chain: ["searxng", "tavily", "local"]', 'fallback_chain: ["searxng", "bing", "local"]'))
    message = _problems(config_file)
    assert "providers.search.backends.searxng.formt: unknown key" in message
    assert "valid: url, format, timeout_s" in message
    assert "providers.search.backends.searxng.timeout_s: Input should be a valid number" in message
    assert "providers.search.backends.tavily.timeout_s: Input should be greater than 0" in message
    assert "providers.storage.backends.s3.presign_expiry_s: Input should be a valid integer" in message
    assert "providers.storage.backends.s3.presign_expiry: unknown key" in message
    assert "providers.storage.default: 's4' is not a storage backend; valid: local, s3" in message
    assert "providers.search.default: 'serxng' is not a configured search backend" in message
    assert "providers.search.fallback_chain[1]: 'bing' is not a configured search backend" in message
    assert "valid: searxng, tavily, local" in message


def test_an_s3_prefix_that_is_no_relative_key_is_refused_at_load(config_file: Path) -> None:
    """``prefix: "/swarm/"`` loaded, and every image job then failed as the caller's bad input
    (field ``prefix``, which no tool has)."""
    for bad, said in (('"/swarm/"', "must be a relative path"), ('"a/../b/"', "'..' segment")):
        text = config_file.read_text()
        config_file.write_text(text.replace('prefix: "swarm/"', f"prefix: {bad}", 1))
        message = _problems(config_file)
        assert "providers.storage.backends.s3.prefix: storage key" in message and said in message, message
        config_file.write_text(text)
    assert load_config(config_file, env={}).providers.storage.backends["s3"]["prefix"] == "swarm/"


def test_backend_settings_from_env_are_typed_and_an_unknown_backend_lists_the_shipped_ones(config_file: Path) -> None:
    _edit(config_file, ("        timeout_s: 10\n", '        timeout_s: "${SEARXNG_TIMEOUT:-7}"\n'))
    config = load_config(config_file, env={})
    assert config.providers.search.backends["searxng"]["timeout_s"] == 7.0
    assert config.providers.storage.backends["s3"]["presign_expiry_s"] == 3600
    _edit(config_file, ("      tavily:\n", "      bing:\n        timeout_s: 5\n      tavily:\n"))
    assert "providers.search.backends.bing: unknown key; remove it or check its spelling; valid: searxng, tavily, local" \
        in _problems(config_file)


def test_hot_reload_refuses_a_bad_backend_setting(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWARM_STORAGE", "local")
    store = ConfigStore(config_file)
    _edit(config_file, ("presign_expiry_s: 3600", "presign_expiry_s: 99999999"))
    assert store.current().providers.storage.backends["s3"]["presign_expiry_s"] == 3600
    assert store.last_error and "providers.storage.backends.s3.presign_expiry_s" in store.last_error


def test_shipped_backend_names_match_the_registry() -> None:
    from core.config_backends import SEARCH_BACKENDS, STORAGE_BACKENDS
    from providers.registry import BACKENDS

    assert set(SEARCH_BACKENDS) == set(BACKENDS["search"])
    assert set(STORAGE_BACKENDS) == set(BACKENDS["storage"])


async def test_search_chain_treats_a_backend_crash_as_a_failure_and_tries_the_next() -> None:
    from providers.base import SearchResult
    from providers.circuit import CircuitBoard
    from providers.search.chain import SearchChain
    from providers.testing import FakeSearch

    class Broken:
        async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
            raise ValueError("could not convert string to float: 'ten'")

    hit = SearchResult(url="https://a", title="a", snippet="s", source="fake")
    chain = SearchChain([("broken", Broken()), ("fake", FakeSearch([hit]))], circuits=CircuitBoard())
    results, trace = await chain.search_traced("q")
    assert results == [hit]
    assert [(s.provider, s.outcome, s.error_class) for s in trace] == [
        ("broken", "error", "ValueError"), ("fake", "ok", None)]
    assert "unexpected ValueError" in (trace[0].detail or "")


# --- 2. secrets in extra headers ----------------------------------------------------------------

def test_secret_headers_are_masked_in_the_dump_and_registered(config_file: Path) -> None:
    headers = {"x-api-key": "hdr-secret-0001", "api-key": "hdr-secret-0002", "X-Auth": "hdr-secret-0003",
               "Authorization": "Basic hdr-secret-0004", "x-auth-token": "hdr-secret-0005", "Cookie": "sid=hdr-secret-6",
               # a key header by its vendor's name: printed in clear by config check and swarm://config
               "Ocp-Apim-Subscription-Key": "hdr-secret-0007", "x-functions-key": "hdr-secret-0008",
               "X-Auth-Key": "hdr-secret-0009",
               # a vendor's own header names (a secret-leak review): any header but a plain one is a credential
               "X-RapidAPI-Key": "9f3c2a7be1msh4d5e6f7a8b9c", "x-portkey-virtual-key": "vk-openai-prod-7c1e9a44b2",
               "X-Honeycomb-Team": "hcteam-0011-secret", "X-Key": "hdr-secret-0012"}
    plain = {"HTTP-Referer": "https://my.site/app", "anthropic-version": "2023-06-01"}
    headers_and_plain = {**headers, **plain}
    block = "".join(f'        "{k}": "{v}"\n' for k, v in headers_and_plain.items())
    _edit(config_file, ("    extra_params: { reasoning_effort: high }\n",
                        f"    extra_params:\n      reasoning_effort: high\n      extra_headers:\n{block}"))
    config = load_config(config_file, env={})
    dumped = redacted_dump(config)["models"]["claude-opus-5-5"]["extra_params"]["extra_headers"]
    assert {k: v for k, v in dumped.items() if k in headers} == dict.fromkeys(headers, "[REDACTED]")
    assert {k: v for k, v in dumped.items() if k in plain} == plain
    for value in headers.values():
        if len(value) >= 12 and any(c.isdigit() for c in value):  # a token's shape: masked everywhere
            assert value not in redact(f"upstream said {value}")
    # a plain word under a header not named like a secret is masked in the dump, not in every text
    _edit(config_file, ('        "X-Key": "hdr-secret-0012"\n', '        "X-Key": "hdr-secret-0012"\n        "X-Environment": "production"\n'))
    config = load_config(config_file, env={})
    assert redacted_dump(config)["models"]["claude-opus-5-5"]["extra_params"]["extra_headers"]["X-Environment"] == "[REDACTED]"
    assert redact("deployed to production") == "deployed to production"
    assert redacted_dump(config)["budgets"]["fast"]["max_tokens"] == 20000  # a count, not a secret


# --- 3. one run names every bad key -------------------------------------------------------------

@pytest.mark.parametrize("pairs,expected", [
    ((('critical: { primary: "claude", reviewer: null }', 'critical: { primay: "claude" }'),
      ('fast: ["deepseek-v3.1-q4"', 'fast: ["gpt-99"')),
     ["routing.delegation.critical.primay", "providers.llm.tiers.fast[0]: unknown model 'gpt-99'"]),
    ((('consensus: { models: ["deepseek", "gemini", "claude"]', 'consensus: { models: ["deepseek"]'),
      ('fast: ["deepseek-v3.1-q4"', 'fast: ["gpt-99"')),
     ["routing.consensus.models", "providers.llm.tiers.fast[0]: unknown model 'gpt-99'"]),
    ((("    family: gemini\n", ""),
      ('fallback_chain: ["deepseek", "gemini"', 'fallback_chain: ["deepsek", "gemini"')),
     ["models.gemini-2.5-flash-lite.family: required key is missing",
      "providers.llm.fallback_chain[0]: 'deepsek' is neither a model nor a family"]),
    ((('premium: ["claude-opus-5-5"]', 'premium: "some-model"'),
      ('default: "deepseek-v3.1-q8"', 'default: "unknown"')),
     ["providers.llm.tiers.premium", "providers.llm.default: unknown model 'unknown'"]),
])
def test_a_malformed_section_does_not_hide_the_other_bad_references(
    config_file: Path, pairs: tuple[tuple[str, str], ...], expected: list[str]
) -> None:
    _edit(config_file, *pairs)
    message = _problems(config_file)
    for line in expected:
        assert line in message


# --- 4. route suffixes --------------------------------------------------------------------------

def test_an_unknown_route_suffix_is_refused_with_the_valid_ones(config_file: Path) -> None:
    _edit(config_file, ('primary: "deepseek+search"', 'primary: "deepseek+serch"'))
    assert "routing.delegation.research.primary: unknown suffix '+serch' in 'deepseek+serch'; valid: +search" \
        in _problems(config_file)


# --- 5. duplicate keys --------------------------------------------------------------------------

def test_a_duplicate_key_is_refused_with_its_line(config_file: Path) -> None:
    _edit(config_file, ("  max_revisions: 1\n", "  max_revisions: 1\n  max_revisions: 3\n"))
    line = config_file.read_text().splitlines().index("  max_revisions: 3") + 1
    assert f"duplicate key 'max_revisions' at line {line}" in _problems(config_file)


def test_a_yaml_merge_may_still_override_the_keys_it_brings() -> None:
    import yaml

    from core.config import _SAFE_LOADER

    text = "base: &b {x: 1, y: 2}\nuse: {<<: *b, x: 3}\n"
    assert yaml.load(text, Loader=_SAFE_LOADER)["use"] == {"x": 3, "y": 2}
    with pytest.raises(yaml.YAMLError, match="duplicate key 'x' at line 2"):
        yaml.load("use: {x: 1,\n  x: 2}\n", Loader=_SAFE_LOADER)


# --- 6. unsupported ${...} forms ----------------------------------------------------------------

@pytest.mark.parametrize("form", ["${X-default}", "${X:?msg}", "${X:=d}", "${A:-${B}}"])
def test_an_unsupported_interpolation_form_is_named_with_the_supported_ones(config_file: Path, form: str) -> None:
    _edit(config_file, ('region: "${AWS_REGION:-us-east-1}"', f'region: "{form}"'))
    message = _problems(config_file, env={"A": "a", "B": "b", "X": "x"})
    assert "providers.storage.backends.s3.region: unsupported" in message
    assert "only ${VAR} and ${VAR:-default} are expanded" in message


def test_an_env_value_holding_dollar_brace_is_not_a_form(config_file: Path) -> None:
    config = load_config(config_file, env={"AWS_REGION": "odd-${region}"})
    assert config.providers.storage.backends["s3"]["region"] == "odd-${region}"


def test_an_error_about_a_value_an_unset_variable_left_empty_names_the_variable(config_file: Path) -> None:
    _edit(config_file, ('default: "deepseek-v3.1-q8"', 'default: "${SWARM_DEFAULT_MODEL}"'),
          ("max_revisions: 1", 'max_revisions: "${SWARM_REVISIONS}"'))
    message = _problems(config_file, env={})
    assert "providers.llm.default: unknown model ''; valid: " in message
    assert message.split("providers.llm.default: ")[1].split("\n")[0].endswith("(from ${SWARM_DEFAULT_MODEL}, unset)")
    assert "limits.max_revisions: Input should be a valid integer" in message and "(from ${SWARM_REVISIONS}, unset)" in message


# --- 8. unreadable files ------------------------------------------------------------------------

def test_a_directory_or_a_non_utf8_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("limits: {note: caf\u00e9}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9") as err:
        load_config(latin)
    assert str(latin) in str(err.value)


def test_the_local_index_needs_no_settings_to_be_searched(config_file: Path, tmp_path: Path) -> None:
    """A config that names ``local`` without settings under ``backends`` loaded before (the
    local index runs on its defaults); it must still load, and its chain must build."""
    from providers.search.chain import build_search

    text = config_file.read_text()
    start = text.index("      local:\n        paths:")
    config_file.write_text(text[:start] + text[text.index("\n\n", start) + 1:])
    config = load_config(config_file, env={})
    assert "local" not in config.providers.search.backends
    chain = build_search(config.providers.search, state_dir=tmp_path)  # the runtime passes SWARM_HOME
    assert [name for name, _ in chain.backends] == ["searxng", "tavily", "local"]


def test_an_unsupported_form_holding_a_secret_is_named_without_it(config_file: Path) -> None:
    _edit(config_file, ('api_key: "${TAVILY_API_KEY}"', 'api_key: "${TAVILY_KEY-tvly-SECRETVALUE123456}"'))
    message = _problems(config_file, env={})
    assert "providers.search.backends.tavily.api_key: its value holds a ${ form that is not expanded" in message
    assert "SECRETVALUE123456" not in message


def test_a_nested_default_is_named_whole(config_file: Path) -> None:
    """``${A:-${B}}`` was named as ``${A:-}``, the text left once the inner reference was taken out."""
    _edit(config_file, ('url: "${SEARXNG_URL}"', 'url: "${SEARXNG_URL:-${OTHER_URL}}"'))
    message = _problems(config_file, env={})
    assert "providers.search.backends.searxng.url: unsupported form '${SEARXNG_URL:-${OTHER_URL}}'" in message, message


# --- 9. values that would break a job at call time, not at load ---------------------------------

def test_a_key_written_where_its_variable_name_belongs_is_refused_without_repeating_it(config_file: Path) -> None:
    _edit(config_file, ("api_key_env: DEEPSEEK_API_KEY", "api_key_env: sk-FAKESECRETinline1234567890"),
          ("api_key_env: RUNPOD_API_KEY", 'api_key_env: "rpa FAKESECRETrunpod"'))
    message = _problems(config_file, env={})
    assert "models.deepseek-v3.1-q8.api_key_env: must be the name of an environment variable" in message
    assert "runner.runpod.api_key_env: must be the name of an environment variable" in message
    assert "FAKESECRET" not in message


def test_an_empty_model_string_tier_or_nan_is_refused_at_load(config_file: Path) -> None:
    """Each loaded as valid before; the empty model string then failed every call to ``local``
    (litellm: "LLM Provider NOT provided"), an empty tier left its jobs only the fallback chain."""
    _edit(config_file, ('litellm_model: "openai/smollm2-135m-instruct"', 'litellm_model: "${SWARM_LOCAL_MODEL}"'),
          ('premium: ["claude-opus-5-5"]', "premium: []"),
          ("timeout_s: 60", "timeout_s: .nan"))
    message = _problems(config_file, env={})
    assert "models.local.litellm_model: String should have at least 1 character (from ${SWARM_LOCAL_MODEL}, unset)" in message
    assert "providers.llm.tiers.premium: List should have at least 1 item" in message
    assert "timeout_s: Input should be a finite number" in message


# --- 10. what config check said was valid and every job then failed on (review, session 28) ------

def test_a_key_that_happens_to_make_a_valid_name_is_refused_and_real_names_are_kept(config_file: Path) -> None:
    """A Groq-style key in api_key_env loaded; config check, doctor and every trace printed it as
    "the unset variable gsk_4fQx..."."""
    _edit(config_file, ("api_key_env: DEEPSEEK_API_KEY", "api_key_env: gsk_4fQx9LmZ2wRt7YpK3nB8vC1dE6hJ0sAa"))
    message = _problems(config_file)
    assert "models.deepseek-v3.1-q8.api_key_env: looks like a key, not the name of an environment variable" in message
    assert "4fQx9LmZ" not in message
    from core.config_schema import env_name

    for name in ("DEEPSEEK_API_KEY", "MY_SERVICE_KEY_2024", "http_proxy", "OPENAI_API_KEY_PROJECT2", "AZURE_OPENAI_KEY_EASTUS2",
                 "AZUREOPENAIGPT4O_KEY", "TOGETHERAIMIXTRAL8X22B_KEY", "OPENROUTERFREETIER2_API_KEY",
                 "GOOGLE_APPLICATION_CREDENTIALS", "mistral_api_key_for_tests"):
        assert env_name(name) == name
    for key in ("f3a2c7e1b8d4f6a0c5e9b2d7a1f4c8e9", "sk_live_51HxQ2eLkdj3Fj2LsKd9", "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"):
        with pytest.raises(ValueError, match="looks like a key") as refused:
            env_name(key)
        assert key not in str(refused.value)


def test_retention_past_a_century_is_refused_and_a_floor_before_the_id_clock_prunes_nothing(config_file: Path) -> None:
    """retention_days: 1000000 (a user's "forever") loaded, and the floor it made, before 1582,
    wrapped past today's ids: every saved job was pruned as old."""
    import time

    from graphs.checkpoint import checkpoint_id_floor

    _edit(config_file, ("retention_days: 7", "retention_days: 1000000"))
    assert "checkpointer.retention_days: Input should be less than or equal to 36525" in _problems(config_file)
    assert checkpoint_id_floor(time.time() - 1_000_000 * 86400) == "00000000-0000-6000-8000-000000000000"
    assert checkpoint_id_floor(time.time() - 36_525 * 86400) < checkpoint_id_floor(time.time())


async def test_a_retention_reaching_before_the_id_clock_prunes_no_job(config_file: Path, tmp_path: Path) -> None:
    from graphs.checkpoint import open_checkpointer, prune_checkpoints

    _edit(config_file, ('path: "${SWARM_HOME}/checkpoints.sqlite"', f'path: "{tmp_path}/cp.sqlite"'))
    loaded = load_config(config_file, env={})
    # what a config loaded before the bound held (and what a floor before 1582 did with it)
    config = loaded.model_copy(update={"checkpointer": loaded.checkpointer.model_copy(update={"retention_days": 1e6})})
    async with open_checkpointer(config) as saver:
        from langgraph.checkpoint.base import empty_checkpoint

        await saver.aput({"configurable": {"thread_id": "today", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {})
        assert await prune_checkpoints(config, saver) == []
        assert await saver.aget_tuple({"configurable": {"thread_id": "today", "checkpoint_ns": ""}}) is not None


def test_settings_every_job_would_fail_on_are_refused_at_load(config_file: Path) -> None:
    _edit(config_file, ('kind: "${SWARM_CHECKPOINTER:-auto}"', "kind: postgres"),
          ('consensus: { models: ["deepseek", "gemini", "claude"]', 'consensus: { models: ["local", "claude", "local"]'),
          ('api_base: "http://127.0.0.1:${SWARM_LOCAL_LLM_PORT:-8765}/v1"', 'api_base: "127.0.0.1:8765/v1"'))
    message = _problems(config_file)
    assert "checkpointer.dsn: postgres needs a dsn: set SWARM_CHECKPOINTER_DSN" in message
    assert "routing.consensus.models: names local twice; list each model once" in message
    assert "models.local.api_base: a local_server model needs api_base http://127.0.0.1:<port>/v1" in message


def test_a_local_server_on_ipv6_loopback_is_refused_at_load(config_file: Path) -> None:
    """``http://[::1]:8765/v1`` loaded; the server is started on 127.0.0.1, so every call went unanswered."""
    _edit(config_file, ('api_base: "http://127.0.0.1:${SWARM_LOCAL_LLM_PORT:-8765}/v1"', 'api_base: "http://[::1]:8765/v1"'))
    assert "models.local.api_base: a local_server model needs api_base http://127.0.0.1:<port>/v1" in _problems(config_file)


def test_port_zero_is_no_port(config_file: Path) -> None:
    message = _problems(config_file, env={"SWARM_LOCAL_LLM_PORT": "0"})
    assert "models.local.api_base: its port is no port (1-65535); check the variable that sets it (from ${SWARM_LOCAL_LLM_PORT})" in message


def test_a_variable_in_a_key_and_a_key_inside_a_form_are_named(config_file: Path) -> None:
    _edit(config_file,
          ('    critical: { primary: "claude", reviewer: null }\n',
           '    critical: { primary: "claude", reviewer: null }\n    "${EXTRA_KIND:-summarize}": { primary: "local", reviewer: null }\n'),
          ('api_key: "${TAVILY_API_KEY}"', 'api_key: "${zq81hd7s-6f5g4h3j2k1}"'))
    message = _problems(config_file, env={"EXTRA_KIND": "summarize"})
    assert "routing.delegation: the key '${EXTRA_KIND:-summarize}' is not expanded (only values are)" in message
    assert "providers.search.backends.tavily.api_key: its value holds a ${ form that is not expanded" in message
    assert "zq81hd7s" not in message and "[REDACTED]" not in message


def test_a_section_with_every_key_commented_out_reads_as_its_defaults(config_file: Path) -> None:
    text = config_file.read_text()
    start = text.index("limits:\n")
    end = text.index("\n\n", start)
    commented = "limits:\n" + "".join(f"  # {line.strip()}\n" for line in text[start:end].splitlines()[1:])
    config_file.write_text(text[:start] + commented + text[end:].replace(
        "  fast: { max_tokens: 20000, max_cost_usd: 0.05 }", "  fast:"))
    config = load_config(config_file, env={})
    assert config.limits.job_deadline_s == 900.0
    assert config.budgets["fast"].max_tokens is None and config.budgets["balanced"].max_tokens == 60000
    # inside a section too (runner.local:, mcp.http:), while a null that means something stays
    text = config_file.read_text()
    http = text.index("  http:\n", text.index("\nmcp:\n"))
    end = text.find("\n\n", http) if "\n\n" in text[http:] else len(text.rstrip("\n"))
    text = text[:http] + "  http:\n" + "".join(f"    # {line.strip()}\n" for line in text[http:end].splitlines()[1:]) + text[end:]
    config_file.write_text(text.replace("    processes: ${SWARM_LOCAL_PROCESSES:-1}\n", "    # processes: 2\n", 1))
    nested = load_config(config_file, env={})
    assert nested.runner.local.processes == 1 and nested.mcp.http.max_request_bytes == 4 * 1024 * 1024
    assert nested.routing.delegation["critical"].reviewer is None


def test_a_bad_value_from_a_set_variable_names_it_without_its_value(config_file: Path) -> None:
    message = _problems(config_file, env={"SWARM_LOCAL_PROCESSES": "0"})
    assert "runner.local.processes: Input should be greater than or equal to 1 (from ${SWARM_LOCAL_PROCESSES})" in message
    # a bad default written in the file is the file's, not the (unset) variable's
    _edit(config_file, ("processes: ${SWARM_LOCAL_PROCESSES:-1}", "processes: ${SWARM_LOCAL_PROCESSES:-0}"))
    message = _problems(config_file, env={})
    assert "runner.local.processes: Input should be greater than or equal to 1\n" in message + "\n", message
    assert "SWARM_LOCAL_PROCESSES" not in message


def test_a_json_schema_key_with_a_dollar_passes_through(config_file: Path) -> None:
    """``$schema``/``$ref`` keys in extra_params (a guided-JSON schema for litellm) were refused."""
    _edit(config_file, ("      extra_body: { thinking: { type: disabled } }\n",
                        '      extra_body: {guided_json: {"$schema": "x", "$defs": {}}}\n'))
    config = load_config(config_file, env={})
    assert config.models["deepseek-v3.1-q8"].extra_params["extra_body"]["guided_json"]["$schema"] == "x"


def test_a_checkpointer_path_no_job_can_use_is_refused_by_check_and_by_a_reload(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from swarm import cli

    store = ConfigStore(config_file)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _edit(config_file, ('path: "${SWARM_HOME}/checkpoints.sqlite"', f'path: "{blocker}/checkpoints.sqlite"'))
    assert store.current().checkpointer.path != f"{blocker}/checkpoints.sqlite"
    assert store.last_error and "checkpointer.path: cannot use" in store.last_error
    assert cli.main(["--config", str(config_file), "config", "check"]) != 0
    assert "checkpointer.path: cannot use" in capsys.readouterr().err
    # a check makes nothing: a half-typed path made folders
    not_yet = tmp_path / "not" / "yet"
    _edit(config_file, (f'path: "{blocker}/checkpoints.sqlite"', f'path: "{not_yet}/checkpoints.sqlite"'))
    assert cli.main(["--config", str(config_file), "config", "check"]) == 0
    assert store.current().checkpointer.path == f"{not_yet}/checkpoints.sqlite" and store.last_error is None
    assert not (tmp_path / "not").exists()


def test_a_collector_that_is_no_url_and_a_boundless_output_limit_are_refused(config_file: Path) -> None:
    """Both loaded: every job then logged an exporter ERROR, or failed its every call."""
    collector = load_config(config_file, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert collector.observability.otlp_endpoint == "http://127.0.0.1:4318"
    message = _problems(config_file, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})
    assert "observability.otlp_endpoint: must be the OTLP/HTTP collector's URL, e.g. http://127.0.0.1:4318" in message
    _edit(config_file, ("max_output_tokens: 2048", "max_output_tokens: 10000000"))
    assert "max_output_tokens: Input should be less than or equal to 1000000" in _problems(config_file)
