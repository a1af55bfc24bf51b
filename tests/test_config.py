"""Config: interpolation, validation errors that name file and key, hot swap, redaction."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core.config import ConfigStore, interpolate, load_config, redacted_dump
from core.errors import ConfigError


def test_interpolation_uses_env_defaults_and_empty_for_unset() -> None:
    env = {"A": "x"}
    assert interpolate("${A}-${B:-dflt}-${C}", env) == "x-dflt-"
    assert interpolate({"k": ["${A}"]}, env) == {"k": ["x"]}
    assert interpolate("${A:-y}", {"A": ""}) == "y"  # empty counts as unset


def test_project_config_is_valid_and_keeps_design_schema() -> None:
    config = load_config()
    llm = config.providers.llm
    assert llm.default == "deepseek-v3.1-q8"
    assert llm.tiers["premium"] == ["claude-opus-5-5"]
    assert llm.fallback_chain[-1] == "local"
    assert config.routing.delegation["critical"].reviewer is None
    for name in ("deepseek-v3.1-q8", "deepseek-v3.1-q4", "gemini-2.5-flash-lite", "claude-sonnet-5-5",
                 "claude-opus-5-5", "local"):
        assert name in config.models


def test_unknown_model_in_tier_names_file_key_and_valid_names(config_file: Path) -> None:
    text = config_file.read_text().replace('fast: ["deepseek-v3.1-q4"', 'fast: ["gpt-99"')
    config_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_file)
    message = str(err.value)
    assert str(config_file) in message
    assert "providers.llm.tiers.fast[0]" in message and "gpt-99" in message
    assert "claude-sonnet-5-5" in message  # lists the valid names


def test_misspelled_key_and_bad_type_are_each_named(config_file: Path) -> None:
    text = config_file.read_text()
    text = text.replace("    timeout_s: 60\n", "    timeout_secs: 60\n", 1)
    text = text.replace("max_revisions: 1", "max_revisions: lots")
    config_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_file)
    message = str(err.value)
    assert "models.deepseek-v3.1-q8.timeout_secs: unknown key" in message
    assert "limits.max_revisions" in message


def test_bad_fields_and_bad_references_are_all_named_in_one_run_each_line_with_the_file(config_file: Path) -> None:
    text = config_file.read_text()
    text = text.replace("    timeout_s: 60\n", '    timeout_s: "soon"\n', 1)  # a bad field in the very model referenced
    text = text.replace("max_revisions: 1", "max_revisons: 1")
    text = text.replace('fast: ["deepseek-v3.1-q4"', 'fast: ["gpt-99"')
    text = text.replace('reviewer: "claude"', 'reviewer: "claudee"', 1)
    assert 'reviewer: "claudee"' in text
    config_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_file)
    lines = str(err.value).splitlines()[1:]
    assert all(line.strip().startswith(f"{config_file}: ") for line in lines), lines
    named = "\n".join(lines)
    assert "models.deepseek-v3.1-q8.timeout_s" in named and "limits.max_revisons: unknown key" in named
    assert "providers.llm.tiers.fast[0]: unknown model 'gpt-99'" in named and "'claudee' names no model or family" in named
    assert "'deepseek-v3.1-q8'" not in named and "'deepseek'" not in named  # a model with a bad field is no unknown one
    assert len(lines) == 4


def test_a_bad_shape_is_one_error_not_one_per_character(config_file: Path) -> None:
    text = config_file.read_text()
    text = text.replace('fallback_chain: ["deepseek", "gemini", "claude", "local"]', "fallback_chain: deepseek")
    assert "fallback_chain: deepseek" in text
    config_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_file)
    lines = str(err.value).splitlines()[1:]
    assert len(lines) == 1 and "providers.llm.fallback_chain: Input should be a valid list" in lines[0], lines


def test_broken_yaml_reports_line(config_file: Path) -> None:
    config_file.write_text("providers:\n  llm: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(config_file)


def test_missing_key_env_is_not_a_startup_failure(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    config = load_config(config_file)
    assert config.models["deepseek-v3.1-q8"].api_key_env == "DEEPSEEK_API_KEY"


def test_hot_swap_picks_up_edit_and_refuses_a_broken_one(config_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ConfigStore(config_file)
    assert store.current().limits.max_task_chars == 20000
    config_file.write_text(config_file.read_text().replace("max_task_chars: 20000", "max_task_chars: 50"))
    os.utime(config_file, ns=(1, 1))  # a distinct mtime even on coarse clocks
    assert store.current().limits.max_task_chars == 50
    good = store.current()
    config_file.write_text(config_file.read_text().replace("max_task_chars: 50", "max_task_chars: -3"))
    os.utime(config_file, ns=(2, 2))
    assert store.current() is good  # the old config keeps serving
    assert store.last_error and "limits.max_task_chars" in store.last_error
    assert any("refused" in r.message for r in caplog.records)


def test_the_refusal_is_forgotten_when_the_file_is_back_to_the_config_in_use(config_file: Path) -> None:
    """A file missing for a moment (a checkout, a delete-and-rewrite save) and back with the same
    text kept 'cannot read' in last_error for good, and every job's trace said the edit was refused."""
    store = ConfigStore(config_file)
    good_text, good = config_file.read_bytes(), store.current()
    away = config_file.with_suffix(".away")
    config_file.rename(away)
    assert store.current() is good and "cannot read" in (store.last_error or "")
    away.rename(config_file)
    assert store.current() is good and store.last_error is None
    config_file.write_text(good_text.decode().replace("max_task_chars: 20000", "max_task_chars: -3"))
    os.utime(config_file, ns=(3, 3))
    assert store.current() is good and "limits.max_task_chars" in (store.last_error or "")
    config_file.write_bytes(good_text)  # the edit undone
    os.utime(config_file, ns=(4, 4))
    assert store.current() is good and store.last_error is None and store.version == 0


def test_redacted_dump_masks_secrets(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-supersecretvalue123")
    dumped = str(redacted_dump(load_config(config_file)))
    assert "tvly-supersecretvalue123" not in dumped
    assert re.search(r"'api_key': '\[REDACTED\]'", dumped)


def test_config_check_cli_prints_redacted_config(config_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.cli import main

    monkeypatch.setenv("TAVILY_API_KEY", "tvly-anothersecret4567")
    assert main(["--config", str(config_file), "config", "check"]) == 0
    out = capsys.readouterr()
    assert "tvly-anothersecret4567" not in out.out + out.err
    assert "deepseek-v3.1-q8" in out.out


def test_rembg_speed_settings_reach_the_provider_and_are_range_checked(config_file: Path) -> None:
    from providers.image.rembg_backend import RembgRemover

    text = config_file.read_text().replace('      fallback_models: ["isnet-anime"]\n',
                                           '      fallback_models: ["isnet-anime"]\n      png_compress_level: 6\n      batch_workers: 3\n', 1)
    config_file.write_text(text)
    settings = RembgRemover.from_config("rembg", load_config(config_file).providers.image.rembg).settings
    assert (settings.png_compress_level, settings.batch_workers) == (6, 3)
    config_file.write_text(text.replace("png_compress_level: 6", "png_compress_level: 11"))
    with pytest.raises(ConfigError, match=r"providers\.image\.rembg\.png_compress_level.*9"):
        load_config(config_file)


def test_checkpointer_auto_is_postgres_exactly_when_a_dsn_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped config: workers share checkpoints through PostgreSQL once a DSN is given."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.delenv("SWARM_CHECKPOINTER", raising=False)
    monkeypatch.delenv("SWARM_CHECKPOINTER_DSN", raising=False)
    assert load_config(root / "config.yaml").checkpointer.kind == "sqlite"
    monkeypatch.setenv("SWARM_CHECKPOINTER_DSN", "postgresql://swarm:pw@db:5432/swarm")
    section = load_config(root / "config.yaml").checkpointer
    assert section.kind == "postgres" and section.dsn == "postgresql://swarm:pw@db:5432/swarm"
    assert "pw" not in str(redacted_dump(load_config(root / "config.yaml"))["checkpointer"])


def test_the_renamed_half_key_says_what_replaced_it(config_file: Path) -> None:
    text = config_file.read_text().replace('      tile: 256\n', '      tile: 256\n      half: "on"\n', 1)
    config_file.write_text(text)
    with pytest.raises(ConfigError, match=r"providers\.image\.upscale.*half was replaced by precision"):
        load_config(config_file)


def test_the_fast_yaml_loader_reads_config_yaml_as_the_pure_python_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from core import config as config_module

    # libyaml ships in PyYAML's wheels: a cold start reads config.yaml ~13x faster with it
    assert issubclass(config_module._SAFE_LOADER, getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    fast = config_module.load_config(config_module.DEFAULT_CONFIG_PATH, env={})
    monkeypatch.setattr(config_module, "_SAFE_LOADER", yaml.SafeLoader)
    assert config_module.load_config(config_module.DEFAULT_CONFIG_PATH, env={}) == fast


def test_an_s3_endpoint_without_a_scheme_is_named_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """``s3.example.com`` passed every check, then failed each image job as InternalError (boto3's ValueError)."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("SWARM_S3_ENDPOINT_URL", "s3.example.com")
    with pytest.raises(ConfigError, match=r"providers\.storage\.backends\.s3\.endpoint_url"):
        load_config(root / "config.yaml")
    monkeypatch.setenv("SWARM_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    assert load_config(root / "config.yaml").providers.storage.backends["s3"]["endpoint_url"] == "http://127.0.0.1:9000"


def test_a_missing_config_file_says_what_to_do_by_who_named_it(tmp_path, monkeypatch):
    """`swarm --config /tmp/nope.yaml` was told to 'set SWARM_CONFIG or pass --config', the very
    thing it did: the advice names the path's origin."""
    from core.errors import ConfigError

    missing = tmp_path / "nope.yaml"
    monkeypatch.delenv("SWARM_CONFIG", raising=False)
    with pytest.raises(ConfigError) as given:
        load_config(missing)
    assert "check the path" in str(given.value) and "pass --config" not in str(given.value).replace("leave out --config", "")
    monkeypatch.setenv("SWARM_CONFIG", str(missing))
    with pytest.raises(ConfigError, match="named by SWARM_CONFIG"):
        load_config(missing)


def test_health_cli_prints_a_table_and_json_on_request(config_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`swarm health` printed ~70 lines of JSON: a row per model now (``--json`` keeps the data)."""
    import json

    from swarm.cli import main

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    assert main(["--config", str(config_file), "health"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["model", "callable"] and set(lines[1]) <= {"-", " "}
    row = next(line for line in lines if line.startswith("deepseek-v3.1-q8 "))
    assert row.split()[1] == "no" and "DEEPSEEK_API_KEY is not set" in row and row.rstrip().endswith("closed")
    assert main(["--config", str(config_file), "health", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["deepseek-v3.1-q8"]["available"] is False and data["deepseek-v3.1-q8"]["circuit"]["state"] == "closed"


def test_a_config_file_gone_is_logged_once_not_at_each_look(config_file: Path, caplog) -> None:
    """The MCP server looks at the config every 5 s (its tools follow a reload): a file gone logged
    an ERROR at each look, for as long as it stayed gone."""
    import logging

    store = ConfigStore(config_file)
    good = store.current()
    config_file.unlink()
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert store.current() is good
    assert sum("cannot read" in r.getMessage() for r in caplog.records) == 1
    assert "cannot read" in (store.last_error or "")


def test_a_model_base_url_whose_port_is_no_port_is_named(tmp_path, monkeypatch):
    """SWARM_LOCAL_LLM_PORT=99999 passed `swarm config check`, then every job failed as an internal
    error ("Port out of range 0-65535")."""
    from core.config import DEFAULT_CONFIG_PATH, load_config
    from core.errors import ConfigError

    monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", "99999")
    with pytest.raises(ConfigError, match=r"models\.local\.api_base: its port is no port"):
        load_config(DEFAULT_CONFIG_PATH)


def test_a_yaml_mistake_is_pointed_at_where_it_begins(tmp_path):
    """An unclosed quote on line 63 was said as "not valid YAML at line 69 ... did not find expected
    key", without PyYAML's "while parsing a block mapping ... line 63"."""
    from core.config import DEFAULT_CONFIG_PATH, load_config
    from core.errors import ConfigError

    lines = DEFAULT_CONFIG_PATH.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith('default: "${SWARM_STORAGE'))
    lines[at] = lines[at].split("default:")[0] + 'default: "local'
    bad = tmp_path / "config.yaml"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=f"begins at line {at + 1}; look there first"):
        load_config(bad)


def test_a_dollar_name_without_braces_is_warned_about_once_and_kept_as_written(config_file: Path, caplog) -> None:
    import logging

    import yaml

    data = yaml.safe_load(config_file.read_text())
    data["runner"]["runpod"]["endpoint_id"] = "$RUNPOD_ENDPOINT_ID"
    data["models"]["deepseek-v3.1-q8"]["api_base"] = "http://$SEARCH_HOST:8080"
    data["checkpointer"]["dsn"] = "$DATABASE_URL"  # a credential's key: neither its value nor the name shown
    # lower case and unset, inside a word (a password's pa$SWORD9), a supported form: no warning
    data["mcp"]["file_roots"] = ["/srv/$price", "/srv/pa$SWORD9", "/srv/${HOME}"]
    config_file.write_text(yaml.safe_dump(data))
    with caplog.at_level(logging.WARNING, logger="core.config"):
        config = load_config(config_file, env={})
        load_config(config_file, env={})  # a hot reload: not said again
    assert config.runner.runpod.endpoint_id == "$RUNPOD_ENDPOINT_ID"
    said = [r.getMessage() for r in caplog.records if "braces" in r.getMessage()]
    assert sorted(said) == sorted([
        f"{config_file}: models.deepseek-v3.1-q8.api_base: $SEARCH_HOST is kept as written (no braces);"
        " to use the variable, write ${SEARCH_HOST}",
        f"{config_file}: checkpointer.dsn: its value holds a $NAME without braces, kept as written (the value is not"
        " shown); to use a variable, write ${NAME}",
        f"{config_file}: runner.runpod.endpoint_id: $RUNPOD_ENDPOINT_ID is kept as written (no braces);"
        " to use the variable, write ${RUNPOD_ENDPOINT_ID}",
    ])
    assert not any("SWORD9" in r.getMessage() or "DATABASE_URL" in r.getMessage() for r in caplog.records)


def test_extra_params_may_not_set_what_each_call_sets_from_its_own_key(config_file: Path) -> None:
    """``api_key`` in extra_params overrode api_key_env on every call (and sat in the file in clear);
    ``num_retries`` retried under the fallback chain: each is refused, naming the key to use."""
    import yaml

    data = yaml.safe_load(config_file.read_text())
    data["models"]["deepseek-v3.1-q8"]["extra_params"] = {"api_key": "${DEEPSEEK_API_KEY}", "top_p": 0.9}
    data["models"]["local"]["free_text_params"] = {"num_retries": 3, "stream": True}
    config_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_config(config_file, env={})
    message = str(info.value)
    assert "models.deepseek-v3.1-q8.extra_params: 'api_key' (set it with api_key_env): each call sets it itself" in message
    assert ("models.local.free_text_params: 'num_retries' (set it with providers.llm.retry), 'stream' (set it with"
            " stop_on_loop): each call sets these itself") in message
    data["models"]["deepseek-v3.1-q8"]["extra_params"] = {"top_p": 0.9, "extra_body": {"min_p": 0.1}}
    data["models"]["local"]["free_text_params"] = {"extra_body": {"repeat_penalty": 1.3}}
    config_file.write_text(yaml.safe_dump(data))
    assert load_config(config_file, env={}).models["deepseek-v3.1-q8"].extra_params["top_p"] == 0.9


def test_a_dollar_name_in_a_headers_value_is_warned_about_without_its_text() -> None:
    """An Authorization or vendor header is a credential though its key says no "key" or "token":
    the warning quoted its $NAME fragment."""
    from core.config_interpolation import bare_references

    raw = {"models": {"m": {"extra_params": {"extra_headers": {"Authorization": "Bearer ab-$TOKEN123",
                                                               "X-Honeycomb-Team": "x-$TEAMKEY9"}}}}}
    said = bare_references(raw, env={})
    assert len(said) == 2 and all("(the value is not shown)" in line for line in said), said
    assert not any("TOKEN123" in line or "TEAMKEY9" in line for line in said)
