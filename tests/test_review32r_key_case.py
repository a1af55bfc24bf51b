"""On a case-insensitive filesystem (macOS's and Windows' default) ``IMAGE_TOOLS/<job>/x.png`` is
the file ``image_tools/<job>/x.png``: the owner check compared the project folder's name exactly,
so a client with a token read another's image by writing it in capitals. Played here with a
folder link standing in for the folded name (Linux is case-sensitive)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_mcp_http import ALICE, BOB, app, client_for, serving  # noqa: F401 (app: the fixture)

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


async def test_another_clients_image_is_not_read_by_its_key_in_capitals(app: Any, swarm_home: Path) -> None:  # noqa: F811
    async with serving(app) as base, client_for(base, ALICE) as alice, client_for(base, BOB) as bob:
        started = (await alice.call_tool("upscale_image", {"image": PNG})).structured_content
        for _ in range(6):  # the first image on a fresh state folder measures its path (precision: auto)
            done = (await alice.call_tool("job_result", {"job_id": started["job_id"], "wait_s": 50})).structured_content
            if done["status"] != "IN_PROGRESS":
                break
        assert done["status"] == "COMPLETED", done
        key = done["output"]["key"]
        (folder,) = [p for p in swarm_home.rglob("image_tools") if p.is_dir()]
        (folder.parent / "IMAGE_TOOLS").symlink_to(folder, target_is_directory=True)  # what case folding does
        shouted = "IMAGE_TOOLS/" + key.split("/", 1)[1]
        with pytest.raises(Exception) as refused:
            await bob.read_resource(f"swarm://artifacts/{shouted}")
        said = refused.value.error.message  # type: ignore[attr-defined]
        assert said == f"key: no object {shouted!r} in storage: use the key an image tool returned", said
        assert (await alice.read_resource(f"swarm://artifacts/{key}")).contents[0].blob
