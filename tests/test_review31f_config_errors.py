"""Review 31f: what an operator editing config.yaml reads when an edit is wrong.

Each test is one mistake a user made, with what the error said before: a ``$${X}`` escape that
expanded anyway, a typo'd key without the key it meant, a wrong type that named an internal
class and never what was written, an empty models table flooding one line per reference, a bad
mapping key written as a list index.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_checks import _edit

from core.config import interpolate, load_config
from core.errors import ConfigError


def _problems(config_file: Path, env: dict[str, str] | None = None) -> list[str]:
    """The error's lines, each without the file name in front."""
    with pytest.raises(ConfigError) as err:
        load_config(config_file, env)
    return [line.strip().removeprefix(f"{config_file}: ") for line in str(err.value).splitlines()[1:]]


def test_a_dollar_dollar_brace_is_a_literal_dollar_brace(config_file: Path) -> None:
    """``$${X}`` read as ``$`` and X's value: there was no way to write a literal ``${``."""
    assert interpolate("a$${X}b${X}", {"X": "v"}) == "a${X}bv"
    assert interpolate("$${X:?kept}", {}) == "${X:?kept}"  # escaped: no unsupported form either
    _edit(config_file, ('      model: "realesrgan-anime-6b"', '      model: "x-$${REALESRGAN}-${REALESRGAN}"'),
          ("      scale: 4", "      scale: 4\n      tile_pad: \"$${P:?x}\""))
    with pytest.raises(ConfigError) as err:  # the escaped form is no unsupported one, and no unset variable
        load_config(config_file, {"REALESRGAN": "v"})
    assert _problems(config_file, {"REALESRGAN": "v"}) == [
        "providers.image.upscale.tile_pad: Input should be a valid integer, unable to parse string as an integer;"
        " got '${P:?x}'"], str(err.value)
    _edit(config_file, ("      tile_pad: \"$${P:?x}\"", "      tile_pad: 16"))
    assert load_config(config_file, {"REALESRGAN": "v"}).providers.image.upscale.model == "x-${REALESRGAN}-v"


def test_a_misspelled_key_is_named_with_the_key_it_likely_means(config_file: Path) -> None:
    _edit(config_file, ("  llm:\n    default:", "  lm:\n    default:"))
    assert _problems(config_file) == [
        "providers.llm: required key is missing; add it, or fix the misspelled 'lm'",
        "providers.lm: unknown key; remove it or check its spelling (did you mean llm?); valid: llm, search,"
        " image, storage",
    ]


def test_a_misspelled_key_deep_down_is_named_by_its_full_path_with_a_guess(config_file: Path) -> None:
    _edit(config_file, ("circuit: { failure_threshold: 3", "circuit: { failure_treshold: 3"),
          ("    timeout_s: 60\n", "    timout_s: 60\n"))
    lines = _problems(config_file)
    assert len(lines) == 2, lines
    assert lines[0].startswith("providers.llm.circuit.failure_treshold: unknown key; remove it or check its"
                               " spelling (did you mean failure_threshold?); valid: failure_threshold, cooldown_s")
    assert lines[1].startswith("models.deepseek-v3.1-q8.timout_s: unknown key; remove it or check its spelling"
                               " (did you mean timeout_s?)")


def test_a_wrong_type_says_what_was_written_not_an_internal_class(config_file: Path) -> None:
    _edit(config_file, ("    circuit: { failure_threshold: 3, cooldown_s: 30 }", "    circuit: [3, 30]"),
          ("    timeout_s: 60\n", "    timeout_s: sixty\n"),
          ("  max_running_jobs: 32", "  max_running_jobs:"),
          ('      premium: ["claude-opus-5-5"]', '      premium: "claude-opus-5-5"'))
    lines = _problems(config_file)
    assert "providers.llm.circuit: Input should be a mapping (indented key: value lines, or { key: value });" \
           " got a list" in lines, lines
    assert "models.deepseek-v3.1-q8.timeout_s: Input should be a valid number, unable to parse string as a" \
           " number; got 'sixty'" in lines
    assert "mcp.max_running_jobs: Input should be a valid integer; got nothing (an empty value)" in lines
    assert "providers.llm.tiers.premium: Input should be a valid list; got 'claude-opus-5-5'" in lines
    assert not any("CircuitSpec" in line for line in lines)


def test_a_wrong_value_that_may_be_a_secret_is_never_quoted(config_file: Path) -> None:
    secret = "hunter2-plain-looking-secret"
    _edit(config_file, ("    timeout_s: 60\n", "    timeout_s: ${DEEPSEEK_TIMEOUT}\n"),
          ("    timeout_s: 45\n", "    timeout_s: sk-ant-api03-Abcdefghijklmnopqrstuvwxyz0123456789\n"),
          ('        api_key: "${TAVILY_API_KEY}"', '        api_key: ["sk-abcdefghijklmnopqrstuvwxyz012345"]'))
    lines = _problems(config_file, {"DEEPSEEK_TIMEOUT": secret})
    text = "\n".join(lines)
    assert "models.deepseek-v3.1-q8.timeout_s: Input should be a valid number, unable to parse string as a" \
           " number (from ${DEEPSEEK_TIMEOUT})" in lines, lines
    assert "models.deepseek-v3.1-q4.timeout_s: Input should be a valid number" in text  # the line is there ...
    assert "providers.search.backends.tavily.api_key: Input should be a valid string; got a list" in lines
    assert secret not in text and "Abcdefghijklmnop" not in text and "abcdefghijklmnop" not in text  # ... not the value


def test_out_of_range_numbers_each_name_the_limit_and_what_was_written(config_file: Path) -> None:
    _edit(config_file, ("    timeout_s: 60\n", "    timeout_s: -1\n"),
          ("  retention_days: 7", "  retention_days: 0"),
          ("  max_running_jobs: 32", "  max_running_jobs: 0"),
          ("  job_deadline_s: 540", "  job_deadline_s: .inf"))
    assert _problems(config_file) == [
        "models.deepseek-v3.1-q8.timeout_s: Input should be greater than 0; got -1",
        "checkpointer.retention_days: Input should be greater than 0; got 0",
        "limits.job_deadline_s: Input should be a finite number; got inf",
        "mcp.max_running_jobs: Input should be greater than or equal to 1; got 0",
    ]


def test_an_empty_models_table_is_one_line_not_one_per_reference(config_file: Path) -> None:
    """Every tier, chain and route entry was "unknown model ...; valid: " with nothing after it."""
    _edit(config_file, ("models:\n  deepseek-v3.1-q8:", "models: {}\nunused_models:\n  deepseek-v3.1-q8:"))
    lines = _problems(config_file)
    assert lines[1:] == ["models: no model is defined; add the models that providers.llm and routing name"
                         " (see README, Config reference)"], lines
    config_file.write_text("providers:\n  llm: {default: a, tiers: {fast: [a]}}\nmodels: {}\nrouting:\n"
                           "  delegation: {x: {primary: a}}\n")  # every section valid on its own
    assert _problems(config_file) == ["models: no model is defined; add the models that providers.llm and"
                                      " routing name (see README, Config reference)"]


def test_a_bad_mapping_key_is_named_as_a_key_not_as_a_list_index(config_file: Path) -> None:
    _edit(config_file, ("  fast: { max_tokens: 20000", "  fsat: { max_tokens: 20000"))
    config_file.write_text(config_file.read_text() + "3: three\n")
    assert _problems(config_file) == [
        "budgets.fsat: the key itself is not valid: Input should be 'fast', 'balanced' or 'premium'; got 'fsat'",
        "3: Keys should be strings",
    ]
