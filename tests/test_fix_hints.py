"""A provider failure that comes from config or the machine (no CUDA GPU, a GPU out of memory at
this tile, a bucket that does not exist, a storage folder this process may not write) says the fix
as "; set ...": ``swarm run`` then does not offer "run it again, from its last finished step",
which would fail the same way, and an MCP client reads what to change.

These said no fix ("device cuda requested but torch sees no CUDA GPU"), or said it in words the
command line did not know ("lower ...", "check the AWS credentials", "point it at ..."); a storage
root that could not be created was an internal error."""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_llm_local_server import local_spec, manager  # noqa: F401  (a fixture)

from core.errors import InputError, ProviderUnavailable
from swarm.cli import FIX_FIRST, _report


def assert_says_the_fix(error: BaseException, setting: str) -> None:
    message = str(error)
    assert FIX_FIRST.search(message), message
    assert setting in message, message


def test_cuda_asked_for_on_a_machine_without_one_says_the_setting(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    with pytest.raises(ProviderUnavailable) as info:
        RealESRGANUpscaler(UpscaleSettings(models_dir=str(tmp_path), device="cuda")).device()
    assert_says_the_fix(info.value, "providers.image.upscale.device")
    # swarm run: no "run it again" that fails the same way, as nothing had finished
    args = argparse.Namespace(out=None, json=False, quiet=True, config=None)
    job = {"project": "image_tools", "action": "upscale", "input": {"path": "cat.png"}, "job_id": "j-1"}
    result = {"job_id": "j-1", "status": "FAILED", "output": None, "totals": {},
              "trace": [{"step": "upscale", "kind": "image", "outcome": "error"}],
              "error": {"type": "ProviderUnavailable", "message": str(info.value)}}
    assert _report(args, result, job) == 1
    assert capsys.readouterr().err.splitlines() == [f"error: ProviderUnavailable: {info.value}"]


def test_out_of_memory_at_a_tile_says_to_set_a_smaller_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    from providers.image import tiling
    from providers.image.upscale import RealESRGANUpscaler, UpscaleSettings

    def out_of_memory(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(tiling, "run_tiled", out_of_memory)
    provider = RealESRGANUpscaler(UpscaleSettings(models_dir=str(tmp_path), device="cpu"))
    monkeypatch.setattr(provider, "_infer_fn", lambda *a: None)
    job = SimpleNamespace(tile=512, pad=16, model="m")
    with pytest.raises(ProviderUnavailable) as info:
        provider._run([[[0, 0, 0]]], None, 4, ("cuda", "fp16"), job, SimpleNamespace(measured=None))  # type: ignore[arg-type]
    assert_says_the_fix(info.value, "providers.image.upscale.tile")
    assert "tile=512" in str(info.value) and "like 256" in str(info.value)


async def test_a_bucket_that_does_not_exist_says_the_setting(moto_url: str, aws_env: None) -> None:  # noqa: F811
    from providers.storage.s3 import S3Storage

    with pytest.raises(ProviderUnavailable) as info:
        await S3Storage("no-such-bucket-here", endpoint_url=moto_url).put("k", b"x")
    assert_says_the_fix(info.value, "providers.storage.backends.s3.bucket")


def test_access_denied_says_which_credentials_to_set() -> None:
    from botocore.exceptions import ClientError

    from providers.storage.s3 import S3Storage

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                          "ResponseMetadata": {"HTTPStatusCode": 403}}, "PutObject")
    error = S3Storage("b")._translate(denied, "k")
    assert isinstance(error, ProviderUnavailable)
    assert_says_the_fix(error, "AWS_ACCESS_KEY_ID")


async def test_a_storage_folder_this_process_may_not_write_says_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.storage import local

    store = local.LocalStorage.from_config("local", {"root": str(tmp_path / "artifacts")})

    def refused(*args: Any, **kwargs: Any) -> int:  # (the tests may run as root, who may write anywhere)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(local.os, "open", refused)
    with pytest.raises(ProviderUnavailable) as info:
        await store.put("a.png", b"x")
    assert_says_the_fix(info.value, "providers.storage.backends.local.root")
    assert "Permission denied" in str(info.value)


async def test_a_storage_root_under_a_file_is_said_not_an_internal_error(tmp_path: Path) -> None:
    from providers.storage.local import LocalStorage

    (tmp_path / "file").write_text("x")
    store = LocalStorage.from_config("mine", {"root": str(tmp_path / "file" / "artifacts")})
    with pytest.raises((ProviderUnavailable, InputError)) as info:
        await store.put("a.png", b"x")
    assert "cannot create the storage folder" in str(info.value), info.value


async def test_a_disk_that_is_full_says_no_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Space freed, the same job goes on: the command line offers its resume."""
    from providers.storage import local

    store = local.LocalStorage(tmp_path)

    def full(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(local.os, "open", full)
    with pytest.raises(ProviderUnavailable) as info:
        await store.put("a.png", b"x")
    assert not FIX_FIRST.search(str(info.value)), info.value


def test_a_gguf_file_that_is_not_there_says_the_setting(tmp_path: Path) -> None:
    from providers.llm.local_server_config import resolve_gguf

    with pytest.raises(ProviderUnavailable) as info:
        resolve_gguf(str(tmp_path / "missing.gguf"))
    assert_says_the_fix(info.value, "local_server.gguf")


async def test_autostart_off_says_the_setting_that_turns_it_on(manager: Any) -> None:  # noqa: F811
    from fake_openai import free_port, make_swarm_config

    spec = make_swarm_config({"local": local_spec(f"http://127.0.0.1:{free_port()}", autostart=False)}).models["local"]
    with pytest.raises(ProviderUnavailable) as info:
        await manager.ensure("local", spec)
    assert_says_the_fix(info.value, "models.local.local_server.autostart")


async def test_searxng_without_a_url_says_the_variable_to_set() -> None:
    from providers.search.searxng import SearxngSearch

    with pytest.raises(ProviderUnavailable) as info:
        await SearxngSearch.from_config("searxng", {"url": ""}).search("q")
    assert_says_the_fix(info.value, "SEARXNG_URL")
