"""Review 32p: what a hostile MCP client or job submitter could do with a local ``path``, a storage
key naming a pipe, and control characters in what reaches the terminal."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import use_echo_images, write_config

from core.errors import InputError
from mcp_server.server import build_server

SMALL = Path(__file__).parent / "fixtures" / "sr_input_48.png"


async def test_a_secret_file_in_a_batch_never_enters_a_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                           swarm_home: Path) -> None:
    """One image of a batch given as a path to a file that is no image (a credentials file) was read
    whole into the job: its bytes stored in jobs.sqlite, sent to the runner (RunPod's, where it runs
    there) and its first bytes quoted in the job's error. It is refused at the door, naming the path."""
    echo = use_echo_images(monkeypatch)
    secrets_file = tmp_path / "credentials"
    secrets_file.write_text("[default]\naws_secret_access_key = sk-test-SECRET123\n")
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        result = await client.call_tool("remove_background",
                                        {"images": [{"path": str(SMALL)}, {"path": str(secrets_file)}]})
        text = result.content[0].text
        assert result.is_error and f"InputError: images[1].path: {secrets_file} is not a supported image" in text, text
        assert "SECRET123" not in text and (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []
    assert echo.seen == []
    with contextlib.closing(sqlite3.connect(swarm_home / "jobs.sqlite")) as db:
        stored = json.dumps([row[0] for row in db.execute("SELECT input FROM jobs")])
    assert base64.b64encode(secrets_file.read_bytes())[:12].decode() not in stored


def test_a_file_that_fails_as_it_is_read_is_an_input_error() -> None:
    """/proc/self/mem opens, is "regular" and fails with EIO when read: the call crashed
    ("InternalError: the server failed on this call")."""
    from providers.image.imageio import ImageLimits, read_file

    with pytest.raises(InputError, match=r"^path: cannot read /proc/self/mem: Input/output error"):
        read_file("/proc/self/mem", ImageLimits())


async def test_a_pipe_in_the_storage_folder_is_no_object_and_does_not_block(tmp_path: Path) -> None:
    """A FIFO under the storage root, read by key (an image tool's ``key``, swarm://artifacts/...),
    held a worker thread until a writer came: forever."""
    from providers.storage.local import LocalStorage

    store = LocalStorage(tmp_path / "root")
    await store.put("image_tools/job/out.png", b"x")
    os.mkfifo(tmp_path / "root" / "image_tools" / "job" / "pipe.png")
    for read in (store.get("image_tools/job/pipe.png"), store.get_at_most("image_tools/job/pipe.png", 100)):
        with pytest.raises(InputError, match="no object 'image_tools/job/pipe.png' in storage"):
            await asyncio.wait_for(read, 10)


def test_table_cells_cannot_drive_the_terminal() -> None:
    """``swarm health`` prints an upstream's last error in a cell: its ESC sequences cleared or
    retitled the terminal and its newline began a row of its own."""
    from swarm.table import print_table

    out = io.StringIO()
    print_table(("model", "last error"), [("m", "boom\x1b[2J\x1b]0;pwned\x07\nfake  yes  row\x9b")], out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue() and "\x9b" not in out.getvalue()
    assert lines[2] == "m      boom\\x1b[2J\\x1b]0;pwned\\x07\\nfake  yes  row\\x9b"


def test_plain_log_lines_cannot_be_forged() -> None:
    """The command line's and the local endpoint's plain-text logs wrote a value's newline and ESC
    as they were: a forged line of its own, a terminal driven. A traceback keeps its lines."""
    from swarm.logs import configure_logging

    out = io.StringIO()
    handler = configure_logging("INFO", json=False, stream=out)
    try:
        log = logging.getLogger("swarm.test32p")
        log.warning("late result from worker %s ignored", "w1\n2026-01-01 INFO swarm: all good\x1b[2J")
        try:
            raise ValueError("x")
        except ValueError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("late result from worker w1\\n2026-01-01 INFO swarm: all good\\x1b[2J ignored"), lines
    assert "\x1b" not in out.getvalue() and lines[2] == "Traceback (most recent call last):"
