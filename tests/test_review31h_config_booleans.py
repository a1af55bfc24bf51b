"""Review 31h: a boolean where config expects a count or a number of seconds is an error.

pydantic reads ``true`` as 1 and ``false`` as 0: ``max_running_jobs: true`` loaded as one job at a
time, ``concurrency: yes`` (YAML's true) as one job per worker, ``job_deadline_s: false`` failed
at load with a limit the user never wrote. Each now names the key and what it expects.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_config_checks import _edit

from core.config import load_config
from core.errors import ConfigError


def _problems(config_file: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(config_file, {})
    return [line.strip().removeprefix(f"{config_file}: ") for line in str(err.value).splitlines()[1:]]


def test_a_boolean_count_or_number_of_seconds_is_named_with_what_was_expected(config_file: Path) -> None:
    _edit(config_file,
          ("  max_running_jobs: 32", "  max_running_jobs: true"),
          ("  concurrency: ${SWARM_WORKER_CONCURRENCY:-2}", "  concurrency: yes"),
          ("  job_deadline_s: 540", "  job_deadline_s: false"),
          ("  fast: { max_tokens: 20000, max_cost_usd: 0.05 }", "  fast: { max_tokens: true, max_cost_usd: on }"))
    assert sorted(_problems(config_file)) == [
        "budgets.fast.max_cost_usd: expected a number, got true",
        "budgets.fast.max_tokens: expected a whole number, got true",
        "limits.job_deadline_s: expected a number, got false",
        "mcp.max_running_jobs: expected a whole number, got true",
        "worker.concurrency: expected a whole number, got true",
    ]


def test_a_boolean_in_a_backends_settings_or_a_model_is_refused_too(config_file: Path) -> None:
    """The search backends' settings and the models table share the sections' base: one rule."""
    _edit(config_file, ("        timeout_s: 10\n", "        timeout_s: true\n"), ("      n_ctx: 4096", "      n_ctx: false"))
    problems = _problems(config_file)
    assert "providers.search.backends.searxng.timeout_s: expected a number, got true" in problems, problems
    assert any(p.endswith(".local_server.n_ctx: expected a whole number, got false") for p in problems), problems


def test_numbers_written_as_text_and_real_booleans_still_load(config_file: Path) -> None:
    """``${VAR}`` gives text ("4"): still a count; a key that is a boolean still takes one."""
    _edit(config_file, ("  capture_content: false", "  capture_content: yes"))
    config = load_config(config_file, {"SWARM_WORKER_CONCURRENCY": "4"})
    assert config.worker.concurrency == 4 and config.observability.capture_content is True
