"""LocalStorage: atomic writes, create-only, and a battery of key escapes."""

from __future__ import annotations

import os

import pytest

from core.errors import ConfigError, InputError
from providers.base import StorageProvider
from providers.storage.local import LocalStorage


@pytest.fixture
def store(tmp_path):
    return LocalStorage(tmp_path / "root")


async def test_round_trip_list_delete(store):
    obj = await store.put("a/b/c.png", b"\x89PNG data")
    assert isinstance(store, StorageProvider)
    assert obj.size == 9 and obj.content_type == "image/png"
    assert await store.get("a/b/c.png") == b"\x89PNG data"
    assert await store.exists("a/b/c.png")
    await store.put("a/z.txt", b"zz")
    assert [o.key for o in await store.list("a/")] == ["a/b/c.png", "a/z.txt"]
    assert [o.key for o in await store.list("a/b")] == ["a/b/c.png"]
    await store.delete("a/b/c.png")
    assert not await store.exists("a/b/c.png")
    with pytest.raises(InputError, match="no object"):
        await store.get("a/b/c.png")


async def test_overwrite_and_create_only(store):
    await store.put("k.bin", b"one")
    await store.put("k.bin", b"two")
    assert await store.get("k.bin") == b"two"
    with pytest.raises(InputError, match="already exists"):
        await store.put("k.bin", b"three", overwrite=False)
    assert await store.get("k.bin") == b"two"
    await store.put("new.bin", b"x", overwrite=False)
    assert await store.get("new.bin") == b"x"
    # no temporary files left behind, none listed
    names = [p.name for p in store.root.rglob("*")]
    assert not [n for n in names if n.startswith(".swarm-tmp-")]


@pytest.mark.parametrize(
    "key",
    [
        "../x",
        "a/../../x",
        "a/..",
        "/etc/passwd",
        "a\x00b",
        "a\nb",
        "a\\..\\b",
        "C:/x",
        "a//b",
        "./a",
        "a/./b",
        "a. ",
        "a/b.",
        " a",
        "a ",
        "",
        "x" * 2000,
        "é" * 600,  # 600 characters, 1,200 bytes: S3's limit is in bytes
        "x" * 300,  # one part over a file name's 255 bytes (was "local: cannot write", storage down)
        ".swarm-tmp-abc",
    ],
)
async def test_bad_keys_refused_and_nothing_written(store, tmp_path, key):
    with pytest.raises(InputError) as info:
        await store.put(key, b"evil")
    assert info.value.field == "key"
    with pytest.raises(InputError):
        await store.get(key)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


async def test_symlink_escape_refused(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    store.root.mkdir(parents=True)
    os.symlink(outside, store.root / "link")
    with pytest.raises(InputError, match="outside"):
        await store.get("link/secret.txt")
    with pytest.raises(InputError, match="outside"):
        await store.put("link/new.txt", b"x")
    assert not (outside / "new.txt").exists()
    os.symlink(outside / "secret.txt", store.root / "file-link")
    with pytest.raises(InputError, match="outside"):
        await store.get("file-link")
    assert [o.key for o in await store.list()] == []


async def test_url_and_from_config(tmp_path):
    store = LocalStorage.from_config("local", {"root": str(tmp_path)})
    await store.put("out/x y.png", b"1")
    url = await store.url("out/x y.png")
    assert url.startswith("file://") and url.endswith("/out/x%20y.png")
    public = LocalStorage(tmp_path, public_base_url="https://cdn.example/artifacts/")
    assert await public.url("out/x y.png") == "https://cdn.example/artifacts/out/x%20y.png"
    with pytest.raises(ConfigError, match="root"):
        LocalStorage.from_config("local", {"root": 5})


async def test_parent_is_a_file(store):
    await store.put("a", b"file")
    with pytest.raises(InputError):
        await store.put("a/b", b"x")


async def test_a_key_naming_a_folder_is_no_object(store):
    """``get("a")`` with ``a/b.png`` stored raised IsADirectoryError (an internal error)."""
    await store.put("a/b.png", b"\\x89PNG")
    with pytest.raises(InputError, match="no object 'a' in storage") as info:
        await store.get("a")
    assert info.value.field == "key"


async def test_an_object_over_the_read_limit_is_refused_before_it_is_read(tmp_path):
    """An 800 MiB object named as an image ``key`` was read whole (905 MB peak) before its size was
    checked: a 64 GiB sparse file is refused at once, from its size."""
    import resource

    from core.errors import InputError
    from providers.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "store")
    await storage.put("huge.png", b"\x89PNG")
    with open(tmp_path / "store" / "huge.png", "r+b") as f:
        f.truncate(64 * 2**30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError) as refused:
        await storage.get_at_most("huge.png", 20 * 2**20)
    assert str(refused.value) == "key: object is 68,719,476,736 bytes; the limit is 20,971,520"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing read
    await storage.put("small.png", b"\x89PNG")
    assert await storage.get_at_most("small.png", 4) == b"\x89PNG"


async def test_exists_delete_and_list_answer_for_keys_no_object_can_have(tmp_path):
    """``exists``/``delete`` raised bare OSErrors (a part over 255 bytes, a part that is an object)
    where ``put``/``get`` said what was wrong; ``list`` raised under a concurrent delete."""
    import asyncio

    from providers.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "store")
    long = "x" * 300 + ".png"
    assert await storage.exists(long) is False and await storage.delete(long) is None
    await storage.put("a.png", b"1")
    assert await storage.exists("a.png/b.png") is False and await storage.delete("a.png/b.png") is None
    assert await storage.exists("a.png") is True
    for i in range(200):
        await storage.put(f"many/{i}.png", b"1")

    async def delete_all() -> None:
        for i in range(200):
            await storage.delete(f"many/{i}.png")

    deleting = asyncio.create_task(delete_all())
    while not deleting.done():
        listed = await storage.list("many/")  # never an error: an object deleted meanwhile is left out
        assert all(o.size == 1 for o in listed)
    await deleting
    assert await storage.list("many/") == []
