"""A ``path`` inside ``mcp.file_roots`` whose folder is swapped for a link to elsewhere between the
check and the open is not read through the link.

``read_file`` resolved links (``realpath``), checked the result against the roots, then opened it
by name with ``O_NOFOLLOW``, which guards the last name only: a folder on the way, replaced by a
link to a folder outside the roots in between, was followed, and the file there read. The open now
walks from the root, one folder at a time, never following a link.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import InputError
from providers.image import local_files
from providers.image.imageio import ImageLimits, read_file

SMALL = Path(__file__).parent / "fixtures" / "sr_input_48.png"
needs_dir_fd = pytest.mark.skipif(os.open not in os.supports_dir_fd, reason="this system cannot open by folder")


def _swap_after_check(monkeypatch: pytest.MonkeyPatch, folder: Path, elsewhere: Path) -> None:
    """``folder`` becomes a link to ``elsewhere`` right after the path is resolved and checked."""
    resolve = os.path.realpath
    calls = {"n": 0}

    def realpath(path: object, *args: object, **kwargs: object) -> str:
        found = resolve(path, *args, **kwargs)  # type: ignore[call-overload]
        calls["n"] += 1
        if calls["n"] == 2:  # the path, then its root: the check is done when the root is resolved
            folder.rename(folder.with_name(folder.name + ".moved"))
            folder.symlink_to(elsewhere, target_is_directory=True)
        return str(found)

    monkeypatch.setattr(local_files.os.path, "realpath", realpath)


@needs_dir_fd
def test_a_folder_swapped_for_a_link_after_the_check_is_not_read_through(monkeypatch: pytest.MonkeyPatch,
                                                                         tmp_path: Path) -> None:
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    (root / "photos").mkdir(parents=True)
    outside.mkdir()
    (root / "photos" / "cat.png").write_bytes(SMALL.read_bytes())
    (outside / "cat.png").write_bytes(SMALL.read_bytes()[:-1] + b"S")  # another file: what must not be read
    _swap_after_check(monkeypatch, root / "photos", outside)
    with pytest.raises(InputError) as refused:
        read_file(str(root / "photos" / "cat.png"), ImageLimits(), roots=[str(root)])
    assert "cannot open" in str(refused.value) or "no such file" in str(refused.value), refused.value


def test_files_inside_the_roots_still_read_and_a_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "allowed"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "cat.png").write_bytes(SMALL.read_bytes())
    (tmp_path / "link").symlink_to(root / "a", target_is_directory=True)  # a link to inside: followed by realpath
    assert read_file(str(root / "a" / "b" / "cat.png"), ImageLimits(), roots=[str(root)]) == SMALL.read_bytes()
    assert read_file(str(tmp_path / "link" / "b" / "cat.png"), ImageLimits(), roots=[str(root)]) == SMALL.read_bytes()
    assert read_file(str(root / "a" / "b" / "cat.png"), ImageLimits(), roots=None) == SMALL.read_bytes()
    for folder in (root, root / "a"):
        with pytest.raises(InputError, match="is a folder, not a file"):
            read_file(str(folder), ImageLimits(), roots=[str(root)])
