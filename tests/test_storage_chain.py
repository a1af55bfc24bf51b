"""The storage fallback chain (providers.storage.fallback_chain) over real stores: S3Storage against
moto's S3 server and against a dead loopback port, and LocalStorage. An S3 outage at the moment a
finished image was written lost the image (the job failed after the model had run)."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import pytest

from core.errors import AllProvidersFailed, ConfigError, InputError
from providers.base import TraceStep, listen_to_storage
from providers.circuit import CircuitBoard
from providers.storage.chain import StorageChain
from providers.storage.local import LocalStorage
from providers.storage.s3 import S3Storage
from tests.test_image_actions import SMALL, pulled, upscaler  # noqa: F401  (pulled: a fixture)

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_s3() -> S3Storage:
    """S3 on a port nothing listens on: every call is ProviderUnavailable (connection refused)."""
    return S3Storage("art", endpoint_url=f"http://127.0.0.1:{_free_port()}", timeout_s=2)


def told():
    """The steps a chain tells, and a fresh listening block over them each time it is called."""
    steps: list[TraceStep] = []
    return steps, lambda: listen_to_storage(steps.append)


async def test_a_write_the_default_store_refuses_lands_on_the_next_and_is_read_back_from_there(tmp_path, aws_env):
    local = LocalStorage(tmp_path / "artifacts")
    chain = StorageChain([("s3", dead_s3()), ("local", local)])
    steps, listening = told()
    with listening():
        stored = await chain.put("image_tools/j1/upscale.png", b"\x89PNG result")
    assert stored.key == "image_tools/j1/upscale.png"
    assert await local.get("image_tools/j1/upscale.png") == b"\x89PNG result"
    assert [(s.step, s.provider, s.outcome) for s in steps] == [("storage.put", "s3", "error"), ("storage.put", "local", "ok")]
    assert steps[0].error_class == "ProviderUnavailable" and "cannot reach" in (steps[0].detail or "")
    assert "s3 did not take it" in (steps[1].detail or "")
    # reads follow the write: the key is read from local without asking the dead S3 again
    steps.clear()
    with listening():
        assert await chain.get("image_tools/j1/upscale.png") == b"\x89PNG result"
        assert await chain.exists("image_tools/j1/upscale.png")
        assert (await chain.url("image_tools/j1/upscale.png")).startswith("file://")
    assert steps == []
    assert chain.holder("image_tools/j1/upscale.png") == "local"


async def test_a_working_default_store_is_the_only_one_used_and_nothing_is_told(tmp_path, moto_url, aws_env):
    import boto3

    bucket = f"b{_free_port()}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    s3 = S3Storage(bucket, prefix="swarm/", endpoint_url=moto_url)
    local = LocalStorage(tmp_path / "artifacts")
    chain = StorageChain([("s3", s3), ("local", local)])
    steps, listening = told()
    with listening():
        await chain.put("k/a.png", b"a")
        assert await chain.get("k/a.png") == b"a"
    assert steps == [] and await s3.get("k/a.png") == b"a" and await local.list() == []
    # a key written before this process (no memory of it) is found in chain order too
    await local.put("k/only-local.png", b"L")
    assert await StorageChain([("s3", s3), ("local", local)]).get("k/only-local.png") == b"L"
    assert [o.key for o in await chain.list("k/")] == ["k/a.png", "k/only-local.png"]
    await chain.delete("k/only-local.png")
    assert not await local.exists("k/only-local.png")


async def test_a_key_no_store_holds_is_no_object_unless_a_store_could_not_answer(tmp_path, aws_env):
    local = LocalStorage(tmp_path / "artifacts")
    with pytest.raises(InputError, match="no object 'k/missing.png'") as missing:
        await StorageChain([("local", local), ("local2", LocalStorage(tmp_path / "two"))]).get("k/missing.png")
    assert missing.value.field == "key"
    assert not await StorageChain([("local", local)]).exists("k/missing.png")
    # the dead S3 may hold it: not "no object", but every attempt named
    with pytest.raises(AllProvidersFailed) as failed:
        await StorageChain([("s3", dead_s3()), ("local", local)]).get("k/missing.png")
    assert [a.provider for a in failed.value.attempts] == ["s3"] and "cannot reach" in str(failed.value)


async def test_bad_input_is_the_callers_and_does_not_fall_over(tmp_path):
    first, second = LocalStorage(tmp_path / "one"), LocalStorage(tmp_path / "two")
    chain = StorageChain([("one", first), ("two", second)])
    with pytest.raises(InputError, match="outside|invalid|key"):
        await chain.put("../escape.png", b"x")
    await chain.put("k/once.png", b"1")
    with pytest.raises(InputError, match="already exists"):
        await chain.put("k/once.png", b"2", overwrite=False)
    assert await second.list() == []


async def test_a_key_in_two_stores_is_listed_once_as_the_default_store_holds_it(tmp_path):
    """A key held by the default store and by a fallback is listed once, with the size and time of
    the copy a read gets (the default store's), not the fallback's older one: retention prunes by
    ``modified``."""
    import os

    first, second = LocalStorage(tmp_path / "one"), LocalStorage(tmp_path / "two")
    await first.put("k/a.png", b"the default copy")
    await second.put("k/a.png", b"old")
    await second.put("k/b.png", b"only here")
    os.utime(tmp_path / "one" / "k" / "a.png", (2_000_000_000, 2_000_000_000))
    os.utime(tmp_path / "two" / "k" / "a.png", (1_000_000_000, 1_000_000_000))
    listed = await StorageChain([("one", first), ("two", second)]).list("k/")
    assert [(o.key, o.size) for o in listed] == [("k/a.png", 16), ("k/b.png", 9)]
    assert listed[0].modified == 2_000_000_000.0
    assert await StorageChain([("one", first), ("two", second)]).get("k/a.png") == b"the default copy"


async def test_a_store_whose_circuit_opened_is_passed_over_at_once(tmp_path, aws_env):
    clock = [100.0]
    board = CircuitBoard(failure_threshold=2, cooldown_s=30, clock=lambda: clock[0])
    chain = StorageChain([("s3", dead_s3()), ("local", LocalStorage(tmp_path / "artifacts"))], circuits=board)
    for i in range(2):
        await chain.put(f"k/{i}.png", b"x")
    steps, listening = told()
    with listening():
        await chain.put("k/2.png", b"x")
    assert (steps[0].provider, steps[0].outcome) == ("s3", "skipped") and "circuit open" in (steps[0].detail or "")
    assert steps[0].latency_ms < 50
    clock[0] += 31  # cooldown over: one probe goes to S3 again
    steps.clear()
    with listening():
        await chain.put("k/3.png", b"x")
    assert (steps[0].provider, steps[0].outcome) == ("s3", "error")


async def test_when_every_store_fails_the_error_lists_each_attempt(tmp_path, aws_env):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("a file where the folder should be")
    chain = StorageChain([("s3", dead_s3()), ("local", LocalStorage(blocked / "artifacts"))])
    with pytest.raises(AllProvidersFailed) as failed:
        await chain.put("k/x.png", b"x")
    assert [a.provider for a in failed.value.attempts] == ["s3", "local"]
    assert "cannot reach" in str(failed.value) and "storage folder" in str(failed.value)


def test_the_config_names_an_unknown_store_in_the_chain(config_file):
    import yaml

    from core.config import load_config

    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["storage"]["fallback_chain"] = ["local", "s4"]
    config_file.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as bad:
        load_config(config_file)
    assert "providers.storage.fallback_chain[1]" in str(bad.value) and "'s4'" in str(bad.value)


def test_the_runtime_builds_the_chain_from_config(config_file, monkeypatch, tmp_path):
    import yaml

    from swarm.runtime import Runtime

    monkeypatch.setenv("SWARM_S3_BUCKET", "art")
    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["storage"]["default"] = "s3"
    config_file.write_text(yaml.safe_dump(raw))
    storage = Runtime(config_file).providers().storage
    assert isinstance(storage, StorageChain) and storage.names == ["s3", "local"]
    # local alone (the shipped default): the store itself, no chain in the way
    raw["providers"]["storage"]["default"] = "local"
    config_file.write_text(yaml.safe_dump(raw))
    assert isinstance(Runtime(config_file).providers().storage, LocalStorage)


async def test_an_upscale_whose_result_s3_refuses_completes_on_the_local_store(pulled, make_context, tmp_path,  # noqa: F811
                                                                               monkeypatch, aws_env):
    """The job the reviewer lost: the model ran, S3 failed at the write, the job FAILED and the image
    was gone. Now it lands on the local store; the trace says S3 failed and local took it."""
    from core.config import load_config
    from swarm.dispatcher import dispatch
    from tests.test_image_actions import SHARED

    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    config = load_config(ROOT / "config.yaml")
    local = LocalStorage(tmp_path / "artifacts")
    make = make_context(None, config=config, storage=StorageChain([("s3", dead_s3()), ("local", local)]),
                        upscale=upscaler(config))
    result = await dispatch({"project": "image_tools", "action": "upscale", "job_id": "fell-back",
                             "input": {"image": base64.b64encode(SMALL).decode(), "inline": True}}, make)
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    assert await local.get(out["image_key"]) == base64.b64decode(out["image_b64"])
    assert out["url"].startswith("file://") and (out["width"], out["height"]) == (192, 192)
    steps = [(s["step"], s["provider"], s["outcome"]) for s in result["trace"] if s["kind"] == "storage"]
    assert steps == [("storage.put", "s3", "error"), ("storage.put", "local", "ok"),  # the input
                     ("storage.put", "s3", "error"), ("storage.put", "local", "ok")], steps  # the result
    assert [s["step"] for s in result["trace"]].index("upscale") == 2


async def test_a_worker_whose_s3_fails_sends_the_image_inline_and_the_client_stores_it(
        pulled, config_file, monkeypatch, tmp_path, aws_env):  # noqa: F811
    """On a RunPod worker the local fallback is the worker's own disk, which no client reaches:
    the image goes back inline (unless the job said ``inline: false``), and the client stores it."""
    import yaml

    import handler
    from swarm.executors.runpod import RunPodExecutor
    from tests.test_image_actions import SHARED

    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["storage"]["default"] = "s3"
    raw["providers"]["storage"]["backends"]["s3"].update(bucket="art", endpoint_url=f"http://127.0.0.1:{_free_port()}")
    raw["providers"]["image"]["upscale"]["precision"] = "fp32"
    config_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("SWARM_CONFIG", str(config_file))
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    monkeypatch.setattr(handler, "_runtime", None)
    job = {"project": "image_tools", "action": "upscale", "input": {"image": base64.b64encode(SMALL).decode()}}
    try:
        sent = await handler.handler({"id": "rp-stranded", "input": job})
        told = await handler.handler({"id": "rp-told", "input": {**job, "input": {**job["input"], "inline": False}}})
    finally:
        if handler._runtime is not None:
            await handler._runtime.aclose()
    assert sent["status"] == "COMPLETED", sent["error"]
    out = sent["output"]
    assert out["url"].startswith("file://") and base64.b64decode(out["image_b64"])[:4] == b"\x89PNG"
    assert ("storage.put", "local", "ok") in [(s["step"], s["provider"], s["outcome"]) for s in sent["trace"]]
    assert told["status"] == "COMPLETED" and "image_b64" not in told["output"]
    # the client (here on local storage of its own) takes the image under the same key
    mine = LocalStorage(tmp_path / "client")
    runner = RunPodExecutor("http://127.0.0.1:9/v2", "ep", "k", local_storage=lambda: mine)
    adopted = (await runner.adopt_images(job, {"job_id": "j", "status": "COMPLETED", "output": dict(out)}))["output"]
    assert await mine.get(out["image_key"]) == base64.b64decode(out["image_b64"]) and "image_b64" not in adopted


async def test_a_create_only_write_does_not_fall_over(tmp_path, aws_env):
    """While S3 cannot say whether it holds the key, local taking it would break overwrite=False."""
    local = LocalStorage(tmp_path / "artifacts")
    with pytest.raises(AllProvidersFailed) as failed:
        await StorageChain([("s3", dead_s3()), ("local", local)]).put("k/once.png", b"x", overwrite=False)
    assert [a.provider for a in failed.value.attempts] == ["s3"] and await local.list() == []


async def test_a_fallback_the_config_cannot_build_is_passed_over_and_the_default_serves(config_file, monkeypatch):
    """fallback_chain [s3] without a bucket: every image job failed with the S3 ConfigError although
    the default (local) store worked."""
    import yaml

    from swarm.runtime import Runtime

    monkeypatch.delenv("SWARM_S3_BUCKET", raising=False)
    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["storage"]["fallback_chain"] = ["s3"]
    config_file.write_text(yaml.safe_dump(raw))
    storage = Runtime(config_file).providers().storage
    await storage.put("k/a.png", b"a")
    assert await storage.get("k/a.png") == b"a"
    with pytest.raises(AllProvidersFailed, match="s3: error ProviderUnavailable .*not configured: .*bucket is empty"):
        await StorageChain([storage.stores[1]]).put("k/b.png", b"b")
