"""Image jobs' stored files go when their checkpoints do (checkpointer.retention_days): a job's row
and checkpoints were pruned after 7 days but its images stayed for good, on the worker's disk or
in the S3 bucket. LocalStorage on disk and S3Storage against moto's server on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from graphs.image.retention import STAMP, due, prune_artifacts
from providers.storage.local import LocalStorage

DAY = 86400


async def _write(store: LocalStorage, key: str, age_days: float) -> None:
    await store.put(key, b"\x89PNG data")
    at = time.time() - age_days * DAY
    os.utime(store.root / key, (at, at))


async def test_a_job_folder_past_the_retention_goes_whole_and_nothing_else_does(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "artifacts")
    await _write(store, "image_tools/old-job/input.png", 9)
    await _write(store, "image_tools/old-job/upscale.png", 8)
    await _write(store, "image_tools/resumed/input.png", 9)  # its output is new: the job is not old
    await _write(store, "image_tools/resumed/upscale.png", 1)
    await _write(store, "uploads/mine.png", 30)  # a caller's own upload, given as key: never ours to delete
    await _write(store, "image_tools/loose.png", 30)  # not in a job's folder
    assert await prune_artifacts(store, retention_days=7) == ["old-job"]
    assert [o.key for o in await store.list()] == ["image_tools/loose.png", "image_tools/resumed/input.png",
                                                   "image_tools/resumed/upscale.png", "uploads/mine.png"]


async def test_s3_objects_are_aged_by_their_last_modified(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from conftest import free_port
    from moto.server import ThreadedMotoServer

    from providers.storage.s3 import S3Storage

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret-key-value-123456")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{port}"
        bucket = f"retention-{port}"  # moto keeps one store per process: another test's "art" holds its own jobs
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=bucket)
        store = S3Storage(bucket, prefix="swarm/", endpoint_url=url)
        await store.put("image_tools/j1/upscale.png", b"x")
        await store.put("uploads/mine.png", b"y")
        listed = await store.list()
        assert all(o.modified for o in listed)  # the server's LastModified (not this machine's clock)
        written = max(o.modified or 0 for o in listed)
        assert await prune_artifacts(store, retention_days=7, now=written + 6 * DAY) == []
        assert await prune_artifacts(store, retention_days=7, now=written + 8 * DAY) == ["j1"]
        assert [o.key for o in await store.list()] == ["uploads/mine.png"]
    finally:
        server.stop()


def test_pruning_is_due_once_a_day_per_state_folder(tmp_path: Path) -> None:
    now = time.time()
    assert due(tmp_path, now) and (tmp_path / STAMP).exists()
    assert not due(tmp_path, now + 3600)
    assert due(tmp_path, now + DAY + 1)


async def test_the_runtime_prunes_old_image_files_when_it_opens_its_checkpoints(swarm_home: Path) -> None:
    from swarm.runtime import Runtime

    store = LocalStorage(swarm_home / "artifacts")
    await _write(store, "image_tools/old-job/upscale.png", 8)
    await _write(store, "image_tools/new-job/upscale.png", 0)
    runtime = Runtime()
    try:
        await runtime.checkpointer(runtime.config)
        assert len(runtime.housekeeping) == 1  # in the background: the job that opened the store goes on
        await runtime.housekeeping[0]
    finally:
        await runtime.aclose()
    assert [o.key for o in await store.list()] == ["image_tools/new-job/upscale.png"]


async def test_a_store_that_cannot_be_built_does_not_stop_a_job(swarm_home: Path, monkeypatch, config_file) -> None:
    """S3 chosen without a bucket: a delegation job needs no store, and pruning must not fail it."""
    import yaml

    from swarm.runtime import Runtime

    raw = yaml.safe_load(config_file.read_text())
    raw["providers"]["storage"]["default"] = "s3"
    config_file.write_text(yaml.safe_dump(raw))
    monkeypatch.delenv("SWARM_S3_BUCKET", raising=False)
    runtime = Runtime(config_file)
    try:
        assert await runtime.checkpointer(runtime.config) is not None
    finally:
        await runtime.aclose()


async def test_a_folder_one_store_cannot_delete_is_left_and_the_others_go(tmp_path: Path, monkeypatch) -> None:
    """A chain with a dead S3: deleting a key raised on the first folder and the prune stopped there."""
    from providers.storage.chain import StorageChain
    from tests.test_storage_chain import dead_s3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret-key-value-123456")
    local = LocalStorage(tmp_path / "artifacts")
    for job in ("a", "b"):
        await _write(local, f"image_tools/{job}/upscale.png", 30)
    chain = StorageChain([("local", local), ("s3", dead_s3())])
    # S3 may hold them too: not said to be deleted (tried again next time), but every folder was tried
    assert await prune_artifacts(chain, retention_days=7) == []
    assert await local.list() == []
