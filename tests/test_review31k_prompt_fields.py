"""A prompt's own check of an argument (an unknown ``kind``, a topic over its limit, an empty task)
names the argument in ``data.error.field``, as a missing or mistyped one does (docs/MCP.md): it
was absent for these, so a client could not point at the argument to fix."""

from __future__ import annotations

from pathlib import Path

from mcp import Client
from mcp_helpers import write_config
from test_mcp_error_bounds import _refused_prompt, _stdio


async def test_a_prompts_own_refusal_names_the_argument_as_data(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path))) as client:
        cases = [("delegate_and_review", {"task": "write", "kind": "nonsense"}, "kind"),
                 ("delegate_and_review", {"task": "t" * 20_001}, "task"),
                 ("delegate_and_review", {"task": "  "}, "task"),
                 ("research_brief", {"topic": "t" * 2_001}, "topic")]
        for name, args, field in cases:
            error = await _refused_prompt(client, name, args)
            assert error.data["error"]["field"] == field, (name, args, error)
            assert error.message.startswith(f"invalid arguments for prompt {name}: {field}:"), error.message
