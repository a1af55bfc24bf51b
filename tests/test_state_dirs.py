"""Where state lives (``core.paths``) and what a door says when it cannot write there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from core.config import interpolate
from core.errors import ConfigError
from core.paths import models_dir_default, state_dir


def test_state_dir_is_absolute_follows_xdg_and_names_the_fix_without_a_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWARM_HOME", "rel/home")  # relative: the index took the project root, the rest the cwd
    assert state_dir() == tmp_path / "rel" / "home"
    assert interpolate("${SWARM_HOME:-~/.cache/runpod-swarm}/index.sqlite") == f"{tmp_path}/rel/home/index.sqlite"
    assert models_dir_default() == tmp_path / "rel" / "home" / "models"  # SWARM_HOME moves the model store too
    monkeypatch.delenv("SWARM_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "runpod-swarm"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME", raising=False)  # a bare uid in a container: no HOME, no passwd entry
    import pwd

    def no_entry(uid: int) -> None:
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)
    with pytest.raises(ConfigError) as err:
        state_dir()
    assert "HOME is unset" in str(err.value) and "SWARM_HOME" in str(err.value)
    # the same at a config load (the checkpointer's default path is made there, not at import)
    from core.config import CheckpointerSection, SwarmConfig, config_path, load_config

    with pytest.raises(ConfigError, match="HOME is unset"):
        load_config(config_path(None))
    with pytest.raises(ConfigError, match="HOME is unset"):
        CheckpointerSection()
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "later"))  # a default made at import was frozen
    assert SwarmConfig.model_fields["checkpointer"].default_factory is not None
    assert CheckpointerSection().path == str(tmp_path / "later" / "checkpoints.sqlite")
    # a load with its own environment reads SWARM_HOME from it (an empty one gave /checkpoints.sqlite)
    assert interpolate("${SWARM_HOME}/x", {"SWARM_HOME": "/srv/swarm"}) == "/srv/swarm/x"


def test_an_unusable_state_folder_is_named_with_the_fix_at_both_doors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file (or a read-only folder) where state goes: every job was 'internal error ... see the
    worker log', and every MCP call 'Error executing tool'."""
    from swarm.cli import main

    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("SWARM_HOME", str(afile))
    assert main(["delegate", "hi", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"cannot use {afile}: it is a file, not a folder; set SWARM_HOME to a writable folder" in err, err
    assert "InternalError" not in err
    server = subprocess.run([sys.executable, "-m", "mcp_server.server", "--config", str(ROOT / "config.yaml")],
                            input="", capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "SWARM_HOME": str(afile), "HOME": str(tmp_path)})
    assert server.returncode == 2 and "it is a file, not a folder" in server.stderr, server.stderr
