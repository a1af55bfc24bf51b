"""S3Storage against moto's S3 server over real HTTP on loopback."""

from __future__ import annotations

import socket
import urllib.request

import httpx
import pytest
from conftest import MOTO_SECRET

from core.errors import ConfigError, InputError, ProviderUnavailable
from providers.base import StorageProvider
from providers.storage.s3 import S3Storage

SECRET = MOTO_SECRET  # conftest.aws_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def store(moto_url, aws_env):
    import boto3

    bucket = f"b{_free_port()}"
    boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1").create_bucket(Bucket=bucket)
    return S3Storage.from_config(
        "s3", {"bucket": bucket, "prefix": "swarm", "endpoint_url": moto_url, "region": "us-east-1"}
    )


async def test_round_trip_under_prefix(store):
    assert isinstance(store, StorageProvider)
    obj = await store.put("jobs/1/out.png", b"\x89PNGxx")
    assert obj.content_type == "image/png" and obj.size == 6
    assert await store.get("jobs/1/out.png") == b"\x89PNGxx"
    assert await store.exists("jobs/1/out.png")
    raw = store.client().list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [o["Key"] for o in raw] == ["swarm/jobs/1/out.png"]
    await store.put("jobs/2/a.txt", b"a")
    assert [o.key for o in await store.list("jobs/")] == ["jobs/1/out.png", "jobs/2/a.txt"]
    await store.delete("jobs/1/out.png")
    assert not await store.exists("jobs/1/out.png")
    with pytest.raises(InputError, match="no object"):
        await store.get("jobs/1/out.png")


async def test_create_only_write(store):
    await store.put("once.bin", b"first", overwrite=False)
    with pytest.raises(InputError, match="already exists"):
        await store.put("once.bin", b"second", overwrite=False)
    assert await store.get("once.bin") == b"first"
    await store.put("once.bin", b"third")
    assert await store.get("once.bin") == b"third"


async def test_presigned_url_fetches_over_http(store):
    await store.put("p/img.png", b"pixels")
    url = await store.url("p/img.png", expires_s=60)
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200 and response.content == b"pixels"


async def test_bad_keys_refused_before_any_request(store):
    for key in ("../x", "/abs", "a\x00b", "a/../../b"):
        with pytest.raises(InputError):
            await store.put(key, b"evil")
    assert await store.list() == []


async def test_missing_bucket_and_unreachable_endpoint(moto_url, aws_env):
    gone = S3Storage("no-such-bucket-here", endpoint_url=moto_url)
    with pytest.raises(ProviderUnavailable, match="does not exist"):
        await gone.put("k", b"x")
    with pytest.raises(ProviderUnavailable, match="bucket 'no-such-bucket-here' does not exist"):
        await gone.exists("k")  # it answered False: "no such object" of a bucket that is not there
    dead = S3Storage("b", endpoint_url=f"http://127.0.0.1:{_free_port()}", timeout_s=2)
    with pytest.raises(ProviderUnavailable, match="cannot reach") as info:
        await dead.get("k")
    assert SECRET not in str(info.value)


async def test_errors_never_carry_signatures(moto_url, aws_env):
    store = S3Storage("no-such-bucket-here", endpoint_url=moto_url)
    url = await store.url("k")
    try:
        urllib.request.urlopen(url)
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
    with pytest.raises(ProviderUnavailable) as info:
        await store.get("k")
    text = str(info.value) + repr(info.value.to_dict())
    assert "Signature" not in text and SECRET not in text


def test_empty_bucket_is_a_config_error():
    with pytest.raises(ConfigError, match="SWARM_S3_BUCKET"):
        S3Storage.from_config("s3", {"bucket": ""})


async def test_an_object_over_the_read_limit_is_refused_from_its_size(store):
    """An 800 MiB object named as an image ``key`` was read whole (905 MB peak) before its size was checked."""
    from providers.base import BoundedStorage

    await store.put("big.png", b"x" * 5000)
    assert isinstance(store, BoundedStorage)
    assert await store.get_at_most("big.png", 5000) == b"x" * 5000
    with pytest.raises(InputError) as refused:
        await store.get_at_most("big.png", 4999)
    assert str(refused.value) == "key: object is 5,000 bytes; the limit is 4,999"
    with pytest.raises(InputError, match="no object"):
        await store.get_at_most("missing.png", 10)
