"""A local image file for the image tools: ``path`` (an absolute path or a file:// URL), read by the
MCP server and sent to the runner as data, so a Claude Desktop user can name a file on their disk.
Over stdio any file the user can read; over HTTP only inside ``mcp.file_roots``. What can be refused
before a job exists (a bad path, a file path given as ``image``, an image over the size limit) is
refused then, naming the field."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import EchoImages, use_echo_images, write_config

from mcp_server.server import build_http_app, build_server

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = FIXTURES / "sr_input_48.png"
PHOTO = FIXTURES / "grace_hopper_256.jpg"


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch) -> EchoImages:
    return use_echo_images(monkeypatch)


def config_with(tmp_path: Path, *, max_input_bytes: int | None = None, file_roots: list[str] | None = None) -> str:
    path = write_config(tmp_path, wait_budget_s=30)
    data = yaml.safe_load(path.read_text())
    if max_input_bytes is not None:
        data["providers"]["image"]["max_input_bytes"] = max_input_bytes
    if file_roots is not None:
        data["mcp"]["file_roots"] = file_roots
    path.write_text(yaml.safe_dump(data))
    return str(path)


def stored_inputs(swarm_home: Path) -> list[dict[str, Any]]:
    with contextlib.closing(sqlite3.connect(swarm_home / "jobs.sqlite")) as db:
        return [json.loads(row[0]) for row in db.execute("SELECT input FROM jobs ORDER BY created_at")]


async def jobs_of(client: Client) -> list[Any]:
    return (await client.call_tool("list_jobs", {})).structured_content["jobs"]


async def test_a_local_file_is_read_by_the_server_and_sent_as_data(
    echo: EchoImages, tmp_path: Path, swarm_home: Path
) -> None:
    """The reviewer's case: a Claude Desktop user names a file on their disk."""
    raw = SMALL.read_bytes()
    async with Client(build_server(config_with(tmp_path))) as client:
        by_path = await client.call_tool("upscale_image", {"path": str(SMALL), "scale": 2})
        assert not by_path.is_error, by_path.content[0].text
        assert by_path.structured_content["status"] == "COMPLETED"
        by_url = await client.call_tool("remove_background", {"path": SMALL.as_uri()})
        assert not by_url.is_error, by_url.content[0].text
        batch = await client.call_tool("remove_background", {"images": [{"path": str(PHOTO)}, {"path": str(SMALL)}]})
        assert not batch.is_error, batch.content[0].text
        assert batch.structured_content["details"]["succeeded"] == 2
    assert echo.seen[:2] == [raw, raw] and sorted(echo.seen[2:], key=len) == [raw, PHOTO.read_bytes()]
    # the job holds the image once, as data (what the runner, local or RunPod, reads), not the path
    first = stored_inputs(swarm_home)[0]
    assert "path" not in first and base64.b64decode(first["image"]) == raw
    assert json.dumps(stored_inputs(swarm_home)).count(str(SMALL)) == 0


@pytest.mark.parametrize(("arguments", "message"), [
    ({"path": "tests/fixtures/sr_input_48.png"}, "path: 'tests/fixtures/sr_input_48.png' is not an absolute path"),
    ({"path": "/nonexistent/cat.png"}, "path: no such file: /nonexistent/cat.png"),
    ({"path": "file://otherhost/cat.png"}, "path: a file:// URL of host 'otherhost'"),
    ({"path": str(SMALL), "image": "aGVsbG8="}, "path: give one of image, path, url, key (got path and image)"),
    ({"image": str(SMALL)}, "image: looks like a file's path; give a local file as path"),
    ({"image": SMALL.as_uri()}, "image: looks like a file's path"),
    ({"image": "~/Pictures/cat.png"}, "image: looks like a file's path"),
    ({"url": SMALL.as_uri()}, "url: a file:// URL names a local file: give it as path"),
])
async def test_a_bad_path_is_refused_before_any_job(
    echo: EchoImages, tmp_path: Path, arguments: dict[str, str], message: str
) -> None:
    async with Client(build_server(config_with(tmp_path))) as client:
        result = await client.call_tool("upscale_image", arguments)
        assert result.is_error and f"InputError: {message}" in result.content[0].text, result.content[0].text
        assert await jobs_of(client) == []
    assert echo.seen == []


async def test_what_is_not_an_image_file_is_named(echo: EchoImages, tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    (folder / "big.png").write_bytes(SMALL.read_bytes() + b"\0" * 4000)
    (folder / "cut.png").write_bytes(SMALL.read_bytes()[: SMALL.stat().st_size // 2])  # named "image: ..." by a job
    fifo = folder / "pipe.png"
    os.mkfifo(fifo)
    cases = {
        str(folder): f"path: {folder} is a folder, not a file",
        str(folder / "notes.txt"): f"path: {folder / 'notes.txt'} is not a supported image (by its first bytes)",
        str(folder / "empty.png"): f"path: {folder / 'empty.png'} is empty",
        str(fifo): f"path: {fifo} is not a regular file",  # opened without blocking: no writer needed
        str(folder / "cut.png"): f"path: {folder / 'cut.png'} is a truncated png image",
        str(folder / "big.png"): f"path: {folder / 'big.png'} is {SMALL.stat().st_size + 4000:,} bytes; the limit is 6,000"
                                 " (providers.image.max_input_bytes)",
    }
    async with Client(build_server(config_with(tmp_path, max_input_bytes=6000))) as client:
        for path, message in cases.items():
            result = await asyncio.wait_for(client.call_tool("process_image", {"path": path}), 30)
            assert result.is_error and f"InputError: {message}" in result.content[0].text, result.content[0].text
        batch = await client.call_tool("remove_background", {"images": [{"path": str(SMALL)}, {"path": str(folder / "x.png")}]})
        assert batch.is_error and f"InputError: images[1].path: no such file: {folder / 'x.png'}" in batch.content[0].text
        assert await jobs_of(client) == []
        # a file that is read but no good image fails alone in the batch (it failed the whole batch)
        mixed = await client.call_tool("remove_background", {"images": [{"path": str(SMALL)}, {"path": str(folder / "cut.png")}]})
        assert not mixed.is_error, mixed.content[0].text
        first, second = mixed.structured_content["results"]
        assert "error" not in first and first["width"] == 48 and "truncated" in second["error"]["message"], second


async def test_too_many_images_are_refused_before_any_file_is_read(echo: EchoImages, tmp_path: Path) -> None:
    """17 paths were all read (and 17 non-images refused for the first one's content) before the
    count made a job fail; the count comes first now, naming the field and the limit."""
    not_images = [{"path": "/etc/passwd"}] * 17
    async with Client(build_server(config_with(tmp_path))) as client:
        result = await client.call_tool("remove_background", {"images": not_images})
        assert result.is_error, result.content[0].text
        assert "InputError: images: 17 images; give 1 to 16 per job (MAX_BATCH_IMAGES)" in result.content[0].text
        assert await jobs_of(client) == []
    assert echo.seen == []


async def test_an_image_over_the_limit_is_refused_before_a_job_exists(echo: EchoImages, tmp_path: Path) -> None:
    """A 25 MB base64 image made a job and waited 66-107 s for its size error; now the tool says
    so at once, naming the field and the limit, and no job is made."""
    limit = 3000
    over = base64.b64encode(SMALL.read_bytes() + b"\0" * limit).decode()
    async with Client(build_server(config_with(tmp_path, max_input_bytes=limit))) as client:
        for arguments in ({"image": over}, {"image": "data:image/png;base64," + over}):
            result = await client.call_tool("upscale_image", arguments)
            text = result.content[0].text
            assert result.is_error and f"InputError: image: base64 image is {len(over)} characters; the limit is 4000" \
                f" ({limit} bytes decoded, providers.image.max_input_bytes)" in text, text
        assert await jobs_of(client) == []
    assert echo.seen == []


async def test_a_file_declaring_too_many_pixels_is_refused_as_the_path_before_a_job_exists(
        echo: EchoImages, tmp_path: Path) -> None:
    # it was refused in the job, as "image: image declares 3,600,000,000 pixels", for a path given
    from test_image_input import png_declaring

    huge, big = tmp_path / "huge.png", tmp_path / "big.png"
    huge.write_bytes(png_declaring(60_000, 60_000))
    big.write_bytes(png_declaring(4_100, 4_100))
    async with Client(build_server(config_with(tmp_path))) as client:
        for path, said in [(huge, "image declares 3,600,000,000 pixels"), (big, "image is 4100x4100 = 16,810,000 pixels")]:
            result = await client.call_tool("upscale_image", {"path": str(path)})
            text = result.content[0].text
            assert result.is_error and text.startswith(f"InputError: path: {said}; the limit is 16,777,216"
                                                       " (providers.image.max_input_pixels)"), text
        assert await jobs_of(client) == []
    assert echo.seen == []


# --- over HTTP: the server's disk, so only mcp.file_roots -----------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def http_client(app: Any) -> AsyncIterator[Client]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    try:
        http = httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60))
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def test_over_http_no_file_is_read_unless_config_lists_its_folder(echo: EchoImages, tmp_path: Path) -> None:
    async with http_client(build_http_app(config_with(tmp_path), env={})) as client:
        result = await client.call_tool("upscale_image", {"path": str(SMALL)})
        assert result.is_error and "InputError: path: local files are not read over HTTP" in result.content[0].text
        assert "mcp.file_roots" in result.content[0].text
    assert echo.seen == []


async def test_over_http_files_inside_file_roots_are_read_and_no_others(echo: EchoImages, tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "cat.png").write_bytes(SMALL.read_bytes())
    (allowed / "escape.png").symlink_to(SMALL)  # a link inside that leads outside
    async with http_client(build_http_app(config_with(tmp_path, file_roots=[str(allowed)]), env={})) as client:
        inside = await client.call_tool("upscale_image", {"path": str(allowed / "cat.png"), "scale": 2})
        assert not inside.is_error, inside.content[0].text
        for outside in (str(SMALL), str(allowed / "escape.png"), str(allowed / ".." / SMALL.name)):
            result = await client.call_tool("upscale_image", {"path": outside})
            assert result.is_error and f"is outside the folders this server may read (mcp.file_roots: {allowed});" \
                in result.content[0].text
    assert echo.seen == [SMALL.read_bytes()]


def test_a_refused_path_lists_the_allowed_folders_the_first_five_then_a_count(tmp_path: Path) -> None:
    from core.errors import InputError
    from providers.image.imageio import ImageLimits, read_file

    roots = [str(tmp_path / f"r{n}") for n in range(7)]
    with pytest.raises(InputError, match=r"mcp\.file_roots: .*/r0, .*/r4 and 2 more\); copy the file into one of them"):
        read_file(str(SMALL), ImageLimits(), roots=roots)


def test_file_roots_must_be_absolute(config_file: Path) -> None:
    from core.config import load_config
    from core.errors import ConfigError

    data = yaml.safe_load(config_file.read_text())
    data["mcp"]["file_roots"] = ["pictures"]
    config_file.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"mcp\.file_roots\[0\]: 'pictures' is not an absolute path"):
        load_config(config_file)


def test_what_looks_like_a_path() -> None:
    from providers.image.imageio import looks_like_path

    jpeg = base64.b64encode(PHOTO.read_bytes()).decode()
    assert jpeg.startswith("/9j/") and not looks_like_path(jpeg[:4000]) and not looks_like_path(jpeg)
    for text in ("/tmp/cat.png", "/home/me/photo", "~/cat.png", "C:\\Users\\me\\cat.png", "file:///tmp/cat.png",
                 "cat.png", "pictures/cat.png"):
        assert looks_like_path(text), text
    for text in ("not base64 !!!", "bm90IGFuIGltYWdl", base64.b64encode(SMALL.read_bytes()).decode(), ""):
        assert not looks_like_path(text), text


def test_the_command_line_reads_a_local_file_too(echo: EchoImages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``swarm run image_tools ... --input '{"path": ...}'`` reads the file as the MCP server does
    (it said "input.path: Extra inputs are not permitted"); a relative path names a file in the folder
    the command runs in; a bad one is refused before any job, naming input.path."""
    from swarm.cli import main

    config = config_with(tmp_path)
    monkeypatch.chdir(FIXTURES)
    assert main(["--config", config, "run", "image_tools", "upscale", "--input",
                 json.dumps({"path": SMALL.name, "scale": 2}), "-q"]) == 0
    assert main(["--config", config, "run", "image_tools", "remove_background", "--input",  # "" is a client's unset
                 json.dumps({"images": [{"path": str(PHOTO)}, {"path": SMALL.as_uri()}], "path": ""}), "-q"]) == 0
    assert echo.seen[0] == SMALL.read_bytes()
    assert sorted(echo.seen[1:], key=len) == [SMALL.read_bytes(), PHOTO.read_bytes()]
    monkeypatch.setenv("HOME", str(FIXTURES))  # quoted JSON: no shell expanded the ~ (found by review)
    assert main(["--config", config, "run", "image_tools", "upscale", "--input",
                 json.dumps({"path": f" ~/{SMALL.name}"}), "-q"]) == 0
    assert echo.seen[-1] == SMALL.read_bytes()
    del echo.seen[-1]
    capsys.readouterr()
    assert main(["--config", config, "run", "image_tools", "upscale", "--input", json.dumps({"path": "nope.png"}),
                 "-q", "--json"]) == 1
    said = capsys.readouterr()
    assert f"error: InputError: input.path: no such file: {FIXTURES / 'nope.png'}" in said.err
    failed = json.loads(said.out)  # a script reading --json gets the FAILED envelope, as for any failed job
    assert failed["status"] == "FAILED" and failed["error"]["type"] == "InputError" and failed["trace"] == []
    assert len(echo.seen) == 3
